//! The proxy's `/metrics` on the admin listener: requests by action, latency histograms,
//! dropped access events, readiness; and no subject, IP or path in any label.

mod support;

use hyper::StatusCode;
use std::time::Duration;
use support::*;
use vigil_enforce::{Action, Decision, ProxyConfig, Subject, SubjectKind, event_channel};

#[tokio::test]
async fn metrics_count_actions_latency_and_dropped_events() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = Upstream::start().await;
        // room for two access events: the rest are dropped and counted
        let (sink, _events) = event_channel(2);
        let p = Point::start_with_events(
            ProxyConfig {
                upstream: up.url(),
                ..Default::default()
            },
            Some(sink),
        )
        .await;
        for _ in 0..3 {
            assert_eq!(p.status("/private/alice/orders", &[]).await, StatusCode::OK);
        }
        p.table
            .insert(Decision::new(
                Subject::new(SubjectKind::Ip, "127.0.0.1"),
                Action::Block,
                0.9,
                "rule",
                Duration::from_secs(60),
            ))
            .unwrap();
        assert_eq!(
            p.status("/private/alice/orders", &[]).await,
            StatusCode::FORBIDDEN
        );

        // events are queued when the response body ends: wait until all four are accounted
        let mut m = String::new();
        for _ in 0..100 {
            m = p.metrics().await;
            if m.contains("vigil_proxy_requests_total{action=\"block\"} 1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            m.contains("vigil_proxy_requests_total{action=\"allow\"} 3"),
            "{m}"
        );
        assert!(
            m.contains("vigil_proxy_requests_total{action=\"block\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("vigil_proxy_responses_total{class=\"2xx\"} 3"),
            "{m}"
        );
        assert!(
            m.contains("vigil_proxy_responses_total{class=\"4xx\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("vigil_proxy_request_duration_seconds_count 4"),
            "{m}"
        );
        assert!(
            m.contains("vigil_proxy_request_duration_seconds_bucket{le=\"+Inf\"} 4"),
            "{m}"
        );
        assert!(
            m.contains("vigil_proxy_upstream_duration_seconds_count 3"),
            "{m}"
        );
        assert!(m.contains("vigil_proxy_access_events_total 2"), "{m}");
        assert!(
            m.contains("vigil_proxy_access_events_dropped_total 2"),
            "{m}"
        );
        assert!(!m.contains("vigil_feed_"), "no feed in process: {m}");
        // nothing that identifies a client or a request
        for leak in ["127.0.0.1", "alice", "/private", "ip:"] {
            assert!(!m.contains(leak), "`{leak}` in metrics: {m}");
        }
        // every sample line is `name{labels} value` or `name value`
        for line in m.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').expect(line);
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
        let r = send_h1(p.admin, get("/healthz", &[])).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = send_h1(p.admin, get("/readyz", &[])).await;
        assert_eq!(r.status, StatusCode::OK);
        // the admin paths are not served on the proxied port: they go upstream
        p.table.revoke(&Subject::new(SubjectKind::Ip, "127.0.0.1"));
        let hits = up.hits();
        let r = send_h1(p.addr, get("/metrics", &[])).await;
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"ok"[..]));
        assert_eq!(up.hits(), hits + 1);
    })
    .await
    .expect("test took too long");
}
