//! TLS on the proxy listener: a self-signed certificate made at test time (rcgen), HTTP/2 and
//! HTTP/1.1 clients over TLS choosing by ALPN, decisions applied as over cleartext.

mod support;

use hyper::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::Algorithm;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use vigil_enforce::{Action, Decision, ProxyConfig, Subject, SubjectKind};

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test took too long")
}

fn connector(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut cfg = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(cfg))
}

async fn tls_stream(
    addr: SocketAddr,
    c: &TlsConnector,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    c.connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

#[tokio::test]
async fn h2_and_http1_over_tls_with_alpn() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = self_signed(dir.path());
        let up = Upstream::start().await;
        let p = start_proxy(
            ProxyConfig {
                tls_cert_path: Some(cert),
                tls_key_path: Some(key),
                ..Default::default()
            },
            &up,
        )
        .await;

        // HTTP/2 chosen by ALPN
        let s = tls_stream(p.addr, &connector(&ca, &[b"h2", b"http/1.1"])).await;
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut h2, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("https://localhost/tls?x=1")
            .body(empty())
            .unwrap();
        let r = collect(h2.send_request(req).await.unwrap()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"ok");
        let seen = up.last();
        assert_eq!(seen.uri, "/tls?x=1");
        assert_eq!(seen.headers["host"], "localhost");
        assert!(
            seen.headers["forwarded"]
                .to_str()
                .unwrap()
                .contains("proto=https"),
            "{:?}",
            seen.headers["forwarded"]
        );
        // a block applies over TLS too, on the same connection
        p.table
            .insert(Decision::new(
                Subject::new(SubjectKind::Ip, "127.0.0.1"),
                Action::Block,
                0.9,
                "rule",
                Duration::from_secs(60),
            ))
            .unwrap();
        let req = hyper::Request::get("https://localhost/")
            .body(empty())
            .unwrap();
        let r = collect(h2.send_request(req).await.unwrap()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        p.table.revoke(&Subject::new(SubjectKind::Ip, "127.0.0.1"));

        // HTTP/1.1 chosen by ALPN
        let s = tls_stream(p.addr, &connector(&ca, &[b"http/1.1"])).await;
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        let r = collect(h1.send_request(get("/one", &[])).await.unwrap()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(up.last().version, hyper::Version::HTTP_11);

        // a cleartext client gets nothing useful from a TLS listener, and no upstream request
        let hits = up.hits();
        let text = raw(
            p.addr,
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
            Duration::from_millis(500),
        )
        .await;
        assert!(!text.starts_with("HTTP/1.1 200"), "{text}");
        assert_eq!(up.hits(), hits);
    })
    .await;
}

#[tokio::test]
async fn a_certificate_that_does_not_load_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _key, _) = self_signed(dir.path());
    let bad_key = dir.path().join("bad.pem");
    std::fs::write(&bad_key, "not a key").unwrap();
    let e = ProxyConfig {
        tls_cert_path: Some(cert.clone()),
        tls_key_path: Some(bad_key.display().to_string()),
        ..Default::default()
    }
    .build()
    .unwrap_err()
    .to_string();
    assert!(e.contains("proxy.tls_key_path"), "{e}");
    // the certificate file given as the key: no private key in it
    let e = ProxyConfig {
        tls_cert_path: Some(cert.clone()),
        tls_key_path: Some(cert),
        ..Default::default()
    }
    .build()
    .unwrap_err()
    .to_string();
    assert!(e.contains("proxy.tls_key_path"), "{e}");
}

/// TLS as a client: an `https` upstream and an `https` JWKS URL, both behind a TLS listener
/// whose certificate only a configured private CA vouches for.
#[tokio::test]
async fn https_upstream_and_jwks_with_a_private_ca() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = self_signed(dir.path());
        let up = Upstream::start().await;
        *up.jwks.lock().unwrap() = jwks(&[(Algorithm::RS256, RSA_PRIVATE, "k1")]);
        // the TLS front: a vigil listener with the self-signed certificate before `up`
        let front = start_proxy(
            ProxyConfig {
                tls_cert_path: Some(cert.clone()),
                tls_key_path: Some(key),
                ..Default::default()
            },
            &up,
        )
        .await;
        let https = format!("https://localhost:{}", front.addr.port());

        let mut cfg = ProxyConfig {
            upstream: https.clone(),
            upstream_ca_path: Some(cert.clone()),
            ..Default::default()
        };
        cfg.jwt.jwks_url = Some(format!("{https}/jwks"));
        cfg.jwt.jwks_ca_path = Some(cert.clone());
        let p = start_proxy_as_is(cfg).await;
        let token = sign(
            Algorithm::RS256,
            RSA_PRIVATE,
            Some("k1"),
            &serde_json::json!({"sub": "alice", "exp": now_secs() + 300}),
        );
        let r = send_h1(
            p.addr,
            get(
                "/through-tls",
                &[("authorization", &format!("Bearer {token}"))],
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(up.last().uri, "/through-tls");
        // the keys really came over TLS: a token from another key is refused
        let forged = sign(
            Algorithm::RS256,
            RSA_OTHER_PRIVATE,
            Some("k1"),
            &serde_json::json!({"sub": "mallory", "exp": now_secs() + 300}),
        );
        let r = send_h1(
            p.addr,
            get("/", &[("authorization", &format!("Bearer {forged}"))]),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        // without the CA the upstream's certificate is refused: 502, nothing forwarded
        let hits = up.hits();
        let untrusting = start_proxy_as_is(ProxyConfig {
            upstream: https.clone(),
            ..Default::default()
        })
        .await;
        let r = send_h1(untrusting.addr, get("/", &[])).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert_eq!(up.hits(), hits);

        // and a JWKS URL whose certificate does not verify stops the start, saying why
        let mut cfg = ProxyConfig::default();
        cfg.jwt.jwks_url = Some(format!("{https}/jwks"));
        let settings = cfg.build().expect("valid config");
        let err = vigil_enforce::jwt::JwtVerifier::new(settings.jwt.unwrap())
            .await
            .expect_err("an unverifiable JWKS server");
        assert!(err.to_string().to_lowercase().contains("jwks"), "{err}");
    })
    .await;
}
