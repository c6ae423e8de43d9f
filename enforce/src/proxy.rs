//! The inline reverse proxy: every request's subjects are found, the [`Enforcer`] decides, and
//! the request is answered locally (deny) or streamed to the upstream over pooled keep-alive
//! connections, with the response streamed back. The phase order is in
//! [`crate::enforcement`]; serving and shutdown in [`crate::server`]. Each request's access
//! event carries the client's fingerprints (JA4H of the head as it arrived, JA4 of the
//! connection's ClientHello) unless `[proxy] fingerprints = false`. With
//! `[proxy.inline_detect]` on, a request its decision lets through is also inspected for
//! attack content before it goes upstream ([`crate::inline_detect`]).

use crate::config::FailPolicy;
use crate::decision::{Action, UnixMicros};
use crate::enforcement::{EnforcePoint, Enforcement, Enforcer, Outcome, RequestView};
use crate::error::EnforceError;
use crate::events::AccessEvent;
use crate::framing::Framing;
use crate::inline_detect::InlineMode;
use crate::response::{BoxError, ProxyBody, error_response};
use crate::server::{ConnInfo, Handler, Readiness, ServerOptions, serve};
use crate::subjects::{RequestSubjects, canonical_ip, joined};
use crate::table::Verdict;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{
    CONNECTION, COOKIE, HOST, HeaderMap, HeaderName, HeaderValue, REFERER, USER_AGENT,
};
use hyper::{Request, Response, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type UpstreamClient = Client<crate::tls::HttpsConnector, ProxyBody>;

/// Hop-by-hop headers (RFC 9110 7.6.1), plus `proxy-connection` and `keep-alive` seen in the
/// wild; removed in both directions together with the names listed in `Connection`.
static HOP_BY_HOP: [HeaderName; 9] = [
    HeaderName::from_static("connection"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("te"),
    HeaderName::from_static("trailer"),
    HeaderName::from_static("transfer-encoding"),
    HeaderName::from_static("upgrade"),
    HeaderName::from_static("proxy-authorization"),
    HeaderName::from_static("proxy-authenticate"),
];
static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static EXPECT: HeaderName = HeaderName::from_static("expect");

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(n);
    }
}

/// The reverse proxy.
pub struct Proxy<E: Enforcer> {
    inner: Arc<Inner<E>>,
}

struct Inner<E: Enforcer> {
    enf: Arc<Enforcement<E>>,
    client: UpstreamClient,
    upstream_scheme: hyper::http::uri::Scheme,
    upstream_authority: hyper::http::uri::Authority,
    readiness: Readiness,
}

impl<E: Enforcer> std::fmt::Debug for Proxy<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.inner.upstream_authority)
            .field("ready", &self.inner.readiness.is_ready())
            .finish()
    }
}

impl<E: Enforcer> Proxy<E> {
    pub fn new(enf: Arc<Enforcement<E>>) -> Self {
        Self::with_readiness(enf, Readiness::new(false))
    }

    /// A proxy that reports into `readiness` (shared by the proxies of one enforcement point
    /// that serve on several event loops).
    pub fn with_readiness(enf: Arc<Enforcement<E>>, readiness: Readiness) -> Self {
        let s = enf.settings();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(s.upstream_connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(s.upstream_pool_idle_timeout)
            .pool_max_idle_per_host(s.upstream_pool_max_idle_per_host)
            .set_host(false)
            .build(crate::tls::https_connector(connector, &s.upstream_tls));
        // `build` checked both are present
        let parts = s.upstream.clone().into_parts();
        let upstream_scheme = parts.scheme.unwrap_or(hyper::http::uri::Scheme::HTTP);
        let upstream_authority = parts
            .authority
            .unwrap_or_else(|| hyper::http::uri::Authority::from_static("127.0.0.1"));
        Proxy {
            inner: Arc::new(Inner {
                enf,
                client,
                upstream_scheme,
                upstream_authority,
                readiness,
            }),
        }
    }

    /// True while serving and not shutting down.
    pub fn readiness(&self) -> Readiness {
        self.inner.readiness.clone()
    }

    /// Serves on `listener` (normally bound to `settings.listen`) until `shutdown`, then
    /// drains (see [`crate::server`]). Run [`Enforcement::run_maintenance`] and the decision
    /// table's sweeper beside it.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let opts = ServerOptions::from_settings(self.inner.enf.settings());
        let readiness = self.inner.readiness.clone();
        serve(listener, opts, readiness, shutdown, self.inner).await;
    }
}

impl<E: Enforcer> Handler for Inner<E> {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Response<ProxyBody> {
        self.proxy(req, conn).await
    }
}

/// What is known of a request for its access event.
struct Draft {
    started: Instant,
    event: AccessEvent,
}

fn request_id_ok(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
}

/// The request id: kept from a trusted proxy, else a new UUID v7.
pub(crate) fn request_id(headers: &HeaderMap, name: &HeaderName, trusted_peer: bool) -> String {
    if trusted_peer
        && let Some(v) = headers.get(name)
        && request_id_ok(v)
        && let Ok(s) = v.to_str()
    {
        return s.to_string();
    }
    uuid::Uuid::now_v7().to_string()
}

pub(crate) fn new_event(
    parts: &hyper::http::request::Parts,
    peer: IpAddr,
    request_id: String,
) -> AccessEvent {
    let text = |n: &HeaderName| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    AccessEvent {
        timestamp: UnixMicros::now(),
        request_id,
        client_ip: None,
        peer,
        forwarded_for: joined(&parts.headers, &XFF, ", "),
        identity: None,
        session: None,
        api_key_id: None,
        method: parts.method.as_str().to_string(),
        host: host_of(parts).map(str::to_owned),
        path: parts.uri.path().to_string(),
        query_present: parts.uri.query().is_some_and(|q| !q.is_empty()),
        protocol: match parts.version {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        },
        status: 0,
        bytes_in: 0,
        bytes_out: 0,
        latency_us: 0,
        upstream_latency_us: None,
        user_agent: text(&USER_AGENT),
        referer: text(&REFERER),
        action: Action::Allow,
        decision_id: None,
        completed: false,
        forwarded: false,
        tls_fingerprint: None,
        http_fingerprint: None,
        inline_detection: None,
    }
}

/// The request's host: `Host`, else the URI's authority (HTTP/2 `:authority`).
pub(crate) fn host_of(parts: &hyper::http::request::Parts) -> Option<&str> {
    parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
}

pub(crate) fn record_subjects(ev: &mut AccessEvent, s: &RequestSubjects) {
    ev.client_ip = s.client_ip;
    ev.identity.clone_from(&s.identity);
    ev.session.clone_from(&s.session);
    ev.api_key_id.clone_from(&s.api_key_id);
}

impl<E: Enforcer> Inner<E> {
    async fn proxy(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Response<ProxyBody> {
        conn.mark_request();
        let started = Instant::now();
        // one framing note per HTTP/1 request, taken first so notes stay in step
        let framing = if req.version() < Version::HTTP_2 {
            conn.framing.pop()
        } else {
            None
        };
        let (mut parts, body) = req.into_parts();
        let enf = &self.enf;
        let settings = enf.settings();
        let peer = canonical_ip(conn.peer.ip());
        let trusted_peer = enf.extractor().is_trusted(peer);
        let rid = request_id(&parts.headers, &settings.request_id_header, trusted_peer);
        let mut draft = Draft {
            started,
            event: new_event(&parts, peer, rid.clone()),
        };
        if settings.fingerprints {
            // the head as the client sent it, before any header is stripped or added
            draft.event.http_fingerprint = Some(crate::fingerprint::ja4h(
                &parts.method,
                parts.version,
                &parts.headers,
            ));
            draft
                .event
                .tls_fingerprint
                .clone_from(&conn.tls_fingerprint);
        }
        let mut ctx = E::Ctx::default();

        // phase 1: request checks
        if let Some(Framing::Ambiguous(why)) = framing {
            tracing::info!(%peer, why, "ambiguous request framing refused");
            return self.local(
                error_response(&EnforceError::AmbiguousFraming(why), &rid),
                draft,
                ctx,
            );
        }
        if parts.method == hyper::Method::CONNECT {
            let e = EnforceError::BadRequest("CONNECT is not supported".into());
            let mut r = error_response(&e, &rid);
            // the client may already be sending tunnel bytes: end the connection
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return self.local(r, draft, ctx);
        }
        if parts.headers.len() > settings.max_header_count {
            let e = EnforceError::HeadersTooLarge(format!(
                "more than {} header fields",
                settings.max_header_count
            ));
            return self.local(error_response(&e, &rid), draft, ctx);
        }

        // phase 2: subjects
        let mut subjects = match enf.extractor().extract(peer, &parts.headers) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, %peer, "request refused before decision");
                return self.local(error_response(&e, &rid), draft, ctx);
            }
        };
        subjects.device = crate::fingerprint::device_id(
            draft.event.tls_fingerprint.as_deref(),
            draft.event.http_fingerprint.as_deref(),
        );
        record_subjects(&mut draft.event, &subjects);

        // phase 3: decide
        let uri_text = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let view = RequestView {
            method: &parts.method,
            uri: &uri_text,
            host: host_of(&parts),
            headers: &parts.headers,
        };
        let verdict = match enf.stale_policy(parts.uri.path()) {
            Some(FailPolicy::FailClosed) => {
                return self.local(stale_response(&rid), draft, ctx);
            }
            Some(FailPolicy::FailOpen) => Verdict::allow(),
            _ => enf.enforcer().decide(&view, &subjects, &mut ctx),
        };
        draft.event.action = verdict.action;
        draft.event.decision_id = verdict.decision.as_ref().map(|d| d.id.clone());

        // phase 4: apply
        if let Outcome::Deny(resp) = enf.apply(&verdict, &subjects, &view, &rid) {
            return self.local(resp, draft, ctx);
        }
        let mut verdict = verdict;
        if let Some((mode, found)) = enf.inspect_content(
            EnforcePoint::Proxy,
            parts.method.as_str(),
            &uri_text,
            Some(draft.event.protocol),
            &parts.headers,
            &rid,
        ) {
            if mode == InlineMode::Block {
                // the request's own content, not a decision, refused it
                draft.event.action = Action::Block;
                draft.event.decision_id = None;
                let resp = crate::inline_detect::block_response(&found, &rid);
                draft.event.inline_detection = Some(found);
                return self.local(resp, draft, ctx);
            }
            draft.event.inline_detection = Some(found);
            if verdict.action == Action::Allow {
                verdict.action = Action::Monitor;
                draft.event.action = Action::Monitor;
            }
        }

        // phase 5: the upstream request
        draft.event.forwarded = true;
        let host = host_of(&parts).map(str::to_owned);
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(&EXPECT);
        enf.strip_trust_headers(&mut parts.headers);
        if parts.headers.get_all(COOKIE).iter().count() > 1
            && let Some(c) = joined(&parts.headers, &COOKIE, "; ")
            && let Ok(v) = HeaderValue::from_str(&c)
        {
            // HTTP/2 sends one field per cookie; HTTP/1.1 allows a single Cookie line
            parts.headers.insert(COOKIE, v);
        }
        if !parts.headers.contains_key(HOST) {
            // HTTP/2's :authority, else (an HTTP/1.0 client) the upstream's own name
            let v = host
                .as_deref()
                .and_then(|h| HeaderValue::from_str(h).ok())
                .or_else(|| HeaderValue::from_str(self.upstream_authority.as_str()).ok());
            if let Some(v) = v {
                parts.headers.insert(HOST, v);
            }
        }
        add_forwarding(
            &mut parts.headers,
            peer,
            trusted_peer,
            host.as_deref(),
            conn.tls,
        );
        if let Ok(v) = HeaderValue::from_str(&rid) {
            parts.headers.insert(settings.request_id_header.clone(), v);
        }
        for (n, v) in enf.trust_headers(&verdict, &subjects) {
            parts.headers.insert(n, v);
        }
        let mut uri = hyper::http::uri::Parts::default();
        uri.scheme = Some(self.upstream_scheme.clone());
        uri.authority = Some(self.upstream_authority.clone());
        uri.path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .or_else(|| "/".parse().ok());
        parts.uri = match Uri::from_parts(uri) {
            Ok(u) => u,
            Err(e) => {
                let e = EnforceError::BadRequest(e.to_string());
                return self.local(error_response(&e, &rid), draft, ctx);
            }
        };
        parts.version = Version::HTTP_11;
        enf.enforcer().upstream_request_filter(&mut parts, &mut ctx);
        let bytes_in = Arc::new(AtomicU64::new(0));
        let body = Counted {
            inner: body,
            bytes: bytes_in.clone(),
        }
        .map_err(BoxError::from)
        .boxed_unsync();
        let upstream_started = Instant::now();
        let sent = tokio::time::timeout(
            settings.upstream_response_timeout,
            self.client.request(Request::from_parts(parts, body)),
        )
        .await;
        draft.event.upstream_latency_us = Some(elapsed_us(upstream_started));
        let resp = match sent {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let err = if e.is_connect() {
                    EnforceError::UpstreamConnect(e.to_string())
                } else {
                    EnforceError::Upstream(e.to_string())
                };
                tracing::warn!(error = %err, request_id = %rid, "upstream request failed");
                draft.event.bytes_in = bytes_in.load(Ordering::Relaxed);
                return self.local(error_response(&err, &rid), draft, ctx);
            }
            Err(_) => {
                let err = EnforceError::UpstreamTimeout(settings.upstream_response_timeout);
                tracing::warn!(error = %err, request_id = %rid, "upstream request failed");
                draft.event.bytes_in = bytes_in.load(Ordering::Relaxed);
                return self.local(error_response(&err, &rid), draft, ctx);
            }
        };

        // phase 6: the response
        let (mut rparts, rbody) = resp.into_parts();
        strip_hop_by_hop(&mut rparts.headers);
        if !rparts.headers.contains_key(&settings.request_id_header)
            && let Ok(v) = HeaderValue::from_str(&rid)
        {
            rparts.headers.insert(settings.request_id_header.clone(), v);
        }
        enf.enforcer().response_filter(&mut rparts, &mut ctx);
        draft.event.status = rparts.status.as_u16();
        let body = rbody.map_err(BoxError::from).boxed_unsync();
        Response::from_parts(rparts, self.metered(body, draft, ctx, Some(bytes_in)))
    }

    /// A locally made response, metered for the access event.
    fn local(
        &self,
        resp: Response<Full<Bytes>>,
        mut draft: Draft,
        ctx: E::Ctx,
    ) -> Response<ProxyBody> {
        let (parts, body) = resp.into_parts();
        draft.event.status = parts.status.as_u16();
        let body = body.map_err(|never| match never {}).boxed_unsync();
        Response::from_parts(parts, self.metered(body, draft, ctx, None))
    }

    fn metered(
        &self,
        body: ProxyBody,
        draft: Draft,
        mut ctx: E::Ctx,
        bytes_in: Option<Arc<AtomicU64>>,
    ) -> ProxyBody {
        let enf = self.enf.clone();
        let Draft { started, mut event } = draft;
        Metered {
            inner: body,
            bytes: 0,
            on_end: Some(Box::new(move |bytes_out, completed| {
                if let Some(b) = bytes_in {
                    event.bytes_in = event.bytes_in.max(b.load(Ordering::Relaxed));
                }
                event.bytes_out = bytes_out;
                event.completed = completed;
                event.latency_us = elapsed_us(started);
                enf.emit(event, &mut ctx);
            })),
        }
        .boxed_unsync()
    }
}

/// 503 for a stale feed under `fail_closed`; clients may retry shortly.
pub(crate) fn stale_response(request_id: &str) -> Response<Full<Bytes>> {
    let mut r = error_response(&EnforceError::FeedStale, request_id);
    r.headers_mut()
        .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// `X-Forwarded-For` and `Forwarded` for the upstream: appended to when the peer is a trusted
/// proxy, replaced otherwise (a client's own entries would be forgeries).
pub(crate) fn add_forwarding(
    headers: &mut HeaderMap,
    peer: IpAddr,
    trusted_peer: bool,
    host: Option<&str>,
    tls: bool,
) {
    let prior_xff = trusted_peer.then(|| joined(headers, &XFF, ", ")).flatten();
    let xff = match prior_xff {
        Some(p) if !p.trim().is_empty() => format!("{p}, {peer}"),
        _ => peer.to_string(),
    };
    let node = match peer {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let proto = if tls { "https" } else { "http" };
    let mut element = format!("for={node};proto={proto}");
    if let Some(h) = host
        && h.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        element.push_str(&format!(";host=\"{h}\""));
    }
    let prior_fwd = trusted_peer
        .then(|| joined(headers, &FORWARDED, ", "))
        .flatten();
    let fwd = match prior_fwd {
        Some(p) if !p.trim().is_empty() => format!("{p}, {element}"),
        _ => element,
    };
    headers.remove(&XFF);
    headers.remove(&FORWARDED);
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(XFF.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&fwd) {
        headers.insert(FORWARDED.clone(), v);
    }
}

/// A request body that counts its bytes.
struct Counted<B> {
    inner: B,
    bytes: Arc<AtomicU64>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            self.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type OnEnd = Box<dyn FnOnce(u64, bool) + Send>;

/// A response body that counts its bytes and reports when it ends or is dropped.
struct Metered {
    inner: ProxyBody,
    bytes: u64,
    on_end: Option<OnEnd>,
}

impl Metered {
    fn finish(&mut self, completed: bool) {
        if let Some(f) = self.on_end.take() {
            f(self.bytes, completed);
        }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.bytes += d.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish(true);
                }
            }
            Poll::Ready(None) => self.finish(true),
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Pending => {}
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let done = self.inner.is_end_stream();
        self.finish(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_forwarding() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        add_forwarding(
            &mut h,
            "198.51.100.1".parse().unwrap(),
            false,
            Some("api.example"),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "198.51.100.1");
        assert_eq!(
            h["forwarded"],
            "for=198.51.100.1;proto=http;host=\"api.example\""
        );
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        add_forwarding(&mut h, "2001:db8::1".parse().unwrap(), true, None, true);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 2001:db8::1");
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=https");
    }
}
