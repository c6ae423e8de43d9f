//! Inline blocking on request content (`[proxy.inline_detect]`): a real proxy and a real
//! upstream on 127.0.0.1, and the forward-auth endpoint called the way gateways call it.

mod support;

use hyper::StatusCode;
use std::time::Duration;
use support::*;
use vigil_enforce::config::InlineDetectConfig;
use vigil_enforce::{AccessEvent, Action, InlineMode, ProxyConfig, event_channel};

/// The issue's example: a UNION-based SQL injection in a query parameter.
const SQLI: &str = "/products?id=1%20UNION%20SELECT%20password%20FROM%20users--";
/// Reflected XSS in a query parameter.
const XSS: &str = "/p?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E";
/// Requests that look a little like attacks and are not: SQL words in a search, an
/// apostrophe in a name, JSON in a query parameter (encoded, and with the quotes and braces a
/// browser leaves alone).
const LOOKALIKES: [&str; 5] = [
    "/search?q=select+a+plan",
    "/users?name=O%27Brien",
    "/orders?filter=%7B%22status%22%3A%22open%22%2C%22ids%22%3A%5B1%2C2%5D%7D",
    "/orders?filter={%22status%22:%22shipped%22,%22page%22:2}",
    "/docs/union-select-guide?lang=en&drop=false",
];

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test took too long")
}

fn inline(mode: InlineMode, classes: Option<&[&str]>) -> ProxyConfig {
    let mut d = InlineDetectConfig {
        mode,
        ..Default::default()
    };
    if let Some(c) = classes {
        d.classes = c.iter().map(|s| s.to_string()).collect();
    }
    ProxyConfig {
        inline_detect: d,
        ..Default::default()
    }
}

async fn next_event(events: &mut tokio::sync::mpsc::Receiver<AccessEvent>) -> AccessEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an access event within 5 s")
        .expect("the event queue is open")
}

#[tokio::test]
async fn off_forwards_an_injection_to_the_upstream() {
    bounded(async {
        let up = Upstream::start().await;
        let mut p = start_proxy(ProxyConfig::default(), &up).await;
        let r = send_h1(p.addr, get(SQLI, &[])).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(up.hits(), 1);
        assert_eq!(up.last().uri, SQLI);
        assert_eq!(up.last().headers["x-vigil-action"], "allow");
        let e = next_event(&mut p.events).await;
        assert_eq!(e.action, Action::Allow);
        assert_eq!(e.enforced(), "allow");
        assert!(e.forwarded);
    })
    .await;
}

#[tokio::test]
async fn block_refuses_the_injection_before_the_upstream_and_passes_lookalikes() {
    bounded(async {
        let up = Upstream::start().await;
        let mut p = start_proxy(inline(InlineMode::Block, None), &up).await;

        let r = send_h1(p.addr, get(SQLI, &[])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let j = r.json();
        assert_eq!(j["type"], "urn:vigil:problem:blocked");
        assert_eq!(j["status"], 403);
        let detail = j["detail"].as_str().unwrap();
        assert!(detail.contains("sqli"), "{detail}");
        assert!(
            j.get("decision_id").is_none(),
            "no decision was involved: {j}"
        );
        assert_eq!(up.hits(), 0, "the upstream never saw it");
        let e = next_event(&mut p.events).await;
        assert_eq!(e.action, Action::Block);
        assert_eq!(e.enforced(), "block");
        assert_eq!(e.status, 403);
        assert!(!e.forwarded);
        assert_eq!(e.decision_id, None);
        assert_eq!(e.path, "/products");
        assert_eq!(j["request_id"], e.request_id.as_str());

        // over HTTP/2 as well, and XSS and path traversal with the default classes
        let r = send_h2(p.addr, get(SQLI, &[])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = send_h1(p.addr, get(XSS, &[])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.json()["detail"].as_str().unwrap().contains("xss"));
        let r = send_h1(p.addr, get("/static/..%2f..%2f..%2fetc%2fshadow", &[])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        // a header is inspected too
        let r = send_h1(
            p.addr,
            get("/", &[("referer", "https://x.example/?q=' OR 1=1 -- ")]),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(up.hits(), 0);
        for _ in 0..4 {
            assert_eq!(next_event(&mut p.events).await.enforced(), "block");
        }

        for (i, path) in LOOKALIKES.iter().enumerate() {
            let r = send_h1(
                p.addr,
                get(path, &[("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")]),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            assert_eq!(up.hits(), i + 1);
            assert_eq!(up.last().uri, *path);
            assert_eq!(up.last().headers["x-vigil-action"], "allow");
            let e = next_event(&mut p.events).await;
            assert_eq!(e.enforced(), "allow", "{path}");
        }
    })
    .await;
}

#[tokio::test]
async fn monitor_forwards_and_records_what_it_would_have_blocked() {
    bounded(async {
        let up = Upstream::start().await;
        let (sink, mut events) = event_channel(64);
        let mut cfg = inline(InlineMode::Monitor, None);
        cfg.upstream = up.url();
        let p = Point::start_with_events(cfg, Some(sink)).await;

        let r = send_h1(p.addr, get(SQLI, &[])).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"ok");
        assert_eq!(up.hits(), 1);
        assert_eq!(up.last().uri, SQLI);
        assert_eq!(up.last().headers["x-vigil-action"], "monitor");
        let e = next_event(&mut events).await;
        assert_eq!(e.action, Action::Monitor);
        assert_eq!(e.enforced(), "monitor");
        assert!(e.forwarded);
        assert_eq!(e.status, 200);
        assert_eq!(e.decision_id, None);

        // a look-alike is plain allow
        assert_eq!(p.status(LOOKALIKES[1], &[]).await, StatusCode::OK);
        assert_eq!(next_event(&mut events).await.enforced(), "allow");

        let m = p.metrics().await;
        assert!(
            m.contains("vigil_proxy_inline_detections_total{class=\"sqli\",mode=\"monitor\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("vigil_proxy_inline_detections_total{class=\"xss\",mode=\"monitor\"} 0"),
            "{m}"
        );
        assert!(
            m.contains("vigil_proxy_requests_total{action=\"monitor\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("vigil_proxy_requests_total{action=\"allow\"} 1"),
            "{m}"
        );
        assert!(!m.contains("mode=\"block\""), "{m}");
    })
    .await;
}

#[tokio::test]
async fn a_class_not_configured_is_not_blocked() {
    bounded(async {
        let up = Upstream::start().await;
        let mut p = start_proxy(inline(InlineMode::Block, Some(&["xss"])), &up).await;
        let r = send_h1(p.addr, get(SQLI, &[])).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(up.hits(), 1);
        assert_eq!(next_event(&mut p.events).await.enforced(), "allow");
        let r = send_h1(p.addr, get(XSS, &[])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(up.hits(), 1);
        assert_eq!(next_event(&mut p.events).await.enforced(), "block");
        // a scanner's user agent is strong `scanner_ua` evidence, not a default class
        let r = send_h1(p.addr, get("/", &[("user-agent", "sqlmap/1.7.2#stable")])).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(up.hits(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_decision_block_keeps_its_decision_id_and_is_not_inspected() {
    bounded(async {
        let up = Upstream::start().await;
        let mut p = start_proxy(inline(InlineMode::Block, None), &up).await;
        let d = vigil_enforce::Decision::new(
            vigil_enforce::Subject::new(vigil_enforce::SubjectKind::Ip, "127.0.0.1"),
            Action::Block,
            0.9,
            "rule",
            Duration::from_secs(60),
        );
        p.table.insert(d.clone()).unwrap();
        let r = send_h1(p.addr, get(SQLI, &[])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.json()["decision_id"], d.id.as_str());
        assert_eq!(r.json()["detail"], "access denied by policy");
        let e = next_event(&mut p.events).await;
        assert_eq!(e.decision_id.as_deref(), Some(d.id.as_str()));
    })
    .await;
}

#[tokio::test]
async fn forward_auth_applies_the_same_check() {
    bounded(async {
        let mut cfg = inline(InlineMode::Block, None);
        cfg.trusted_proxies = vec!["127.0.0.0/8".into()];
        let p = start_authz(cfg).await;
        let nginx = |uri: &'static str| {
            get(
                "/v1/authz",
                &[
                    ("x-original-uri", uri),
                    ("x-original-method", "GET"),
                    ("x-real-ip", "203.0.113.5"),
                ],
            )
        };
        let r = send_h1(p.addr, nginx(SQLI)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.json()["type"], "urn:vigil:problem:blocked");
        assert!(r.json()["detail"].as_str().unwrap().contains("sqli"));
        let r = send_h1(p.addr, nginx("/search?q=select+a+plan")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-vigil-action"), Some("allow"));
        // Traefik
        let r = send_h1(
            p.addr,
            get(
                "/v1/authz",
                &[("x-forwarded-uri", XSS), ("x-forwarded-method", "GET")],
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        // Envoy: the original path follows the prefix
        let envoy = format!("/v1/authz{SQLI}");
        let r = send_h1(p.addr, get(&envoy, &[])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = send_h1(p.addr, get("/v1/authz/users?name=O%27Brien", &[])).await;
        assert_eq!(r.status, StatusCode::OK);

        // monitor: 200, and the action the gateway passes on says monitor
        let mut cfg = inline(InlineMode::Monitor, None);
        cfg.trusted_proxies = vec!["127.0.0.0/8".into()];
        let p = start_authz(cfg).await;
        let r = send_h1(p.addr, nginx(SQLI)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-vigil-action"), Some("monitor"));
        let r = send_h1(p.addr, nginx("/users?name=O%27Brien")).await;
        assert_eq!(r.header("x-vigil-action"), Some("allow"));
    })
    .await;
}

#[test]
fn config_errors_name_the_key_and_the_value() {
    let e = inline(InlineMode::Block, Some(&["sqli", "sql_injection"]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("proxy.inline_detect.classes[1]"), "{e}");
    assert!(e.contains("`sql_injection`"), "{e}");
    // checked while off too
    let e = inline(InlineMode::Off, Some(&["xss", "nope"]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("proxy.inline_detect.classes[1]"), "{e}");
    let e = inline(InlineMode::Monitor, Some(&[]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("proxy.inline_detect.classes"), "{e}");
    let e = serde_json::from_str::<ProxyConfig>(r#"{"inline_detect":{"mode":"deny"}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`deny`"), "{e}");
}
