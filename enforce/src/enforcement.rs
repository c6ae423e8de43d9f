//! The decision seam and what the proxy and forward-auth share: subject extraction, the
//! [`Enforcer`] that decides, the throttle buckets and the event sink.
//!
//! # Phases of a request (proxy)
//!
//! 1. **request checks**: ambiguous HTTP/1 framing (400, connection closed), too many header
//!    fields (431). hyper has already applied the header-read timeout and the head size
//!    limit.
//! 2. **subjects**: client IP, verified JWT (an invalid token ends here with 401), session,
//!    API key ([`SubjectExtractor`]).
//! 3. **decide**: when the decision feed is stale, the route's fail policy first
//!    ([`Enforcement::stale_policy`]: `fail_closed` answers 503, `fail_open` forwards without
//!    looking decisions up, `keep_last_known` goes on); then [`Enforcer::decide`], the one
//!    required method, returns a [`Verdict`].
//! 4. **apply**: `block` → 403, `throttle` → the subject's token bucket (429 when empty),
//!    `step_up` → 401 challenge or 302 to the identity provider; `monitor`/`allow` go on.
//!    Then, only with `[proxy.inline_detect]` on, the request's own content
//!    ([`Enforcement::inspect_content`]): strong evidence in a configured class is a 403 in
//!    `block` mode, and turns `allow` into `monitor` in `monitor` mode (a stricter action in
//!    force is kept). Requests already refused are not inspected.
//! 5. **upstream request**: hop-by-hop headers removed, forwarding and trust headers added,
//!    then [`Enforcer::upstream_request_filter`].
//! 6. **response**: hop-by-hop headers removed, then [`Enforcer::response_filter`].
//! 7. **logging**: when the response body ends (or is abandoned): [`Enforcer::logging`], then
//!    the access event is queued.
//!
//! Forward-auth runs phases 2 to 4 (the content check on the original request it is asked
//! about) and answers 200 with trust headers instead of forwarding.

use crate::config::{FailPolicy, ProxySettings};
use crate::decision::Action;
use crate::error::EnforceError;
use crate::events::{AccessEvent, EventSink};
use crate::feed::FeedStatus;
use crate::inline_detect::{Detection, InlineMode};
use crate::jwt::JwtVerifier;
use crate::metrics::{ProxyMetrics, RenderMetrics};
use crate::response::problem;
use crate::subjects::{RequestSubjects, SubjectExtractor};
use crate::table::{DecisionTable, Verdict};
use crate::throttle::{Throttle, retry_after_secs};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};
use hyper::{Method, Response, StatusCode};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What an [`Enforcer`] sees of a request (the original request, for forward-auth).
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// Path and query.
    pub uri: &'a str,
    pub host: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// The decision seam: how a request's subjects become a verdict, plus optional hooks.
///
/// Implementations must not block: `decide` runs on the request path for every request, so
/// it should read local state only (the [`DecisionTable`] is the normal source).
pub trait Enforcer: Send + Sync + 'static {
    /// Per-request state, created when the request arrives and dropped after logging.
    type Ctx: Default + Send + 'static;

    /// Phase 3: the verdict for a request with these subjects. Never fails. Not called while
    /// a stale feed's fail policy is `fail_open` or `fail_closed` for the request's route
    /// (the proxy answers for it); under `keep_last_known` it reads what it holds.
    fn decide(
        &self,
        req: &RequestView<'_>,
        subjects: &RequestSubjects,
        ctx: &mut Self::Ctx,
    ) -> Verdict;

    /// Phase 5: last changes to the request sent upstream.
    fn upstream_request_filter(
        &self,
        _parts: &mut hyper::http::request::Parts,
        _ctx: &mut Self::Ctx,
    ) {
    }

    /// Phase 6: last changes to the upstream's response head.
    fn response_filter(&self, _parts: &mut hyper::http::response::Parts, _ctx: &mut Self::Ctx) {}

    /// Phase 7: the request is over; `event` is about to be queued.
    fn logging(&self, _event: &AccessEvent, _ctx: &mut Self::Ctx) {}
}

/// The standard enforcer: the strictest live decision of the request's subjects in a
/// [`DecisionTable`], an allow-list entry first.
#[derive(Debug, Clone)]
pub struct TableEnforcer {
    table: Arc<DecisionTable>,
}

impl TableEnforcer {
    pub fn new(table: Arc<DecisionTable>) -> Self {
        TableEnforcer { table }
    }

    pub fn table(&self) -> &Arc<DecisionTable> {
        &self.table
    }
}

impl Enforcer for TableEnforcer {
    type Ctx = ();

    fn decide(&self, _req: &RequestView<'_>, subjects: &RequestSubjects, _ctx: &mut ()) -> Verdict {
        self.table.evaluate(&subjects.subjects())
    }
}

/// Which side of an enforcement point handles a request: for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnforcePoint {
    /// The inline proxy.
    Proxy,
    /// The forward-auth endpoint.
    Authz,
}

/// What to do with a request after phase 4.
#[derive(Debug)]
pub enum Outcome {
    /// Forward it (proxy) or answer 200 (forward-auth).
    Pass,
    /// Answer with this response.
    Deny(Response<Full<Bytes>>),
}

/// Shared enforcement state, one per process (or per listener set).
pub struct Enforcement<E: Enforcer> {
    settings: Arc<ProxySettings>,
    extractor: SubjectExtractor,
    enforcer: E,
    throttle: Throttle,
    events: Option<EventSink>,
    feed: Option<Arc<FeedStatus>>,
    metrics: ProxyMetrics,
}

impl<E: Enforcer> std::fmt::Debug for Enforcement<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcement")
            .field("listen", &self.settings.listen)
            .field("jwt", &self.extractor.jwt())
            .field("throttled_subjects", &self.throttle.len())
            .finish_non_exhaustive()
    }
}

impl<E: Enforcer> Enforcement<E> {
    /// Builds the shared state; loads the JWKS when JWT verification is configured. No
    /// decision feed is watched: the decisions are always fresh (in process).
    pub async fn new(
        settings: ProxySettings,
        enforcer: E,
        events: Option<EventSink>,
    ) -> Result<Arc<Self>, EnforceError> {
        Self::with_feed(settings, enforcer, events, None).await
    }

    /// [`new`](Self::new), watching `feed`: while it is stale, each route's fail policy
    /// applies.
    pub async fn with_feed(
        settings: ProxySettings,
        enforcer: E,
        events: Option<EventSink>,
        feed: Option<Arc<FeedStatus>>,
    ) -> Result<Arc<Self>, EnforceError> {
        let jwt = match &settings.jwt {
            Some(j) => Some(JwtVerifier::new(j.clone()).await?),
            None => None,
        };
        let extractor = SubjectExtractor::new(&settings, jwt);
        Ok(Arc::new(Enforcement {
            settings: Arc::new(settings),
            extractor,
            enforcer,
            throttle: Throttle::new(),
            events,
            feed,
            metrics: ProxyMetrics::default(),
        }))
    }

    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    pub fn extractor(&self) -> &SubjectExtractor {
        &self.extractor
    }

    pub fn enforcer(&self) -> &E {
        &self.enforcer
    }

    pub fn events(&self) -> Option<&EventSink> {
        self.events.as_ref()
    }

    /// The decision feed watched for staleness, if any.
    pub fn feed(&self) -> Option<&Arc<FeedStatus>> {
        self.feed.as_ref()
    }

    pub fn metrics(&self) -> &ProxyMetrics {
        &self.metrics
    }

    /// The fail policy to apply to a request for `path` instead of looking decisions up:
    /// `Some(FailOpen | FailClosed)` only while the feed is stale and the route's policy is
    /// not `keep_last_known` (counted in the metrics).
    pub fn stale_policy(&self, path: &str) -> Option<FailPolicy> {
        let feed = self.feed.as_ref()?;
        if !feed.is_stale() {
            return None;
        }
        match self.settings.fail_policy_for(path) {
            FailPolicy::KeepLastKnown => None,
            p => {
                self.metrics.record_fail_policy(p);
                Some(p)
            }
        }
    }

    /// Background upkeep until `shutdown`: sweeps idle throttle buckets and lapsed cached
    /// token verifications, and refreshes the JWKS. Run it in the owner's task set (the decision table's sweeper is the table
    /// owner's).
    pub async fn run_maintenance(self: Arc<Self>, shutdown: CancellationToken) {
        let jwks = self.extractor.jwt().cloned();
        let refresher = async {
            if let Some(j) = jwks {
                j.run_refresher(shutdown.clone()).await;
            }
        };
        let sweeper = async {
            let mut tick = tokio::time::interval(self.settings.sweep_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        self.throttle.sweep(Instant::now());
                        if let Some(j) = self.extractor.jwt() {
                            j.sweep_cache();
                        }
                    }
                }
            }
        };
        tokio::join!(refresher, sweeper);
    }

    /// Phase 4: applies the verdict. `original_url` is used for step-up redirects.
    pub fn apply(
        &self,
        verdict: &Verdict,
        subjects: &RequestSubjects,
        req: &RequestView<'_>,
        request_id: &str,
    ) -> Outcome {
        let decision_id = verdict.decision.as_ref().map(|d| d.id.as_str());
        match verdict.action {
            Action::Allow | Action::Monitor => Outcome::Pass,
            Action::Block => Outcome::Deny(problem(
                StatusCode::FORBIDDEN,
                "blocked",
                "access denied by policy",
                decision_id,
                request_id,
            )),
            Action::Throttle => {
                let Some(d) = &verdict.decision else {
                    return Outcome::Pass;
                };
                let rps = d.throttle_rps.unwrap_or(self.settings.throttle_default_rps);
                match self.throttle.check(&d.subject, rps, Instant::now()) {
                    Ok(()) => Outcome::Pass,
                    Err(wait) => Outcome::Deny(throttled(wait, decision_id, request_id)),
                }
            }
            Action::StepUp => {
                let su = &self.settings.step_up;
                if subjects
                    .acr
                    .as_deref()
                    .is_some_and(|acr| su.acr_values.split(' ').any(|v| v == acr))
                {
                    // the token already carries the required authentication level
                    return Outcome::Pass;
                }
                if let Some(url) = &su.redirect_url
                    && is_browser(req)
                {
                    return Outcome::Deny(step_up_redirect(url, &su.return_to_param, req));
                }
                let mut challenge = format!(
                    r#"Bearer error="insufficient_user_authentication", error_description="a stronger authentication is required", acr_values="{}""#,
                    su.acr_values
                );
                if let Some(age) = su.max_age_secs {
                    challenge.push_str(&format!(", max_age={age}"));
                }
                let mut r = problem(
                    StatusCode::UNAUTHORIZED,
                    "step-up-required",
                    "a stronger authentication is required",
                    decision_id,
                    request_id,
                );
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, v);
                }
                Outcome::Deny(r)
            }
        }
    }

    /// Phase 4, second step: the request-content check of `[proxy.inline_detect]` for a
    /// request its decision let through. `None` when inline detection is off (the detectors
    /// are not called) or found no strong evidence in a configured class; otherwise the mode
    /// to apply and what was found, already counted and logged. `target` is the path and
    /// query as sent; `headers` supply `User-Agent` and `Referer`.
    pub fn inspect_content(
        &self,
        point: EnforcePoint,
        method: &str,
        target: &str,
        protocol: Option<&str>,
        headers: &HeaderMap,
        request_id: &str,
    ) -> Option<(InlineMode, Detection)> {
        let detector = self.settings.inline_detect.as_ref()?;
        let found = detector.inspect_parts(method, target, protocol, headers)?;
        let mode = detector.mode();
        match point {
            EnforcePoint::Proxy => self.metrics.record_inline_request(found.classes),
            EnforcePoint::Authz => self.metrics.record_inline_check(found.classes),
        }
        tracing::info!(
            request_id,
            ?point,
            mode = mode.as_str(),
            classes = %found.classes,
            evidence = %found.evidence,
            "request content matched attack patterns"
        );
        Some((mode, found))
    }

    /// The trust headers for a passed request.
    pub fn trust_headers(
        &self,
        verdict: &Verdict,
        subjects: &RequestSubjects,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let th = &self.settings.trust_headers;
        let mut out = Vec::with_capacity(8);
        let mut put = |name: &Option<HeaderName>, value: Option<String>| {
            if let (Some(n), Some(v)) = (name, value)
                && let Ok(v) = HeaderValue::from_bytes(v.as_bytes())
            {
                out.push((n.clone(), v));
            }
        };
        let d = verdict.decision.as_ref();
        put(&th.action, Some(verdict.action.as_str().to_string()));
        put(&th.score, d.map(|d| format!("{:.3}", d.score)));
        put(&th.subject, d.map(|d| d.subject.to_string()));
        put(&th.decision_id, d.map(|d| d.id.clone()));
        put(&th.identity, subjects.identity.clone());
        put(&th.session, subjects.session.clone());
        put(&th.api_key_id, subjects.api_key_id.clone());
        put(&th.client_ip, subjects.client_ip.map(|ip| ip.to_string()));
        out
    }

    /// Removes client-sent copies of the trust headers (they must come from vigil only).
    pub fn strip_trust_headers(&self, headers: &mut HeaderMap) {
        for n in self.settings.trust_headers.all() {
            headers.remove(n);
        }
    }

    pub(crate) fn emit(&self, event: AccessEvent, ctx: &mut E::Ctx) {
        self.metrics.record_request(
            event.action,
            event.status,
            Duration::from_micros(event.latency_us),
            event.upstream_latency_us.map(Duration::from_micros),
        );
        self.enforcer.logging(&event, ctx);
        if let Some(sink) = &self.events {
            sink.emit(event);
        }
    }
}

impl<E: Enforcer> RenderMetrics for Enforcement<E> {
    fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        self.metrics.render(out);
        if let Some(d) = &self.settings.inline_detect {
            self.metrics.render_inline(out, d.mode(), d.classes());
        }
        let (sent, dropped) = self
            .events
            .as_ref()
            .map_or((0, 0), |e| (e.sent(), e.dropped()));
        let _ = writeln!(
            out,
            "# HELP vigil_proxy_access_events_total Access events queued for ingest.\n# TYPE vigil_proxy_access_events_total counter\nvigil_proxy_access_events_total {sent}\n# HELP vigil_proxy_access_events_dropped_total Access events dropped because the queue was full or closed.\n# TYPE vigil_proxy_access_events_dropped_total counter\nvigil_proxy_access_events_dropped_total {dropped}"
        );
        if let Some(f) = &self.feed {
            f.render_metrics(out);
        }
    }
}

fn throttled(wait: Duration, decision_id: Option<&str>, request_id: &str) -> Response<Full<Bytes>> {
    let mut r = problem(
        StatusCode::TOO_MANY_REQUESTS,
        "throttled",
        "too many requests; retry later",
        decision_id,
        request_id,
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
    r
}

/// A browser navigation: GET/HEAD that accepts HTML.
fn is_browser(req: &RequestView<'_>) -> bool {
    (req.method == Method::GET || req.method == Method::HEAD)
        && req
            .headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"))
}

fn step_up_redirect(url: &str, param: &str, req: &RequestView<'_>) -> Response<Full<Bytes>> {
    let mut location = url.to_string();
    if !param.is_empty() {
        let original = match req.host {
            Some(h) => format!("http://{h}{}", req.uri),
            None => req.uri.to_string(),
        };
        location.push(if url.contains('?') { '&' } else { '?' });
        location.push_str(&utf8_percent_encode(param, NON_ALPHANUMERIC).to_string());
        location.push('=');
        location.push_str(&utf8_percent_encode(&original, NON_ALPHANUMERIC).to_string());
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}
