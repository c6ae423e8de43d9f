//! OpenTelemetry export over OTLP/HTTP, JSON encoding (`[telemetry] otlp_endpoint`).
//!
//! - **Traces**: one span per request the in-process proxy handled (`proxy.request`, from its
//!   access event: method, route, status, the subjects it resolved, the action and decision
//!   applied, upstream time), and one span per event batch the engine handled
//!   (`pipeline.batch`: events, decisions, time to score and store). Spans wait in a bounded
//!   queue; when it is full new spans are dropped and counted
//!   (`vigil_otlp_spans_dropped_total`), never blocking the proxy or the pipeline.
//! - **Metrics**: every export interval, the same families `/metrics` shows, as OTLP sums
//!   (counters, cumulative), gauges and histograms.
//!
//! Posted to `<endpoint>/v1/traces` and `<endpoint>/v1/metrics`, as an OpenTelemetry Collector
//! (or any OTLP/HTTP receiver) takes them. Subjects appear as span attributes only, never as
//! metric attributes.

use anyhow::{Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vigil_enforce::events::AccessEvent;

/// `[telemetry]`: where traces and metrics go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/HTTP endpoint, e.g. `http://otel-collector:4318`: spans go to `/v1/traces`,
    /// metrics to `/v1/metrics` under it. Default none: nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the resource. Default `vigil`.
    pub service_name: String,
    /// How often spans and metrics are sent. Default 5000.
    pub export_interval_ms: u64,
    /// Spans held for the next export at most; beyond, new spans are dropped and counted.
    /// Default 16384.
    pub max_queued_spans: usize,
    /// Share of proxied requests that get a span, 0 to 1. Default 1.
    pub proxy_sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "vigil".into(),
            export_interval_ms: 5000,
            max_queued_spans: 16_384,
            proxy_sample_ratio: 1.0,
        }
    }
}

impl TelemetryConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(e) = &self.otlp_endpoint {
            let uri: hyper::Uri = e.parse().map_err(|_| {
                anyhow::anyhow!("invalid config at `telemetry.otlp_endpoint`: `{e}` is not a URL")
            })?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                bail!(
                    "invalid config at `telemetry.otlp_endpoint`: `{e}` must be an http://host:port URL"
                );
            }
        }
        if self.export_interval_ms == 0 {
            bail!("invalid config at `telemetry.export_interval_ms`: must be at least 1");
        }
        if self.max_queued_spans == 0 {
            bail!("invalid config at `telemetry.max_queued_spans`: must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.proxy_sample_ratio) {
            bail!("invalid config at `telemetry.proxy_sample_ratio`: must be between 0 and 1");
        }
        Ok(())
    }
}

/// One finished span.
struct Span {
    name: &'static str,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    /// OTLP span kind: 1 internal, 2 server.
    kind: u8,
    start_us: i64,
    end_us: i64,
    error: bool,
    attributes: Vec<(&'static str, Value)>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr(key: &str, v: &Value) -> Value {
    let value = match v {
        Value::String(s) => json!({ "stringValue": s }),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({ "intValue": n.to_string() }),
        Value::Number(n) => json!({ "doubleValue": n.as_f64() }),
        other => json!({ "stringValue": other.to_string() }),
    };
    json!({ "key": key, "value": value })
}

/// The exporter: a bounded span queue and counters.
pub struct Telemetry {
    cfg: TelemetryConfig,
    endpoint: String,
    spans: Mutex<Vec<Span>>,
    pub spans_exported: AtomicU64,
    pub spans_dropped: AtomicU64,
    pub export_errors: AtomicU64,
    sampled: AtomicU64,
}

impl Telemetry {
    /// The exporter of `cfg`; `None` without an endpoint.
    pub fn new(cfg: &TelemetryConfig) -> Option<Self> {
        let endpoint = cfg
            .otlp_endpoint
            .as_ref()?
            .trim_end_matches('/')
            .to_string();
        Some(Self {
            cfg: cfg.clone(),
            endpoint,
            spans: Mutex::new(Vec::new()),
            spans_exported: AtomicU64::new(0),
            spans_dropped: AtomicU64::new(0),
            export_errors: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
        })
    }

    fn record(&self, span: Span) {
        let mut q = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.cfg.max_queued_spans {
            self.spans_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push(span);
    }

    fn ids() -> ([u8; 16], [u8; 8]) {
        let t: [u8; 16] = rand::random();
        let s: [u8; 8] = rand::random();
        (t, s)
    }

    /// A `proxy.request` span from one of the proxy's access events (sampled).
    pub fn proxy_request(&self, e: &AccessEvent) {
        let ratio = self.cfg.proxy_sample_ratio;
        if ratio < 1.0 {
            // deterministic 1-in-n sampling: cheap, and steady under load
            let n = self.sampled.fetch_add(1, Ordering::Relaxed);
            let every = (1.0 / ratio.max(1e-6)).round() as u64;
            if ratio <= 0.0 || !n.is_multiple_of(every.max(1)) {
                return;
            }
        }
        let (trace_id, span_id) = Self::ids();
        let mut a: Vec<(&'static str, Value)> = vec![
            ("http.request.method", json!(e.method)),
            ("url.path", json!(e.path)),
            ("http.response.status_code", json!(e.status)),
            ("network.protocol.version", json!(e.protocol)),
            ("vigil.action", json!(e.action.as_str())),
            ("vigil.request_id", json!(e.request_id)),
            ("http.response.body.size", json!(e.bytes_out)),
        ];
        if let Some(ip) = e.client_ip {
            a.push(("client.address", json!(ip.to_string())));
        }
        if let Some(v) = &e.identity {
            a.push(("vigil.subject.identity", json!(v)));
        }
        if let Some(v) = &e.session {
            a.push(("vigil.subject.session", json!(v)));
        }
        if let Some(v) = &e.api_key_id {
            a.push(("vigil.subject.api_key", json!(v)));
        }
        if let Some(v) = &e.decision_id {
            a.push(("vigil.decision_id", json!(v)));
        }
        if let Some(u) = e.upstream_latency_us {
            a.push(("vigil.upstream_ms", json!(u as f64 / 1000.0)));
        }
        self.record(Span {
            name: "proxy.request",
            trace_id,
            span_id,
            kind: 2,
            start_us: e.timestamp.0,
            end_us: e.timestamp.0 + e.latency_us as i64,
            error: e.status >= 500 || !e.completed,
            attributes: a,
        });
    }

    /// A `pipeline.batch` span: one event batch scored, its decisions published, stored.
    pub fn batch(&self, start_us: i64, end_us: i64, events: usize, decisions: usize, failed: bool) {
        let (trace_id, span_id) = Self::ids();
        self.record(Span {
            name: "pipeline.batch",
            trace_id,
            span_id,
            kind: 1,
            start_us,
            end_us,
            error: failed,
            attributes: vec![
                ("vigil.events", json!(events)),
                ("vigil.decisions", json!(decisions)),
            ],
        });
    }

    fn resource(&self) -> Value {
        json!({ "attributes": [
            attr("service.name", &json!(self.cfg.service_name)),
            attr("service.version", &json!(env!("CARGO_PKG_VERSION"))),
        ]})
    }

    fn traces_body(&self, spans: &[Span]) -> Value {
        let spans: Vec<Value> = spans
            .iter()
            .map(|s| {
                json!({
                    "traceId": hex(&s.trace_id),
                    "spanId": hex(&s.span_id),
                    "name": s.name,
                    "kind": s.kind,
                    "startTimeUnixNano": (s.start_us as i128 * 1000).to_string(),
                    "endTimeUnixNano": (s.end_us.max(s.start_us) as i128 * 1000).to_string(),
                    "attributes": s.attributes.iter().map(|(k, v)| attr(k, v)).collect::<Vec<_>>(),
                    "status": { "code": if s.error { 2 } else { 1 } },
                })
            })
            .collect();
        json!({ "resourceSpans": [{
            "resource": self.resource(),
            "scopeSpans": [{ "scope": { "name": "vigil", "version": env!("CARGO_PKG_VERSION") }, "spans": spans }],
        }]})
    }

    async fn post(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        path: &str,
        body: &Value,
    ) -> Result<()> {
        let req = hyper::Request::post(format!("{}{path}", self.endpoint))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| anyhow::anyhow!("no answer in 10 s"))??;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if !status.is_success() {
            bail!("the receiver answered {status}");
        }
        Ok(())
    }

    async fn export(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        metrics: &str,
        start_us: i64,
    ) {
        let spans = std::mem::take(&mut *self.spans.lock().unwrap_or_else(|p| p.into_inner()));
        for chunk in spans.chunks(2048) {
            match self
                .post(client, "/v1/traces", &self.traces_body(chunk))
                .await
            {
                Ok(()) => {
                    self.spans_exported
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                Err(error) => {
                    self.export_errors.fetch_add(1, Ordering::Relaxed);
                    self.spans_dropped
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    tracing::warn!(%error, endpoint = %self.endpoint, "OTLP span export failed");
                }
            }
        }
        let now_us = vigil_ingest::pipeline::now_us();
        let body = json!({ "resourceMetrics": [{
            "resource": self.resource(),
            "scopeMetrics": [{ "scope": { "name": "vigil" }, "metrics": otlp_metrics(metrics, start_us, now_us) }],
        }]});
        if let Err(error) = self.post(client, "/v1/metrics", &body).await {
            self.export_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, endpoint = %self.endpoint, "OTLP metrics export failed");
        }
    }

    /// Exports every interval until `stop`, then once more.
    pub async fn run(
        self: std::sync::Arc<Self>,
        metrics: impl Fn() -> String + Send,
        stop: CancellationToken,
    ) {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let start_us = vigil_ingest::pipeline::now_us();
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.export_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let last = tokio::select! {
                () = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            self.export(&client, &metrics(), start_us).await;
            if last {
                return;
            }
        }
    }

    /// The exporter's own families, for `/metrics`.
    pub fn render(&self, s: &mut String) {
        use std::fmt::Write as _;
        for (name, help, v) in [
            (
                "vigil_otlp_spans_exported_total",
                "Spans delivered to the OTLP endpoint.",
                &self.spans_exported,
            ),
            (
                "vigil_otlp_spans_dropped_total",
                "Spans dropped: queue full or export failed.",
                &self.spans_dropped,
            ),
            (
                "vigil_otlp_export_errors_total",
                "Failed OTLP exports.",
                &self.export_errors,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
}

/// Prometheus text (as `/metrics` renders it) as OTLP JSON metrics: counters as cumulative
/// monotonic sums, gauges as gauges, histograms as histograms (bucket counts per bucket).
fn otlp_metrics(text: &str, start_us: i64, now_us: i64) -> Vec<Value> {
    let start = (start_us as i128 * 1000).to_string();
    let now = (now_us as i128 * 1000).to_string();
    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    let mut helps: BTreeMap<&str, &str> = BTreeMap::new();
    // family -> labels (without `le`) -> samples (suffix, le, value)
    type Labels = Vec<(String, String)>;
    type Samples<'a> = Vec<(&'a str, Option<f64>, f64)>;
    type Series<'a> = BTreeMap<&'a str, BTreeMap<Labels, Samples<'a>>>;
    let mut series: Series<'_> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((n, k)) = rest.split_once(' ') {
                kinds.insert(n, k);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((n, h)) = rest.split_once(' ') {
                helps.insert(n, h);
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (name_labels, ""),
        };
        let mut le = None;
        let mut set = Vec::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let v = v.trim_matches('"').to_string();
            if k == "le" {
                le = Some(if v == "+Inf" {
                    f64::INFINITY
                } else {
                    v.parse().unwrap_or(f64::INFINITY)
                });
            } else {
                set.push((k.to_string(), v));
            }
        }
        let (family, suffix) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| kinds.get(f) == Some(&"histogram"))
                    .map(|f| (f, *s))
            })
            .unwrap_or((name, ""));
        series
            .entry(family)
            .or_default()
            .entry(set)
            .or_default()
            .push((suffix, le, value));
    }
    let attrs = |set: &[(String, String)]| -> Vec<Value> {
        set.iter().map(|(k, v)| attr(k, &json!(v))).collect()
    };
    let mut out = Vec::new();
    for (family, by_labels) in series {
        let kind = kinds.get(family).copied().unwrap_or("gauge");
        let mut m =
            json!({ "name": family, "description": helps.get(family).copied().unwrap_or("") });
        match kind {
            "histogram" => {
                let points: Vec<Value> = by_labels
                    .iter()
                    .map(|(set, samples)| {
                        let mut buckets: Vec<(f64, f64)> = samples
                            .iter()
                            .filter(|(s, _, _)| *s == "_bucket")
                            .filter_map(|(_, le, v)| le.map(|le| (le, *v)))
                            .collect();
                        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                        let bounds: Vec<f64> = buckets
                            .iter()
                            .map(|b| b.0)
                            .filter(|b| b.is_finite())
                            .collect();
                        let mut prev = 0.0;
                        let counts: Vec<String> = buckets
                            .iter()
                            .map(|(_, c)| {
                                let n = (c - prev).max(0.0);
                                prev = *c;
                                (n as u64).to_string()
                            })
                            .collect();
                        let get = |suf: &str| {
                            samples
                                .iter()
                                .find(|(s, _, _)| *s == suf)
                                .map_or(0.0, |x| x.2)
                        };
                        json!({
                            "attributes": attrs(set),
                            "startTimeUnixNano": start, "timeUnixNano": now,
                            "count": (get("_count") as u64).to_string(),
                            "sum": get("_sum"),
                            "bucketCounts": counts, "explicitBounds": bounds,
                        })
                    })
                    .collect();
                m["histogram"] = json!({ "dataPoints": points, "aggregationTemporality": 2 });
            }
            _ => {
                let points: Vec<Value> = by_labels
                    .iter()
                    .filter_map(|(set, samples)| {
                        let v = samples.first()?.2;
                        Some(json!({
                            "attributes": attrs(set),
                            "startTimeUnixNano": start, "timeUnixNano": now,
                            "asDouble": v,
                        }))
                    })
                    .collect();
                if kind == "counter" {
                    m["sum"] = json!({ "dataPoints": points, "aggregationTemporality": 2, "isMonotonic": true });
                } else {
                    m["gauge"] = json!({ "dataPoints": points });
                }
            }
        }
        out.push(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_becomes_otlp_metrics() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{source=\"x\"} 3\n\
                    # TYPE g gauge\ng 1\n\
                    # TYPE h histogram\nh_bucket{action=\"block\",le=\"0.1\"} 2\n\
                    h_bucket{action=\"block\",le=\"1\"} 5\nh_bucket{action=\"block\",le=\"+Inf\"} 6\n\
                    h_sum{action=\"block\"} 2.5\nh_count{action=\"block\"} 6\n";
        let m = otlp_metrics(text, 0, 1);
        let by: BTreeMap<&str, &Value> =
            m.iter().map(|v| (v["name"].as_str().unwrap(), v)).collect();
        assert_eq!(by["a_total"]["sum"]["isMonotonic"], true);
        assert_eq!(by["a_total"]["sum"]["dataPoints"][0]["asDouble"], 3.0);
        assert_eq!(
            by["a_total"]["sum"]["dataPoints"][0]["attributes"][0]["value"]["stringValue"],
            "x"
        );
        assert_eq!(by["g"]["gauge"]["dataPoints"][0]["asDouble"], 1.0);
        let h = &by["h"]["histogram"]["dataPoints"][0];
        assert_eq!(h["count"], "6");
        assert_eq!(h["bucketCounts"], json!(["2", "3", "1"]));
        assert_eq!(h["explicitBounds"], json!([0.1, 1.0]));
        assert_eq!(h["attributes"].as_array().unwrap().len(), 1);
    }
}
