//! The proxy's Prometheus metrics: lock-free counters and one latency histogram, rendered as
//! Prometheus text (version 0.0.4).
//!
//! Labels are bounded by code, never by traffic: the action applied (five values), the
//! status class (five), the fail policy (two), the attack class (eleven) and the inline
//! detection mode (the one configured). A subject, client IP or path never becomes a
//! label (they belong in access events).
//!
//! | family | type | labels |
//! |---|---|---|
//! | `vigil_proxy_requests_total` | counter | `action`: the verdict applied to each proxied request |
//! | `vigil_proxy_responses_total` | counter | `class`: `2xx`.. `5xx` of responses sent to clients |
//! | `vigil_proxy_request_duration_seconds` | histogram | from the request head to the end of the response body |
//! | `vigil_proxy_upstream_duration_seconds` | histogram | from sending upstream to the upstream's response head |
//! | `vigil_authz_checks_total` | counter | `action`: forward-auth verdicts |
//! | `vigil_fail_policy_applied_total` | counter | `policy`: requests answered by `fail_open` / `fail_closed` while the feed was stale |
//! | `vigil_proxy_inline_detections_total` | counter | `class`, `mode`: proxied requests with strong evidence in a configured class (`[proxy.inline_detect]`); a request counts once per class found; `mode` is `block` (answered 403) or `monitor` (forwarded) |
//! | `vigil_authz_inline_detections_total` | counter | `class`, `mode`: the same for forward-auth checks |
//! | `vigil_proxy_access_events_total` | counter | access events queued for ingest |
//! | `vigil_proxy_access_events_dropped_total` | counter | access events dropped (queue full or closed) |
//! | `vigil_feed_*` | | the decision feed, see [`crate::feed::FeedStatus::render_metrics`] |

use crate::config::FailPolicy;
use crate::decision::Action;
use crate::inline_detect::{ClassSet, InlineMode};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use vigil_detect::AttackClass;

/// Anything that can append Prometheus text families to a page.
pub trait RenderMetrics: Send + Sync {
    fn render_metrics(&self, out: &mut String);
}

/// Upper bounds of the latency buckets, in seconds (`+Inf` is implied).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A fixed-bucket histogram of durations, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts; the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0u64;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cum += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {cum}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
    }
}

const ACTIONS: [Action; 5] = [
    Action::Allow,
    Action::Monitor,
    Action::StepUp,
    Action::Throttle,
    Action::Block,
];

fn action_index(a: Action) -> usize {
    match a {
        Action::Allow => 0,
        Action::Monitor => 1,
        Action::StepUp => 2,
        Action::Throttle => 3,
        Action::Block => 4,
    }
}

/// Counters of one enforcement point (proxy and forward-auth).
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    requests: [AtomicU64; 5],
    authz: [AtomicU64; 5],
    /// 1xx..5xx (index 0..4); other codes are counted as 5xx.
    responses: [AtomicU64; 5],
    fail_open: AtomicU64,
    fail_closed: AtomicU64,
    /// Inline detections by attack class (discriminant order), proxy and forward-auth.
    inline_proxy: [AtomicU64; AttackClass::ALL.len()],
    inline_authz: [AtomicU64; AttackClass::ALL.len()],
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
}

impl ProxyMetrics {
    /// A proxied request is over.
    pub fn record_request(
        &self,
        action: Action,
        status: u16,
        total: Duration,
        upstream: Option<Duration>,
    ) {
        self.requests[action_index(action)].fetch_add(1, Ordering::Relaxed);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        self.request_duration.observe(total);
        if let Some(u) = upstream {
            self.upstream_duration.observe(u);
        }
    }

    /// A forward-auth check was answered with `action`'s verdict.
    pub fn record_check(&self, action: Action) {
        self.authz[action_index(action)].fetch_add(1, Ordering::Relaxed);
    }

    /// A request was answered by a stale feed's fail policy.
    pub fn record_fail_policy(&self, policy: FailPolicy) {
        match policy {
            FailPolicy::FailOpen => self.fail_open.fetch_add(1, Ordering::Relaxed),
            FailPolicy::FailClosed => self.fail_closed.fetch_add(1, Ordering::Relaxed),
            FailPolicy::KeepLastKnown => 0,
        };
    }

    /// A proxied request carried strong evidence in `classes` (inline detection).
    pub fn record_inline_request(&self, classes: ClassSet) {
        for c in classes.iter() {
            self.inline_proxy[c as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A forward-auth check's original request carried strong evidence in `classes`.
    pub fn record_inline_check(&self, classes: ClassSet) {
        for c in classes.iter() {
            self.inline_authz[c as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Proxied requests with strong evidence of `class` (inline detection).
    pub fn inline_detections(&self, class: AttackClass) -> u64 {
        self.inline_proxy[class as usize].load(Ordering::Relaxed)
    }

    /// The inline detection families, one series per configured class with the configured
    /// mode (nothing while inline detection is off).
    pub fn render_inline(&self, out: &mut String, mode: InlineMode, classes: ClassSet) {
        if mode == InlineMode::Off {
            return;
        }
        let families = [
            (
                "vigil_proxy_inline_detections_total",
                "Proxied requests with strong attack evidence in a configured class, by class and inline detection mode.",
                &self.inline_proxy,
            ),
            (
                "vigil_authz_inline_detections_total",
                "Forward-auth checks whose original request had strong attack evidence in a configured class, by class and inline detection mode.",
                &self.inline_authz,
            ),
        ];
        let mode = mode.as_str();
        for (name, help, counts) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for c in classes.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{class=\"{c}\",mode=\"{mode}\"}} {}",
                    counts[c as usize].load(Ordering::Relaxed)
                );
            }
        }
    }

    /// Proxied requests with `action`.
    pub fn requests(&self, action: Action) -> u64 {
        self.requests[action_index(action)].load(Ordering::Relaxed)
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP vigil_proxy_requests_total Proxied requests by the action applied.\n# TYPE vigil_proxy_requests_total counter"
        );
        for a in ACTIONS {
            let _ = writeln!(
                out,
                "vigil_proxy_requests_total{{action=\"{a}\"}} {}",
                self.requests[action_index(a)].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP vigil_proxy_responses_total Responses sent by the proxy, by status class.\n# TYPE vigil_proxy_responses_total counter"
        );
        for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            let _ = writeln!(
                out,
                "vigil_proxy_responses_total{{class=\"{class}\"}} {}",
                self.responses[i].load(Ordering::Relaxed)
            );
        }
        self.request_duration.render(
            out,
            "vigil_proxy_request_duration_seconds",
            "Proxied requests, from the request head to the end of the response body.",
        );
        self.upstream_duration.render(
            out,
            "vigil_proxy_upstream_duration_seconds",
            "Upstream requests, from sending to the upstream's response head.",
        );
        let _ = writeln!(
            out,
            "# HELP vigil_authz_checks_total Forward-auth checks by the action applied.\n# TYPE vigil_authz_checks_total counter"
        );
        for a in ACTIONS {
            let _ = writeln!(
                out,
                "vigil_authz_checks_total{{action=\"{a}\"}} {}",
                self.authz[action_index(a)].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP vigil_fail_policy_applied_total Requests answered by the fail policy while the decision feed was stale.\n# TYPE vigil_fail_policy_applied_total counter\nvigil_fail_policy_applied_total{{policy=\"fail_open\"}} {}\nvigil_fail_policy_applied_total{{policy=\"fail_closed\"}} {}",
            self.fail_open.load(Ordering::Relaxed),
            self.fail_closed.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bounded_families() {
        let m = ProxyMetrics::default();
        m.record_request(Action::Block, 403, Duration::from_micros(50), None);
        m.record_request(
            Action::Allow,
            200,
            Duration::from_millis(3),
            Some(Duration::from_millis(2)),
        );
        m.record_check(Action::Throttle);
        m.record_fail_policy(FailPolicy::FailClosed);
        let mut s = String::new();
        m.render(&mut s);
        assert!(
            s.contains("vigil_proxy_requests_total{action=\"block\"} 1"),
            "{s}"
        );
        assert!(s.contains("vigil_proxy_responses_total{class=\"4xx\"} 1"));
        assert!(s.contains("vigil_proxy_request_duration_seconds_bucket{le=\"0.0001\"} 1"));
        assert!(s.contains("vigil_proxy_request_duration_seconds_bucket{le=\"0.005\"} 2"));
        assert!(s.contains("vigil_proxy_request_duration_seconds_count 2"));
        assert!(s.contains("vigil_proxy_upstream_duration_seconds_count 1"));
        assert!(s.contains("vigil_authz_checks_total{action=\"throttle\"} 1"));
        assert!(s.contains("vigil_fail_policy_applied_total{policy=\"fail_closed\"} 1"));
        assert!(
            !s.contains("inline"),
            "inline families are rendered apart: {s}"
        );
    }

    #[test]
    fn inline_detections_by_configured_class_and_mode() {
        let m = ProxyMetrics::default();
        let sqli_xss: ClassSet = [AttackClass::Sqli, AttackClass::Xss].into_iter().collect();
        m.record_inline_request(sqli_xss);
        m.record_inline_request([AttackClass::Sqli].into_iter().collect());
        m.record_inline_check([AttackClass::Xss].into_iter().collect());
        assert_eq!(m.inline_detections(AttackClass::Sqli), 2);
        let mut s = String::new();
        m.render_inline(&mut s, InlineMode::Off, sqli_xss);
        assert!(s.is_empty(), "{s}");
        m.render_inline(&mut s, InlineMode::Block, sqli_xss);
        assert!(s.contains("# TYPE vigil_proxy_inline_detections_total counter"));
        assert!(
            s.contains("vigil_proxy_inline_detections_total{class=\"sqli\",mode=\"block\"} 2"),
            "{s}"
        );
        assert!(s.contains("vigil_proxy_inline_detections_total{class=\"xss\",mode=\"block\"} 1"));
        assert!(s.contains("vigil_authz_inline_detections_total{class=\"xss\",mode=\"block\"} 1"));
        assert!(s.contains("vigil_authz_inline_detections_total{class=\"sqli\",mode=\"block\"} 0"));
        assert!(!s.contains("cmdi"), "only configured classes: {s}");
    }
}
