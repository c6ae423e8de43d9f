//! End-to-end tests of the proxy: a real upstream and real clients on 127.0.0.1.

mod support;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::Algorithm;
use std::time::Duration;
use support::*;
use tokio::net::TcpStream;
use vigil_enforce::config::JwtKeyConfig;
use vigil_enforce::{Action, Decision, ProxyConfig, Subject, SubjectKind};

fn ip_subject() -> Subject {
    Subject::new(SubjectKind::Ip, "127.0.0.1")
}

fn decision(subject: Subject, action: Action, ttl: Duration) -> Decision {
    Decision::new(subject, action, 0.9, "rule", ttl).with_reason("rule:test")
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test took too long")
}

#[tokio::test]
async fn allow_and_monitor_are_forwarded_with_trust_headers() {
    bounded(async {
        let up = Upstream::start().await;
        let mut p = start_proxy(ProxyConfig::default(), &up).await;

        // no decision: forwarded, forged trust headers and hop-by-hop headers removed
        let r = send_h1(
            p.addr,
            get(
                "/a/b?x=1",
                &[
                    ("x-vigil-identity", "forged"),
                    ("x-forwarded-for", "6.6.6.6"),
                    ("connection", "x-hop"),
                    ("x-hop", "1"),
                    ("user-agent", "test/1"),
                ],
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"ok");
        assert!(
            r.header("x-upstream-hop").is_none(),
            "response hop-by-hop stripped"
        );
        assert!(r.header("x-request-id").is_some());
        let seen = up.last();
        assert_eq!(seen.uri, "/a/b?x=1");
        assert_eq!(seen.headers["host"], "api.example");
        assert_eq!(seen.headers["x-vigil-action"], "allow");
        assert!(!seen.headers.contains_key("x-vigil-identity"));
        assert!(!seen.headers.contains_key("x-hop"));
        assert_eq!(seen.headers["x-vigil-client-ip"], "127.0.0.1");
        // the peer is not a trusted proxy: its X-Forwarded-For is replaced
        assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(
            seen.headers["forwarded"],
            "for=127.0.0.1;proto=http;host=\"api.example\""
        );
        assert_eq!(
            seen.headers["x-request-id"].to_str().unwrap(),
            r.header("x-request-id").unwrap()
        );

        // monitor: forwarded, with the decision's score and subject
        let d = decision(ip_subject(), Action::Monitor, Duration::from_secs(60));
        p.table.insert(d.clone()).unwrap();
        let r = send_h1(p.addr, get("/m", &[])).await;
        assert_eq!(r.status, StatusCode::OK);
        let seen = up.last();
        assert_eq!(seen.headers["x-vigil-action"], "monitor");
        assert_eq!(seen.headers["x-vigil-score"], "0.900");
        assert_eq!(seen.headers["x-vigil-subject"], "ip:127.0.0.1");
        assert_eq!(seen.headers["x-vigil-decision-id"], d.id.as_str());
        assert_eq!(up.hits(), 2);

        // one access event per request
        let e1 = p.events.recv().await.unwrap();
        assert_eq!(e1.status, 200);
        assert_eq!(e1.path, "/a/b");
        assert!(e1.query_present);
        assert_eq!(e1.host.as_deref(), Some("api.example"));
        assert_eq!(e1.user_agent.as_deref(), Some("test/1"));
        assert_eq!(e1.bytes_out, 2);
        assert_eq!(e1.client_ip, Some("127.0.0.1".parse().unwrap()));
        assert!(e1.completed);
        let e2 = p.events.recv().await.unwrap();
        assert_eq!(e2.action, Action::Monitor);
        assert_eq!(e2.decision_id.as_deref(), Some(d.id.as_str()));
    })
    .await;
}

#[tokio::test]
async fn block_is_403_problem_with_decision_id() {
    bounded(async {
        let up = Upstream::start().await;
        let mut p = start_proxy(ProxyConfig::default(), &up).await;
        let d = decision(ip_subject(), Action::Block, Duration::from_secs(60));
        p.table.insert(d.clone()).unwrap();
        let r = send_h1(p.addr, get("/", &[])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let j = r.json();
        assert_eq!(j["type"], "urn:vigil:problem:blocked");
        assert_eq!(j["status"], 403);
        assert_eq!(j["decision_id"], d.id.as_str());
        assert!(
            j.get("reasons").is_none(),
            "reasons are not told to the client"
        );
        assert_eq!(up.hits(), 0);
        let e = p.events.recv().await.unwrap();
        assert_eq!((e.status, e.action), (403, Action::Block));
    })
    .await;
}

#[tokio::test]
async fn throttle_is_429_with_retry_after_once_the_bucket_is_empty() {
    bounded(async {
        let up = Upstream::start().await;
        let p = start_proxy(ProxyConfig::default(), &up).await;
        let d = decision(ip_subject(), Action::Throttle, Duration::from_secs(60))
            .with_throttle_rps(2.0);
        p.table.insert(d.clone()).unwrap();
        let mut statuses = Vec::new();
        let mut last = None;
        for _ in 0..4 {
            let r = send_h1(p.addr, get("/", &[])).await;
            statuses.push(r.status.as_u16());
            last = Some(r);
        }
        assert_eq!(statuses, [200, 200, 429, 429]);
        let r = last.unwrap();
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.json()["decision_id"], d.id.as_str());
        assert_eq!(up.hits(), 2);
        // the bucket refills
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(send_h1(p.addr, get("/", &[])).await.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn throttle_without_rate_uses_the_default() {
    bounded(async {
        let up = Upstream::start().await;
        let cfg = ProxyConfig {
            throttle_default_rps: 1.0,
            ..Default::default()
        };
        let p = start_proxy(cfg, &up).await;
        p.table
            .insert(decision(
                ip_subject(),
                Action::Throttle,
                Duration::from_secs(60),
            ))
            .unwrap();
        assert_eq!(send_h1(p.addr, get("/", &[])).await.status, StatusCode::OK);
        assert_eq!(
            send_h1(p.addr, get("/", &[])).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    })
    .await;
}

#[tokio::test]
async fn step_up_challenges_apis_and_redirects_browsers() {
    bounded(async {
        let up = Upstream::start().await;
        let mut cfg = ProxyConfig::default();
        cfg.step_up.acr_values = "urn:example:mfa".into();
        cfg.step_up.redirect_url = Some("http://idp.example/authorize?client_id=x".into());
        let p = start_proxy(cfg, &up).await;
        let d = decision(ip_subject(), Action::StepUp, Duration::from_secs(60));
        p.table.insert(d.clone()).unwrap();

        let r = send_h1(p.addr, get("/orders", &[("accept", "application/json")])).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let www = r.header("www-authenticate").unwrap();
        assert!(www.starts_with(r#"Bearer error="insufficient_user_authentication""#), "{www}");
        assert!(www.contains(r#"acr_values="urn:example:mfa""#), "{www}");
        assert_eq!(r.json()["decision_id"], d.id.as_str());

        let r = send_h1(p.addr, get("/orders?id=1", &[("accept", "text/html,*/*")])).await;
        assert_eq!(r.status, StatusCode::FOUND);
        assert_eq!(
            r.header("location").unwrap(),
            "http://idp.example/authorize?client_id=x&return%5Fto=http%3A%2F%2Fapi%2Eexample%2Forders%3Fid%3D1"
        );
        assert_eq!(up.hits(), 0);
    })
    .await;
}

#[tokio::test]
async fn decisions_expire_at_their_ttl() {
    bounded(async {
        let up = Upstream::start().await;
        let p = start_proxy(ProxyConfig::default(), &up).await;
        p.table
            .insert(decision(
                ip_subject(),
                Action::Block,
                Duration::from_millis(300),
            ))
            .unwrap();
        assert_eq!(
            send_h1(p.addr, get("/", &[])).await.status,
            StatusCode::FORBIDDEN
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(send_h1(p.addr, get("/", &[])).await.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn allow_list_wins_over_block() {
    bounded(async {
        let up = Upstream::start().await;
        let cfg = ProxyConfig {
            api_key_salt: "pepper".into(),
            ..Default::default()
        };
        let p = start_proxy(cfg, &up).await;
        p.table
            .insert(decision(
                ip_subject(),
                Action::Block,
                Duration::from_secs(60),
            ))
            .unwrap();
        let key_id = vigil_enforce::subjects::api_key_id_salted("pepper", "vk_partner");
        p.table
            .insert(Decision::allow_list(
                Subject::new(SubjectKind::ApiKey, key_id.clone()),
                "manual",
                Duration::from_secs(60),
            ))
            .unwrap();
        assert_eq!(
            send_h1(p.addr, get("/", &[])).await.status,
            StatusCode::FORBIDDEN
        );
        let r = send_h1(p.addr, get("/", &[("x-api-key", "vk_partner")])).await;
        assert_eq!(r.status, StatusCode::OK);
        let seen = up.last();
        assert_eq!(seen.headers["x-vigil-action"], "allow");
        assert_eq!(seen.headers["x-vigil-api-key-id"], key_id.as_str());
        assert_eq!(
            seen.headers["x-api-key"], "vk_partner",
            "the key itself is forwarded"
        );
    })
    .await;
}

fn claims(sub: &str, exp_in: i64) -> serde_json::Value {
    serde_json::json!({"sub": sub, "sid": format!("sess-{sub}"), "iss": "http://idp.example",
        "aud": "orders", "exp": now_secs() + exp_in, "iat": now_secs()})
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn jwt_from_jwks_file_and_configured_key() {
    bounded(async {
        let up = Upstream::start().await;
        let dir = std::env::temp_dir().join(format!("vigil-enforce-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jwks_path = dir.join("jwks.json");
        std::fs::write(
            &jwks_path,
            jwks(&[(Algorithm::RS256, RSA_PRIVATE, "rsa-1")]),
        )
        .unwrap();
        let mut cfg = ProxyConfig::default();
        cfg.jwt.jwks_path = Some(jwks_path.display().to_string());
        cfg.jwt.keys = vec![JwtKeyConfig {
            kid: Some("ec-1".into()),
            algorithm: "ES256".into(),
            secret: None,
            pem_path: Some(key_path("ec_public.pem")),
        }];
        cfg.jwt.issuer = vec!["http://idp.example".into()];
        cfg.jwt.audience = vec!["orders".into()];
        cfg.jwt.cookie = Some("id_token".into());
        cfg.jwt.leeway_secs = 5;
        let p = start_proxy(cfg, &up).await;

        // valid RS256 (JWKS) and ES256 (configured key)
        let rs = sign(
            Algorithm::RS256,
            RSA_PRIVATE,
            Some("rsa-1"),
            &claims("alice", 300),
        );
        let r = send_h1(p.addr, get("/", &[("authorization", &bearer(&rs))])).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let seen = up.last();
        assert_eq!(seen.headers["x-vigil-identity"], "alice");
        assert_eq!(seen.headers["x-vigil-session"], "sess-alice");
        let es = sign(
            Algorithm::ES256,
            EC_PRIVATE,
            Some("ec-1"),
            &claims("bob", 300),
        );
        let r = send_h1(p.addr, get("/", &[("authorization", &bearer(&es))])).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(up.last().headers["x-vigil-identity"], "bob");
        // the token in a cookie
        let cookie = format!("theme=dark; id_token={es}");
        let r = send_h1(p.addr, get("/", &[("cookie", &cookie)])).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(up.last().headers["x-vigil-identity"], "bob");

        // the identity is a subject: a decision on it applies
        p.table
            .insert(decision(
                Subject::new(SubjectKind::Identity, "alice"),
                Action::Block,
                Duration::from_secs(60),
            ))
            .unwrap();
        let r = send_h1(p.addr, get("/", &[("authorization", &bearer(&rs))])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let hits = up.hits();

        // invalid tokens are 401, never anonymous
        let cases = [
            (
                "expired",
                sign(
                    Algorithm::RS256,
                    RSA_PRIVATE,
                    Some("rsa-1"),
                    &claims("carol", -60),
                ),
            ),
            (
                "wrong key",
                sign(
                    Algorithm::RS256,
                    RSA_OTHER_PRIVATE,
                    Some("rsa-1"),
                    &claims("carol", 300),
                ),
            ),
            (
                "unknown kid",
                sign(
                    Algorithm::RS256,
                    RSA_PRIVATE,
                    Some("rsa-9"),
                    &claims("carol", 300),
                ),
            ),
            ("alg none", {
                use base64::Engine;
                let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                format!(
                    "{}.{}.",
                    b.encode(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
                    b.encode(claims("carol", 300).to_string())
                )
            }),
            ("wrong audience", {
                let mut c = claims("carol", 300);
                c["aud"] = "billing".into();
                sign(Algorithm::RS256, RSA_PRIVATE, Some("rsa-1"), &c)
            }),
            ("garbage", "not.a.token".to_string()),
        ];
        for (what, token) in cases {
            let r = send_h1(p.addr, get("/", &[("authorization", &bearer(&token))])).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
            assert_eq!(
                r.json()["type"],
                "urn:vigil:problem:invalid-token",
                "{what}"
            );
            assert_eq!(
                r.header("www-authenticate"),
                Some(r#"Bearer error="invalid_token""#)
            );
        }
        // a bad token in the cookie is refused too
        let r = send_h1(p.addr, get("/", &[("cookie", "id_token=abc.def.ghi")])).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(up.hits(), hits, "nothing invalid reached the upstream");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test]
async fn jwks_url_is_fetched_and_refreshed() {
    bounded(async {
        let up = Upstream::start().await;
        *up.jwks.lock().unwrap() = jwks(&[(Algorithm::RS256, RSA_PRIVATE, "k1")]);
        let mut cfg = ProxyConfig::default();
        cfg.jwt.jwks_url = Some(format!("{}/jwks", up.url()));
        cfg.jwt.jwks_refresh_secs = 1;
        let p = start_proxy(cfg, &up).await;
        let t1 = sign(
            Algorithm::RS256,
            RSA_PRIVATE,
            Some("k1"),
            &claims("alice", 300),
        );
        let t2 = sign(
            Algorithm::RS256,
            RSA_OTHER_PRIVATE,
            Some("k2"),
            &claims("dave", 300),
        );
        assert_eq!(
            send_h1(p.addr, get("/", &[("authorization", &bearer(&t1))]))
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            send_h1(p.addr, get("/", &[("authorization", &bearer(&t2))]))
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        // the IdP rotates in k2; the next refresh picks it up
        *up.jwks.lock().unwrap() = jwks(&[
            (Algorithm::RS256, RSA_PRIVATE, "k1"),
            (Algorithm::RS256, RSA_OTHER_PRIVATE, "k2"),
        ]);
        let mut ok = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let r = send_h1(p.addr, get("/", &[("authorization", &bearer(&t2))])).await;
            if r.status == StatusCode::OK {
                ok = true;
                break;
            }
        }
        assert!(ok, "k2 accepted after the refresh");
        assert_eq!(up.last().headers["x-vigil-identity"], "dave");
    })
    .await;
}

#[tokio::test]
async fn xff_is_believed_only_from_trusted_proxies() {
    bounded(async {
        let up = Upstream::start().await;
        // the test client (127.0.0.1) is a trusted proxy
        let cfg = ProxyConfig {
            trusted_proxies: vec!["127.0.0.0/8".into()],
            ..Default::default()
        };
        let p = start_proxy(cfg, &up).await;
        p.table
            .insert(decision(
                Subject::new(SubjectKind::Ip, "203.0.113.7"),
                Action::Block,
                Duration::from_secs(60),
            ))
            .unwrap();
        let xff = [("x-forwarded-for", "6.6.6.6, 203.0.113.7")];
        assert_eq!(
            send_h1(p.addr, get("/", &xff)).await.status,
            StatusCode::FORBIDDEN
        );
        let r = send_h1(p.addr, get("/", &[("x-forwarded-for", "203.0.113.8")])).await;
        assert_eq!(r.status, StatusCode::OK);
        let seen = up.last();
        assert_eq!(seen.headers["x-vigil-client-ip"], "203.0.113.8");
        assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.8, 127.0.0.1");

        // the client is not trusted: the same header is ignored (it could be forged)
        let up2 = Upstream::start().await;
        let cfg = ProxyConfig {
            trusted_proxies: vec!["10.0.0.0/8".into()],
            ..Default::default()
        };
        let p2 = start_proxy(cfg, &up2).await;
        p2.table
            .insert(decision(
                Subject::new(SubjectKind::Ip, "203.0.113.7"),
                Action::Block,
                Duration::from_secs(60),
            ))
            .unwrap();
        let r = send_h1(p2.addr, get("/", &xff)).await;
        assert_eq!(r.status, StatusCode::OK);
        let seen = up2.last();
        assert_eq!(seen.headers["x-vigil-client-ip"], "127.0.0.1");
        assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    })
    .await;
}

#[tokio::test]
async fn http2_prior_knowledge_and_http11() {
    bounded(async {
        let up = Upstream::start().await;
        let p = start_proxy(ProxyConfig::default(), &up).await;
        let req = Request::get("http://api.example/h2?q=1")
            .header("cookie", "a=1")
            .header("cookie", "session=s-9")
            .body(empty())
            .unwrap();
        let r = send_h2(p.addr, req).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"ok");
        let seen = up.last();
        assert_eq!(seen.version, hyper::Version::HTTP_11);
        assert_eq!(seen.uri, "/h2?q=1");
        assert_eq!(seen.headers["host"], "api.example");
        assert_eq!(seen.headers["cookie"], "a=1; session=s-9");
        assert_eq!(seen.headers["x-vigil-session"], "s-9");

        p.table
            .insert(decision(
                Subject::new(SubjectKind::Session, "s-9"),
                Action::Block,
                Duration::from_secs(60),
            ))
            .unwrap();
        let req = Request::get("http://api.example/h2")
            .header("cookie", "session=s-9")
            .body(empty())
            .unwrap();
        assert_eq!(send_h2(p.addr, req).await.status, StatusCode::FORBIDDEN);
        let r = send_h1(p.addr, get("/h1", &[("cookie", "session=s-9")])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(
            send_h1(p.addr, get("/h1", &[])).await.status,
            StatusCode::OK
        );
    })
    .await;
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    bounded(async {
        let up = Upstream::start().await;
        let p = start_proxy(ProxyConfig::default(), &up).await;

        // response: the first chunk arrives while the upstream still holds the second
        let stream = TcpStream::connect(p.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let resp = sender.send_request(get("/stream", &[])).await.unwrap();
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"first");
        up.release.notify_one();
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"second");

        // request: the upstream echoes each chunk back before the request body has ended,
        // over HTTP/2 on the client side
        let stream = TcpStream::connect(p.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let (tx, req_body) = channel_body();
        let req = Request::post("http://api.example/echo")
            .body(req_body)
            .unwrap();
        let (resp, ()) = tokio::join!(sender.send_request(req), async {
            tx.send(Bytes::from_static(b"one")).await.unwrap();
        });
        let mut body = resp.unwrap().into_body();
        let echoed = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&echoed[..], b"one");
        tx.send(Bytes::from_static(b"two")).await.unwrap();
        let echoed = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&echoed[..], b"two");
        drop(tx);
        assert!(body.collect().await.unwrap().to_bytes().is_empty());
    })
    .await;
}

#[tokio::test]
async fn upstream_failures_are_502_and_504() {
    bounded(async {
        let up = Upstream::start().await;
        let cfg = ProxyConfig {
            upstream_response_timeout_ms: 200,
            ..Default::default()
        };
        let p = start_proxy(cfg, &up).await;
        let r = send_h1(p.addr, get("/slow?ms=1000", &[])).await;
        assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(r.json()["type"], "urn:vigil:problem:gateway-timeout");

        // nothing listens there
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let cfg = ProxyConfig {
            upstream: format!("http://{dead}"),
            ..Default::default()
        };
        let p2 = start_proxy_as_is(cfg).await;
        let r = send_h1(p2.addr, get("/", &[])).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert_eq!(r.json()["detail"], "the upstream service is unavailable");
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_and_refuses_new() {
    bounded(async {
        let up = Upstream::start().await;
        let cfg = ProxyConfig {
            shutdown_drain_timeout_ms: 5_000,
            ..Default::default()
        };
        let p = start_proxy(cfg, &up).await;
        assert!(p.readiness.is_ready());
        let addr = p.addr;
        let in_flight = tokio::spawn(async move { send_h1(addr, get("/slow?ms=700", &[])).await });
        // wait until the upstream has the request
        while up.hits() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        p.shutdown.cancel();
        // readiness turns false first
        let mut not_ready = false;
        for _ in 0..50 {
            if !p.readiness.is_ready() {
                not_ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(not_ready, "readiness false at shutdown");
        // new connections are refused while the in-flight request drains
        let mut refused = false;
        for _ in 0..50 {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "listener closed");
        assert!(
            !in_flight.is_finished(),
            "the slow request is still in flight"
        );
        let r = in_flight.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"slow ok");
        assert_eq!(r.header("connection"), Some("close"));
        // and the server finishes
        let mut p = p;
        tokio::time::timeout(Duration::from_secs(5), &mut p.task)
            .await
            .expect("server stopped")
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn step_up_is_satisfied_by_a_token_with_the_required_acr() {
    bounded(async {
        let up = Upstream::start().await;
        let mut cfg = ProxyConfig::default();
        cfg.jwt.keys = vec![JwtKeyConfig {
            kid: Some("ec-1".into()),
            algorithm: "ES256".into(),
            secret: None,
            pem_path: Some(key_path("ec_public.pem")),
        }];
        cfg.step_up.acr_values = "urn:example:mfa urn:example:hwk".into();
        let p = start_proxy(cfg, &up).await;
        p.table
            .insert(decision(
                Subject::new(SubjectKind::Identity, "erin"),
                Action::StepUp,
                Duration::from_secs(60),
            ))
            .unwrap();
        let mut c = claims("erin", 300);
        let weak = sign(Algorithm::ES256, EC_PRIVATE, Some("ec-1"), &c);
        let r = send_h1(p.addr, get("/", &[("authorization", &bearer(&weak))])).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains(r#"acr_values="urn:example:mfa urn:example:hwk""#)
        );
        c["acr"] = "urn:example:hwk".into();
        let strong = sign(Algorithm::ES256, EC_PRIVATE, Some("ec-1"), &c);
        let r = send_h1(p.addr, get("/", &[("authorization", &bearer(&strong))])).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(up.last().headers["x-vigil-action"], "step_up");
    })
    .await;
}

#[tokio::test]
async fn shutdown_sends_goaway_and_cuts_at_the_drain_deadline() {
    bounded(async {
        let up = Upstream::start().await;
        let cfg = ProxyConfig {
            shutdown_drain_timeout_ms: 300,
            ..Default::default()
        };
        let mut p = start_proxy(cfg, &up).await;
        // an HTTP/2 connection with one quick and one too-slow request in flight
        let stream = TcpStream::connect(p.addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        let conn_task = tokio::spawn(conn);
        let mut quick_sender = sender.clone();
        let quick = tokio::spawn(async move {
            let req = Request::get("http://api.example/slow?ms=150")
                .body(empty())
                .unwrap();
            collect(quick_sender.send_request(req).await.unwrap()).await
        });
        let mut slow_sender = sender.clone();
        let slow = tokio::spawn(async move {
            let req = Request::get("http://api.example/slow?ms=3000")
                .body(empty())
                .unwrap();
            slow_sender.send_request(req).await
        });
        while up.hits() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = std::time::Instant::now();
        p.shutdown.cancel();
        // GOAWAY: the connection accepts no new streams, the in-flight ones go on
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut late = sender.clone();
        let req = Request::get("http://api.example/late")
            .body(empty())
            .unwrap();
        assert!(
            late.send_request(req).await.is_err(),
            "no new stream after GOAWAY"
        );
        assert_eq!(quick.await.unwrap().status, StatusCode::OK);
        // the slow one is cut at the drain deadline, and the server stops
        tokio::time::timeout(Duration::from_secs(3), &mut p.task)
            .await
            .expect("server stopped at the deadline")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(slow.await.unwrap().is_err(), "the slow request was cut");
        let _ = conn_task.await;
        assert_eq!(up.hits(), 2);
    })
    .await;
}
