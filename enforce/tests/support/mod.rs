//! Shared fixtures for the end-to-end tests: a real upstream server, a proxy or forward-auth
//! server started on 127.0.0.1, HTTP/1.1 and h2c clients, raw sockets, and JWT signing.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_enforce::{
    AccessEvent, AuthzServer, DecisionTable, Enforcement, Proxy, ProxyConfig, Readiness,
    TableEnforcer, event_channel,
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = UnsyncBoxBody<Bytes, BoxError>;

/// Every test is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|n| match n {}).boxed_unsync()
}

pub fn empty() -> TestBody {
    full(Bytes::new())
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: hyper::Version,
    pub headers: hyper::HeaderMap,
}

/// A real upstream on 127.0.0.1 (HTTP/1.1). Paths:
/// - `/slow?ms=N`: answers after N ms;
/// - `/echo`: streams the request body back as it arrives;
/// - `/stream`: sends `first`, waits for [`Upstream::release`], then sends `second`;
/// - `/jwks`: serves the JWKS in [`Upstream::jwks`];
/// - anything else: 200 `ok`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub release: Arc<Notify>,
    pub jwks: Arc<Mutex<String>>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let jwks = Arc::new(Mutex::new(r#"{"keys":[]}"#.to_string()));
        let (h, s, r, j) = (hits.clone(), seen.clone(), release.clone(), jwks.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, s, r, j) = (h.clone(), s.clone(), r.clone(), j.clone());
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (h, s, r, j) = (h.clone(), s.clone(), r.clone(), j.clone());
                    async move { Ok::<_, Infallible>(upstream_handle(req, h, s, r, j).await) }
                });
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            hits,
            seen,
            release,
            jwks,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("upstream saw a request")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn upstream_handle(
    req: Request<Incoming>,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<Notify>,
    jwks: Arc<Mutex<String>>,
) -> Response<TestBody> {
    let path = req.uri().path().to_string();
    if path == "/jwks" {
        let doc = jwks.lock().unwrap().clone();
        return Response::new(full(doc));
    }
    hits.fetch_add(1, Ordering::SeqCst);
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        version: req.version(),
        headers: req.headers().clone(),
    });
    match path.as_str() {
        "/slow" => {
            let ms: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(500);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full("slow ok"))
        }
        "/echo" => Response::new(req.into_body().map_err(BoxError::from).boxed_unsync()),
        "/stream" => {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"first")).await;
                release.notified().await;
                let _ = tx.send(Bytes::from_static(b"second")).await;
            });
            Response::new(body)
        }
        _ => {
            let mut r = Response::new(full("ok"));
            *r.status_mut() = StatusCode::OK;
            r.headers_mut()
                .insert("connection", "x-upstream-hop".parse().unwrap());
            r.headers_mut()
                .insert("x-upstream-hop", "must-not-pass".parse().unwrap());
            r
        }
    }
}

/// A body fed from a channel: each message is one data frame; the body ends when the sender
/// is dropped.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A streaming body and its sender.
pub fn channel_body() -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, ChannelBody(rx).boxed_unsync())
}

/// A running proxy.
pub struct Running {
    pub addr: SocketAddr,
    pub table: Arc<DecisionTable>,
    pub readiness: Readiness,
    pub shutdown: CancellationToken,
    pub events: mpsc::Receiver<AccessEvent>,
    pub task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}

/// Starts a proxy in front of `upstream` with `cfg` (its `listen` and `upstream` are set here).
pub async fn start_proxy(mut cfg: ProxyConfig, upstream: &Upstream) -> Running {
    cfg.upstream = upstream.url();
    start(cfg, false).await
}

/// Starts a proxy with `cfg` as it is (its upstream already set).
pub async fn start_proxy_as_is(cfg: ProxyConfig) -> Running {
    start(cfg, false).await
}

/// Starts a forward-auth server with `cfg`.
pub async fn start_authz(cfg: ProxyConfig) -> Running {
    start(cfg, true).await
}

async fn start(mut cfg: ProxyConfig, authz: bool) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cfg.listen = addr.to_string();
    let settings = cfg.build().expect("valid config");
    let table = Arc::new(DecisionTable::new());
    let (sink, events) = event_channel(1024);
    let enf = Enforcement::new(settings, TableEnforcer::new(table.clone()), Some(sink))
        .await
        .expect("enforcement starts");
    let shutdown = CancellationToken::new();
    let (readiness, task) = if authz {
        let server = AuthzServer::new(enf.clone());
        let r = server.readiness();
        let s = shutdown.clone();
        (
            r,
            tokio::spawn(async move {
                let maint = tokio::spawn(enf.run_maintenance(s.clone()));
                server.serve(listener, s).await;
                maint.abort();
            }),
        )
    } else {
        let proxy = Proxy::new(enf.clone());
        let r = proxy.readiness();
        let s = shutdown.clone();
        (
            r,
            tokio::spawn(async move {
                let maint = tokio::spawn(enf.run_maintenance(s.clone()));
                proxy.serve(listener, s).await;
                maint.abort();
            }),
        )
    };
    // serving starts when the task first runs
    for _ in 0..100 {
        if readiness.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Running {
        addr,
        table,
        readiness,
        shutdown,
        events,
        task,
    }
}

/// A finished response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    pub fn header(&self, n: &str) -> Option<&str> {
        self.headers.get(n).and_then(|v| v.to_str().ok())
    }
}

/// One HTTP/1.1 request on a new connection.
pub async fn send_h1(addr: SocketAddr, req: Request<TestBody>) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("response");
    collect(resp).await
}

/// One HTTP/2 request (h2c, prior knowledge) on a new connection.
pub async fn send_h2(addr: SocketAddr, req: Request<TestBody>) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("response");
    collect(resp).await
}

pub async fn collect(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A GET request to `path` with `headers`.
pub fn get(path: &str, headers: &[(&str, &str)]) -> Request<TestBody> {
    let mut b = Request::get(path).header("host", "api.example");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(empty()).unwrap()
}

/// Writes `raw` to a new connection and reads until the server closes it or `wait` passes.
pub async fn raw(addr: SocketAddr, raw: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Signs `claims` with a PEM private key.
pub fn sign(alg: Algorithm, pem: &str, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

/// A JWKS document with the public halves of `(alg, private pem, kid)`.
pub fn jwks(keys: &[(Algorithm, &str, &str)]) -> String {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|(alg, pem, kid)| {
            let key = match alg {
                Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
                _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            };
            let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, *alg).unwrap();
            jwk.common.key_id = Some(kid.to_string());
            serde_json::to_value(jwk).unwrap()
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub const RSA_PRIVATE: &str = include_str!("../keys/rsa_private.pem");
pub const RSA_OTHER_PRIVATE: &str = include_str!("../keys/rsa_other_private.pem");
pub const EC_PRIVATE: &str = include_str!("../keys/ec_private.pem");
pub fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub mod kafka;

/// An enforcement point started the way the binary starts one ([`vigil_enforce::service`]),
/// with its own table, listening on free 127.0.0.1 ports (proxy and admin).
pub struct Point {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub table: Arc<DecisionTable>,
    pub running: vigil_enforce::RunningPoint,
    pub shutdown: CancellationToken,
}

impl Drop for Point {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.running.tasks.abort_all();
    }
}

/// Logs to the test's output when `VIGIL_LOG` is set (e.g. `VIGIL_LOG=debug`).
pub fn init_log() {
    if let Ok(f) = std::env::var("VIGIL_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(f))
            .with_test_writer()
            .try_init();
    }
}

impl Point {
    pub async fn start(cfg: ProxyConfig) -> Point {
        Self::start_with_events(cfg, None).await
    }

    pub async fn start_with_events(
        mut cfg: ProxyConfig,
        events: Option<vigil_enforce::EventSink>,
    ) -> Point {
        init_log();
        cfg.listen = "127.0.0.1:0".into();
        cfg.admin_listen = Some("127.0.0.1:0".into());
        let settings = cfg.build().expect("valid config");
        let table = Arc::new(DecisionTable::new());
        let shutdown = CancellationToken::new();
        let running =
            vigil_enforce::service::start(settings, table.clone(), &[], events, shutdown.clone())
                .await
                .expect("enforcement point starts");
        for _ in 0..100 {
            if running.readiness.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Point {
            addr: running.addr,
            admin: running.admin_addr.expect("admin listener"),
            table,
            running,
            shutdown,
        }
    }

    /// Waits (at most `secs`) for the decision feed to be warm.
    pub async fn wait_warm(&self, secs: u64) {
        let feed = self.running.feed.clone().expect("a feed");
        let start = std::time::Instant::now();
        while !feed.is_warm() {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out after {secs}s waiting for the decision feed to be warm: {:?}, {} decisions held",
                feed.counts(),
                self.table.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The admin listener's `/metrics` page.
    pub async fn metrics(&self) -> String {
        let r = send_h1(self.admin, get("/metrics", &[])).await;
        assert_eq!(r.status, StatusCode::OK);
        String::from_utf8(r.body.to_vec()).unwrap()
    }

    /// The status of `GET path` through the proxy with `headers`.
    pub async fn status(&self, path: &str, headers: &[(&str, &str)]) -> StatusCode {
        send_h1(self.addr, get(path, headers)).await.status
    }
}

/// Polls `f` every 20 ms until true; panics after `secs`.
pub async fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the status of `GET path` until it is `want`; panics after `secs`.
pub async fn wait_status(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    want: StatusCode,
    secs: u64,
) {
    let start = std::time::Instant::now();
    loop {
        let got = send_h1(addr, get(path, headers)).await.status;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{path} still answers {got} after {secs}s, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
pub fn self_signed(
    dir: &std::path::Path,
) -> (
    String,
    String,
    tokio_rustls::rustls::pki_types::CertificateDer<'static>,
) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (
        cert.display().to_string(),
        key.display().to_string(),
        ck.cert.der().clone(),
    )
}
