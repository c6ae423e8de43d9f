//! The forward-auth endpoint, called the way NGINX `auth_request`, Traefik ForwardAuth and
//! Envoy ext_authz (HTTP service) call it.

mod support;

use hyper::StatusCode;
use std::time::Duration;
use support::*;
use vigil_enforce::{Action, Decision, ProxyConfig, Subject, SubjectKind};

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test took too long")
}

fn trusted() -> ProxyConfig {
    ProxyConfig {
        trusted_proxies: vec!["127.0.0.0/8".into()],
        ..Default::default()
    }
}

fn ip(s: &str) -> Subject {
    Subject::new(SubjectKind::Ip, s)
}

fn dec(s: Subject, a: Action) -> Decision {
    Decision::new(s, a, 0.8, "rule", Duration::from_secs(60))
}

#[tokio::test]
async fn nginx_auth_request() {
    bounded(async {
        let p = start_authz(trusted()).await;
        let d = dec(ip("203.0.113.9"), Action::Block);
        p.table.insert(d.clone()).unwrap();
        let nginx = |real_ip: &'static str| {
            get(
                "/v1/authz",
                &[
                    ("x-original-uri", "/orders/7?full=1"),
                    ("x-original-method", "DELETE"),
                    ("x-real-ip", real_ip),
                    ("x-forwarded-for", "6.6.6.6"),
                ],
            )
        };
        let r = send_h1(p.addr, nginx("203.0.113.9")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(r.json()["decision_id"], d.id.as_str());
        let r = send_h1(p.addr, nginx("203.0.113.10")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-vigil-client-ip"), Some("203.0.113.10"));
        assert_eq!(r.header("x-vigil-action"), Some("allow"));
        assert!(r.body.is_empty());
        // step-up through NGINX is a 401 challenge even for browsers (no redirect passes
        // auth_request)
        p.table
            .insert(dec(ip("203.0.113.11"), Action::StepUp))
            .unwrap();
        let r = send_h1(
            p.addr,
            get(
                "/v1/authz",
                &[
                    ("x-original-uri", "/"),
                    ("x-original-method", "GET"),
                    ("x-real-ip", "203.0.113.11"),
                    ("accept", "text/html"),
                ],
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("insufficient_user_authentication")
        );
    })
    .await;
}

#[tokio::test]
async fn traefik_forward_auth() {
    bounded(async {
        let p = start_authz(trusted()).await;
        let d = dec(ip("198.51.100.4"), Action::Throttle).with_throttle_rps(1.0);
        p.table.insert(d.clone()).unwrap();
        let traefik = || {
            get(
                "/v1/authz",
                &[
                    ("x-forwarded-method", "POST"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "shop.example"),
                    ("x-forwarded-uri", "/cart"),
                    ("x-forwarded-for", "9.9.9.9, 198.51.100.4"),
                ],
            )
        };
        let r = send_h1(p.addr, traefik()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-vigil-action"), Some("throttle"));
        assert_eq!(r.header("x-vigil-subject"), Some("ip:198.51.100.4"));
        let r = send_h1(p.addr, traefik()).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.json()["decision_id"], d.id.as_str());
    })
    .await;
}

#[tokio::test]
async fn envoy_ext_authz_http() {
    bounded(async {
        let mut cfg = trusted();
        cfg.step_up.redirect_url = Some("http://idp.example/login".into());
        let p = start_authz(cfg).await;
        p.table
            .insert(dec(
                Subject::new(SubjectKind::Session, "s-1"),
                Action::StepUp,
            ))
            .unwrap();
        // the original path follows the prefix; headers are forwarded
        let r = send_h1(
            p.addr,
            get(
                "/v1/authz/orders/1?x=2",
                &[("x-forwarded-for", "192.0.2.1")],
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-vigil-client-ip"), Some("192.0.2.1"));
        let api = get("/v1/authz/orders/1", &[("cookie", "session=s-1")]);
        let r = send_h1(p.addr, api).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains(r#"acr_values="mfa""#)
        );
        let browser = get(
            "/v1/authz/orders/1",
            &[("cookie", "session=s-1"), ("accept", "text/html")],
        );
        let r = send_h1(p.addr, browser).await;
        assert_eq!(r.status, StatusCode::FOUND);
        assert_eq!(
            r.header("location"),
            Some("http://idp.example/login?return%5Fto=http%3A%2F%2Fapi%2Eexample%2Forders%2F1")
        );
        // over HTTP/2 as well (Envoy may use either)
        let req = hyper::Request::get("http://api.example/v1/authz/x")
            .header("cookie", "session=s-1")
            .body(empty())
            .unwrap();
        assert_eq!(send_h2(p.addr, req).await.status, StatusCode::UNAUTHORIZED);
        // outside the prefix
        let r = send_h1(p.addr, get("/v1/authzz", &[])).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn untrusted_callers_cannot_choose_the_client_ip() {
    bounded(async {
        let p = start_authz(ProxyConfig::default()).await;
        p.table.insert(dec(ip("127.0.0.1"), Action::Block)).unwrap();
        for headers in [
            vec![("x-original-uri", "/"), ("x-real-ip", "203.0.113.1")],
            vec![("x-forwarded-uri", "/"), ("x-forwarded-for", "203.0.113.1")],
            vec![("x-forwarded-for", "203.0.113.1")],
        ] {
            let r = send_h1(p.addr, get("/v1/authz", &headers)).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
        }
        // an invalid token is 401 here too (JWT configured with an HMAC key)
        let mut cfg = ProxyConfig::default();
        cfg.jwt.algorithms = vec!["HS256".into()];
        cfg.jwt.keys = vec![vigil_enforce::config::JwtKeyConfig {
            kid: None,
            algorithm: "HS256".into(),
            secret: Some("an-hmac-secret-of-at-least-32-bytes!!".into()),
            pem_path: None,
        }];
        let p2 = start_authz(cfg).await;
        let r = send_h1(
            p2.addr,
            get("/v1/authz", &[("authorization", "Bearer x.y.z")]),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.json()["type"], "urn:vigil:problem:invalid-token");
    })
    .await;
}

/// The gateway passes the client's JA4 in `device_header`: a decision on that device refuses
/// the request whatever its address.
#[tokio::test]
async fn a_device_decision_through_the_gateways_fingerprint_header() {
    bounded(async {
        let mut cfg = trusted();
        cfg.device_header = "x-ja4".into();
        let p = start_authz(cfg).await;
        let script = "t13d1812i1_e8a523a41297_d0ce7ed58c61";
        p.table
            .insert(dec(
                Subject::new(SubjectKind::Device, script),
                Action::Block,
            ))
            .unwrap();
        let call = |ja4: &'static str, ip: &'static str| {
            get(
                "/v1/authz/login",
                &[("x-ja4", ja4), ("x-forwarded-for", ip)],
            )
        };
        let r = send_h1(p.addr, call(script, "192.0.2.1")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = send_h1(p.addr, call(script, "192.0.2.2")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let browser = "t13d1516h2_8daaf6152771_e5627efa2ab1";
        let r = send_h1(p.addr, call(browser, "192.0.2.1")).await;
        assert_eq!(r.status, StatusCode::OK);
    })
    .await;
}
