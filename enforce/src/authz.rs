//! The forward-auth endpoint: gateways already in front of the traffic ask vigil about each
//! request, and vigil answers like the proxy would, without forwarding anything.
//!
//! One endpoint (`/v1/authz` and any path below it) understands three callers:
//!
//! | caller | original method | original URI | host | client |
//! |---|---|---|---|---|
//! | NGINX `auth_request` | `X-Original-Method` | `X-Original-URI` | `Host` | `X-Real-IP`, `X-Forwarded-For` |
//! | Traefik ForwardAuth | `X-Forwarded-Method` | `X-Forwarded-Uri` | `X-Forwarded-Host` | `X-Forwarded-For` |
//! | Envoy ext_authz (HTTP) | the request's method | the path after the prefix | `Host` | `X-Forwarded-For` |
//!
//! The caller's own address must be in `trusted_proxies` for its client-address headers to be
//! believed (the same rule as the proxy and ingest use); otherwise the caller itself is the
//! client. `Authorization`, `Cookie` and the API key header are read from the check request,
//! which all three gateways forward.
//!
//! Answers: 200 with the trust headers (copy them upstream: Envoy `allowed_upstream_headers`,
//! NGINX `auth_request_set`, Traefik `authResponseHeaders`), or 401/403/429 (and 302 for a
//! browser step-up) with the same bodies as the proxy. NGINX passes only 401 and 403 through
//! and turns any other status into 500, so NGINX callers get step-up as 401 (never 302).
//! Forward-auth emits no access events: the gateway logs the request, and ingest reads those
//! logs.
//!
//! With `[proxy.inline_detect]` on, the original request (its method and URI as read above,
//! and the check request's `User-Agent` and `Referer`, which NGINX and Traefik copy from the
//! original; list them in Envoy's `allowed_headers`) is inspected like the proxy inspects
//! its requests: `block` answers 403 (which NGINX passes through), `monitor` answers 200 with
//! `x-vigil-action: monitor` where the decision said `allow`.
//!
//! # Wiring a gateway (vigil's forward-auth on `127.0.0.1:9090`)
//!
//! NGINX:
//! ```text
//! location / {
//!     auth_request /_vigil;
//!     auth_request_set $vigil_identity $upstream_http_x_vigil_identity;
//!     proxy_set_header X-Vigil-Identity $vigil_identity;
//!     proxy_pass http://app;
//! }
//! location = /_vigil {
//!     internal;
//!     proxy_pass http://127.0.0.1:9090/v1/authz;
//!     proxy_pass_request_body off;
//!     proxy_set_header Content-Length "";
//!     proxy_set_header X-Original-URI $request_uri;
//!     proxy_set_header X-Original-Method $request_method;
//!     proxy_set_header X-Real-IP $remote_addr;
//!     proxy_set_header X-Forwarded-For $http_x_forwarded_for;
//! }
//! ```
//! Traefik (dynamic configuration):
//! ```text
//! http:
//!   middlewares:
//!     vigil:
//!       forwardAuth:
//!         address: http://127.0.0.1:9090/v1/authz
//!         authResponseHeaders: [X-Vigil-Identity, X-Vigil-Score, X-Vigil-Action]
//! ```
//! Envoy (`envoy.filters.http.ext_authz`):
//! ```text
//! http_service:
//!   server_uri: { uri: 127.0.0.1:9090, cluster: vigil, timeout: 0.25s }
//!   path_prefix: /v1/authz
//!   authorization_request:
//!     allowed_headers: { patterns: [{exact: authorization}, {exact: cookie}, {exact: x-api-key}, {exact: accept}] }
//!   authorization_response:
//!     allowed_upstream_headers: { patterns: [{prefix: x-vigil-}] }
//! ```
//! Envoy appends the client to `X-Forwarded-For` itself; list the gateways' addresses in
//! `trusted_proxies`.

use crate::config::FailPolicy;
use crate::decision::Action;
use crate::enforcement::{EnforcePoint, Enforcement, Enforcer, Outcome, RequestView};
use crate::inline_detect::InlineMode;
use crate::response::{ProxyBody, error_response, problem};
use crate::server::{ConnInfo, Handler, Readiness, ServerOptions, serve};
use crate::subjects::{canonical_ip, joined, parse_ip};
use crate::table::Verdict;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderMap, HeaderName};
use hyper::{Method, Request, Response, StatusCode};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Which gateway convention a check request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerStyle {
    Nginx,
    Traefik,
    Envoy,
}

/// The original request a check is about.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginalRequest {
    pub style: CallerStyle,
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub host: Option<String>,
    pub client_ip: Option<IpAddr>,
}

fn header<'a>(h: &'a HeaderMap, n: &HeaderName) -> Option<&'a str> {
    h.get(n)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Reads the original request out of a check request from `peer` to `path_and_query`.
pub fn original_request<E: Enforcer>(
    enf: &Enforcement<E>,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    peer: IpAddr,
) -> OriginalRequest {
    let ex = enf.extractor();
    let peer = canonical_ip(peer);
    let trusted = ex.is_trusted(peer);
    let xff = joined(headers, &XFF, ", ");
    let host_header = header(headers, &HOST).map(str::to_owned);
    let method_from = |n: &HeaderName| {
        header(headers, n)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(Method::GET)
    };
    if headers.contains_key(&X_ORIGINAL_URI) || headers.contains_key(&X_ORIGINAL_METHOD) {
        // NGINX: X-Real-IP is $remote_addr, the peer NGINX saw (the address it logs)
        let peer_of_record = if trusted {
            header(headers, &X_REAL_IP)
                .and_then(parse_ip)
                .unwrap_or(peer)
        } else {
            peer
        };
        return OriginalRequest {
            style: CallerStyle::Nginx,
            method: method_from(&X_ORIGINAL_METHOD),
            uri: header(headers, &X_ORIGINAL_URI).unwrap_or("/").to_string(),
            host: host_header,
            client_ip: ex.client_ip(Some(peer_of_record), xff.as_deref()),
        };
    }
    let client_ip = ex.client_ip(Some(peer), xff.as_deref());
    if headers.contains_key(&X_FORWARDED_URI) || headers.contains_key(&X_FORWARDED_METHOD) {
        return OriginalRequest {
            style: CallerStyle::Traefik,
            method: method_from(&X_FORWARDED_METHOD),
            uri: header(headers, &X_FORWARDED_URI).unwrap_or("/").to_string(),
            host: header(headers, &X_FORWARDED_HOST)
                .map(str::to_owned)
                .or(host_header),
            client_ip,
        };
    }
    let prefix = &enf.settings().authz_path_prefix;
    let rest = path_and_query.strip_prefix(prefix.as_str()).unwrap_or("/");
    let uri = if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_string()
    };
    OriginalRequest {
        style: CallerStyle::Envoy,
        method: method.clone(),
        uri,
        host: host_header,
        client_ip,
    }
}

/// Answers one check request (also usable from another HTTP server, e.g. an axum route).
pub fn check<E: Enforcer>(
    enf: &Enforcement<E>,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Response<Full<Bytes>> {
    let settings = enf.settings();
    let prefix = &settings.authz_path_prefix;
    let path = path_and_query.split('?').next().unwrap_or_default();
    let trusted_peer = enf.extractor().is_trusted(canonical_ip(peer));
    let rid = crate::proxy::request_id(headers, &settings.request_id_header, trusted_peer);
    if !(path == prefix.as_str() || path.starts_with(&format!("{prefix}/"))) {
        return problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "no such endpoint",
            None,
            &rid,
        );
    }
    let orig = original_request(enf, method, path_and_query, headers, peer);
    let mut subjects = match enf.extractor().extract_with_ip(orig.client_ip, headers) {
        Ok(s) => s,
        Err(e) => return error_response(&e, &rid),
    };
    if let Some(h) = &enf.settings().device_header {
        let tls = headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        subjects.device = crate::fingerprint::device_id(tls, None);
    }
    let view = RequestView {
        method: &orig.method,
        uri: &orig.uri,
        host: orig.host.as_deref(),
        headers,
    };
    let mut ctx = E::Ctx::default();
    let orig_path = orig.uri.split('?').next().unwrap_or("/");
    let verdict = match enf.stale_policy(orig_path) {
        Some(FailPolicy::FailClosed) => {
            // NGINX turns any status but 401/403 into 500; the others pass 503 through
            return if orig.style == CallerStyle::Nginx {
                let mut r = crate::proxy::stale_response(&rid);
                *r.status_mut() = StatusCode::FORBIDDEN;
                r
            } else {
                crate::proxy::stale_response(&rid)
            };
        }
        Some(FailPolicy::FailOpen) => Verdict::allow(),
        _ => enf.enforcer().decide(&view, &subjects, &mut ctx),
    };
    let outcome = if orig.style == CallerStyle::Nginx {
        // NGINX cannot pass a redirect through auth_request: no IdP redirect for it
        let no_browser = RequestView {
            headers: &HeaderMap::new(),
            ..view
        };
        enf.apply(&verdict, &subjects, &no_browser, &rid)
    } else {
        enf.apply(&verdict, &subjects, &view, &rid)
    };
    let mut verdict = verdict;
    if matches!(outcome, Outcome::Pass)
        && let Some((mode, found)) = enf.inspect_content(
            EnforcePoint::Authz,
            orig.method.as_str(),
            &orig.uri,
            None,
            headers,
            &rid,
        )
    {
        if mode == InlineMode::Block {
            enf.metrics().record_check(Action::Block);
            return crate::inline_detect::block_response(&found, &rid);
        }
        if verdict.action == Action::Allow {
            verdict.action = Action::Monitor;
        }
    }
    enf.metrics().record_check(verdict.action);
    match outcome {
        Outcome::Deny(r) => r,
        Outcome::Pass => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::OK;
            for (n, v) in enf.trust_headers(&verdict, &subjects) {
                r.headers_mut().insert(n, v);
            }
            r
        }
    }
}

/// A standalone forward-auth server.
pub struct AuthzServer<E: Enforcer> {
    inner: Arc<AuthzInner<E>>,
}

struct AuthzInner<E: Enforcer> {
    enf: Arc<Enforcement<E>>,
    readiness: Readiness,
}

impl<E: Enforcer> std::fmt::Debug for AuthzServer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzServer")
            .field("ready", &self.inner.readiness.is_ready())
            .finish()
    }
}

impl<E: Enforcer> AuthzServer<E> {
    pub fn new(enf: Arc<Enforcement<E>>) -> Self {
        AuthzServer {
            inner: Arc::new(AuthzInner {
                enf,
                readiness: Readiness::new(false),
            }),
        }
    }

    pub fn readiness(&self) -> Readiness {
        self.inner.readiness.clone()
    }

    /// Serves on `listener` until `shutdown`, then drains like the proxy. Always cleartext
    /// (`tls_cert_path` is the proxy listener's): the endpoint sits next to the gateway that
    /// calls it, on loopback or a private network.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let mut opts = ServerOptions::from_settings(self.inner.enf.settings());
        opts.tls = None;
        let readiness = self.inner.readiness.clone();
        serve(listener, opts, readiness, shutdown, self.inner).await;
    }
}

impl<E: Enforcer> Handler for AuthzInner<E> {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        conn.mark_request();
        // check requests carry no body worth reading (Envoy sends none by default); it is
        // dropped unread
        let pq = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let resp = check(&self.enf, req.method(), &pq, req.headers(), conn.peer.ip());
        let _ = conn.framing.pop();
        async move { resp.map(|b| b.map_err(|never| match never {}).boxed_unsync()) }
    }
}
