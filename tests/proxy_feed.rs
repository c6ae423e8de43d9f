//! `vigil proxy --config FILE` as a process: its decisions come from the engine's HTTP stream
//! (served here by the router the engine mounts) or from the Kafka topic on a real broker,
//! and it is enforced, exported on the admin listener, and stopped by SIGTERM.

mod support;

use axum::response::IntoResponse;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Broker, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use vigil_enforce::feed::sse::{self, BroadcastOptions, StreamOptions};
use vigil_enforce::subjects::api_key_id_salted;
use vigil_enforce::{Action, Decision, DecisionBroadcast, DecisionTable, Subject, SubjectKind};

/// The bearer token the engine's stream asks for in the HTTP-feed test.
const FEED_TOKEN: &str = "feed-token-0123456789";

/// `GET path` with `headers` on a new connection; the status code and the body.
async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: api.example\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

async fn wait_status(addr: SocketAddr, path: &str, headers: &[(&str, &str)], want: u16) {
    let start = Instant::now();
    loop {
        let got = http_get(addr, path, headers).await.map(|r| r.0);
        if got == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{addr}{path} answers {got:?}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A plain upstream answering `ok`.
async fn upstream(stop: CancellationToken) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move {
        let _ = axum::serve(l, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    addr
}

struct Proxy {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// `vigil proxy` with `[proxy]` pointing at `upstream` (plus `extra` lines) and the given
    /// `[proxy.feed]` body.
    fn start(upstream: SocketAddr, extra: &str, feed: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin) = (free_port(), free_port());
        let cfg = format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://{upstream}\"\n\
             admin_listen = \"127.0.0.1:{admin}\"\nworker_threads = 1\n{extra}\n\n[proxy.feed]\n{feed}\n"
        );
        let path = dir.path().join("vigil.toml");
        std::fs::write(&path, cfg).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["proxy", "--config"])
            .arg(&path)
            .env("VIGIL_LOG", "info,rdkafka=warn")
            .env("VIGIL_TEST_FEED_TOKEN", FEED_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vigil proxy starts");
        Proxy {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            admin: format!("127.0.0.1:{admin}").parse().unwrap(),
            _dir: dir,
        }
    }

    /// Waits for `/readyz` (serving, and the feed warm).
    async fn wait_ready(&self) {
        wait_status(self.admin, "/readyz", &[], 200).await;
    }

    /// SIGTERM; the process must exit cleanly.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(s.success(), "vigil proxy exited with {s}");
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "vigil proxy did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn key(raw: &str) -> Subject {
    Subject::new(SubjectKind::ApiKey, api_key_id_salted("", raw))
}

fn block(s: Subject) -> Decision {
    Decision::new(s, Action::Block, 0.9, "rule", Duration::from_secs(600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_proxy_follows_the_engines_http_stream() {
    let stop = CancellationToken::new();
    let up = upstream(stop.clone()).await;
    // the engine's side, as `vigil run` mounts it
    let feed = DecisionBroadcast::new(Arc::new(DecisionTable::new()), BroadcastOptions::default());
    feed.publish(block(key("k1"))).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let engine = l.local_addr().unwrap();
    // the engine's API asks for a bearer token; the proxy reads its own from the environment
    let app = sse::router(feed.clone(), StreamOptions::default(), stop.clone()).layer(
        axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| async move {
                let want = format!("Bearer {FEED_TOKEN}");
                if req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    == Some(want.as_str())
                {
                    next.run(req).await
                } else {
                    axum::http::StatusCode::UNAUTHORIZED.into_response()
                }
            },
        ),
    );
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(l, app)
            .with_graceful_shutdown(s.cancelled_owned())
            .await;
    });

    let p = Proxy::start(
        up,
        "",
        &format!(
            "type = \"http\"\nurl = \"http://{engine}{}\"\ntoken_env = \"VIGIL_TEST_FEED_TOKEN\"",
            sse::STREAM_PATH
        ),
    );
    p.wait_ready().await;
    assert_eq!(
        http_get(p.addr, "/", &[("x-api-key", "k1")])
            .await
            .unwrap()
            .0,
        403
    );
    assert_eq!(
        http_get(p.addr, "/", &[("x-api-key", "k2")]).await.unwrap(),
        (200, "ok".into())
    );
    feed.revoke(key("k1"));
    wait_status(p.addr, "/", &[("x-api-key", "k1")], 200).await;
    feed.publish(block(key("k2"))).unwrap();
    wait_status(p.addr, "/", &[("x-api-key", "k2")], 403).await;
    let (status, metrics) = http_get(p.admin, "/metrics", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("vigil_feed_warm{feed=\"http\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_proxy_requests_total{action=\"block\"}"),
        "{metrics}"
    );
    p.stop();
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_proxy_reads_the_decisions_topic() {
    let stop = CancellationToken::new();
    let up = upstream(stop.clone()).await;
    let broker = Broker::start();
    broker.create_topic("vigil.decisions", 2);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let d = block(key("k1"));
    let send = |key: String, value: Option<String>| {
        let producer = producer.clone();
        async move {
            let mut rec = FutureRecord::<str, str>::to("vigil.decisions").key(&key);
            if let Some(v) = &value {
                rec = rec.payload(v);
            }
            producer
                .send(rec, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    };
    send(d.subject.key(), Some(d.to_json())).await;

    broker.create_topic("vigil.proxy-events", 1);
    let p = Proxy::start(
        up,
        "events_topic = \"vigil.proxy-events\"",
        &format!("type = \"kafka\"\nbrokers = \"{}\"", broker.brokers),
    );
    p.wait_ready().await;
    assert_eq!(
        http_get(p.addr, "/", &[("x-api-key", "k1")])
            .await
            .unwrap()
            .0,
        403
    );
    send(d.subject.key(), None).await;
    wait_status(p.addr, "/", &[("x-api-key", "k1")], 200).await;
    p.stop();
    stop.cancel();

    // the proxy's access events reached their topic, and ingest reads them as `json`
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.brokers)
        .set("group.id", "proxy-events-check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("vigil.proxy-events", 0, rdkafka::Offset::Beginning)
        .unwrap();
    rdkafka::consumer::Consumer::assign(&consumer, &tpl).unwrap();
    let mut lines = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let v = rdkafka::Message::payload(&m).unwrap();
                lines.push(String::from_utf8(v.to_vec()).unwrap());
            }
            Some(Err(e)) => panic!("{e}"),
            None if lines.len() >= 2 => break,
            None => {}
        }
    }
    assert!(lines.len() >= 2, "{lines:?}");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("proxy-events.ndjson");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let events = dir.path().join("events.ndjson");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["replay", "--format", "json", "--no-scoring", "--events-out"])
        .arg(&events)
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), lines.len());
    let blocked = rows.iter().find(|r| r["status"] == 403).expect("the 403");
    // the same API key id the decision named, not a hash of a hash
    assert_eq!(blocked["api_key_id"], d.subject.id.as_str());
    assert_eq!(blocked["client_ip"], "127.0.0.1");
    assert_eq!(blocked["route"], "/");
}

/// `vigil run` with its in-process proxy in front of `up` (and `extra` appended to the
/// config), once its API answers `/readyz`.
async fn engine_with_proxy(up: SocketAddr, extra: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let (engine_port, proxy_port) = (free_port(), free_port());
    let cfg = format!(
        "data_dir = \"{}\"\n[server]\nlisten = \"127.0.0.1:{engine_port}\"\n\
         [proxy]\nlisten = \"127.0.0.1:{proxy_port}\"\nupstream = \"http://{up}\"\nworker_threads = 1\n{extra}",
        dir.path().join("data").display()
    );
    let path = dir.path().join("vigil.toml");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--config"])
        .arg(&path)
        .env("VIGIL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("vigil run starts");
    let engine = Proxy {
        child,
        addr: format!("127.0.0.1:{proxy_port}").parse().unwrap(),
        admin: format!("127.0.0.1:{engine_port}").parse().unwrap(),
        _dir: dir,
    };
    wait_status(engine.admin, "/readyz", &[], 200).await;
    engine
}

/// The whole loop in one `vigil run`: the proxy's own access events are ingested and scored,
/// the decision goes to the proxy's table and out on `/v1/decisions/stream`, and the proxy
/// enforces it on the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_run_scores_its_proxys_traffic_and_enforces_the_result() {
    let stop = CancellationToken::new();
    let up = upstream(stop.clone()).await;
    let engine = engine_with_proxy(up, "").await;
    // ordinary traffic passes
    assert_eq!(
        http_get(engine.addr, "/api/items", &[]).await.unwrap(),
        (200, "ok".into())
    );
    // a scan of sensitive paths (the default rule `sensitive_path_scan`) from this client
    for p in ["/.env", "/.git/config", "/wp-login.php", "/phpinfo"] {
        let (status, _) = http_get(engine.addr, p, &[]).await.unwrap();
        assert_eq!(status, 200, "{p} is forwarded before any decision");
    }
    // scored within a batch delay, then enforced by the same process
    wait_status(engine.addr, "/api/items", &[], 403).await;
    let (_, body) = http_get(engine.addr, "/api/items", &[]).await.unwrap();
    assert!(body.contains("decision"), "{body}");

    let (status, metrics) = http_get(engine.admin, "/metrics", &[]).await.unwrap();
    assert_eq!(status, 200);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("vigil_ingest_events_total{source=\"proxy\""))
        .unwrap_or_else(|| panic!("no proxy events in {metrics}"));
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 5, "{line}");
    assert!(
        metrics.contains("vigil_decisions_total{action=\"block\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_proxy_requests_total{action=\"block\"}"),
        "the proxy's families are on the engine's page: {metrics}"
    );

    // the same decision on the engine's stream, for enforcement points elsewhere
    let mut s = tokio::net::TcpStream::connect(engine.admin).await.unwrap();
    s.write_all(
        format!(
            "GET {} HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n",
            sse::STREAM_PATH
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let start = Instant::now();
    while !String::from_utf8_lossy(&seen).contains(r#""subject":{"kind":"ip","id":"127.0.0.1"}"#) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "stream: {}",
            String::from_utf8_lossy(&seen)
        );
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await
        {
            assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    }
    drop(s);
    engine.stop();
    stop.cancel();
}

/// `[proxy.inline_detect] mode = "block"`: the proxy refuses each injection attempt on its own
/// content, and its access events carry what it found (the query, which the events do not
/// keep, included), so scoring decides on the client too: its next clean request is refused
/// by a decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_blocks_count_as_evidence_against_the_client() {
    let stop = CancellationToken::new();
    let up = upstream(stop.clone()).await;
    let engine = engine_with_proxy(up, "[proxy.inline_detect]\nmode = \"block\"\n").await;
    assert_eq!(
        http_get(engine.addr, "/api/items", &[]).await.unwrap(),
        (200, "ok".into())
    );
    // injections in the query only: the path the events keep is clean
    for q in [
        "/api/items?id=1%27%20OR%20%271%27%3D%271",
        "/api/items?id=1%20UNION%20SELECT%20password%20FROM%20users--",
        "/api/items?id=1%3B%20DROP%20TABLE%20users--",
    ] {
        let (status, body) = http_get(engine.addr, q, &[]).await.unwrap();
        assert_eq!(status, 403, "{q}: {body}");
        assert!(body.contains("matched attack patterns"), "{q}: {body}");
        assert!(!body.contains("decision_id"), "refused inline: {body}");
    }
    // scored within a batch delay: now a decision refuses the client's clean requests too
    wait_status(engine.addr, "/api/items", &[], 403).await;
    let (_, body) = http_get(engine.addr, "/api/items", &[]).await.unwrap();
    assert!(body.contains("decision"), "{body}");
    // decided on the evidence the proxy found, not on anything else
    let (status, decisions) = http_get(engine.admin, "/v1/decisions?kind=ip", &[])
        .await
        .unwrap();
    assert_eq!(status, 200, "{decisions}");
    assert!(
        decisions.contains("rule:exploit_attempts"),
        "decisions: {decisions}"
    );
    engine.stop();
    stop.cancel();
}
