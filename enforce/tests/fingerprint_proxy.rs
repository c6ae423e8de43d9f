//! Client fingerprints in the proxy's access events, end to end on 127.0.0.1: JA4H of each
//! request over cleartext and TLS, JA4 of each TLS connection's ClientHello (rustls and
//! Debian's curl), and `fingerprints = false` turning both off.

mod support;

use hyper::StatusCode;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Version};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use vigil_enforce::fingerprint::ja4h;
use vigil_enforce::{AccessEvent, ProxyConfig};

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test took too long")
}

/// The next access event of `p`.
async fn next_event(p: &mut Running) -> AccessEvent {
    tokio::time::timeout(Duration::from_secs(5), p.events.recv())
        .await
        .expect("an access event in time")
        .expect("the event queue is open")
}

/// A raw HTTP/1.1 request head from `(name, value)` lines, with the header map the proxy's
/// parser makes of it.
fn head(path: &str, lines: &[(&str, &str)]) -> (Vec<u8>, HeaderMap) {
    let mut raw = format!("GET {path} HTTP/1.1\r\n");
    let mut map = HeaderMap::new();
    for (n, v) in lines {
        raw.push_str(&format!("{n}: {v}\r\n"));
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    raw.push_str("\r\n");
    (raw.into_bytes(), map)
}

#[tokio::test]
async fn ja4h_of_each_request_over_cleartext() {
    bounded(async {
        let up = Upstream::start().await;
        let mut p = start_proxy(ProxyConfig::default(), &up).await;

        let browser = [
            ("Host", "api.example"),
            ("User-Agent", "Mozilla/5.0"),
            ("Accept", "text/html"),
            ("Accept-Language", "da, en-gb;q=0.8"),
            ("Referer", "https://api.example/"),
            ("Cookie", "b=2; a=1"),
            ("Connection", "close"),
        ];
        let script = [
            ("Host", "api.example"),
            ("Accept", "*/*"),
            ("User-Agent", "python-requests/2.32"),
            ("Connection", "close"),
        ];
        let mut seen = Vec::new();
        for lines in [&browser[..], &script[..]] {
            let (raw_head, map) = head("/fp", lines);
            let text = raw(p.addr, &raw_head, Duration::from_secs(5)).await;
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            let e = next_event(&mut p).await;
            let want = ja4h(&Method::GET, Version::HTTP_11, &map);
            assert_eq!(e.http_fingerprint.as_deref(), Some(want.as_str()));
            assert_eq!(e.tls_fingerprint, None, "cleartext has no JA4");
            seen.push(want);
        }
        assert!(seen[0].starts_with("ge11cr05da00_"), "{}", seen[0]);
        assert!(seen[1].starts_with("ge11nn040000_"), "{}", seen[1]);
        assert_ne!(seen[0], seen[1], "different header sets, different JA4H");

        // a refused request is fingerprinted too (its event says what it got)
        let (raw_head, map) = head("/", &[("Host", "api.example"), ("Connection", "close")]);
        p.table
            .insert(vigil_enforce::Decision::new(
                vigil_enforce::Subject::new(vigil_enforce::SubjectKind::Ip, "127.0.0.1"),
                vigil_enforce::Action::Block,
                0.9,
                "rule",
                Duration::from_secs(60),
            ))
            .unwrap();
        let text = raw(p.addr, &raw_head, Duration::from_secs(5)).await;
        assert!(text.starts_with("HTTP/1.1 403"), "{text}");
        let e = next_event(&mut p).await;
        assert!(!e.forwarded);
        assert_eq!(
            e.http_fingerprint,
            Some(ja4h(&Method::GET, Version::HTTP_11, &map))
        );
        p.table.revoke(&vigil_enforce::Subject::new(
            vigil_enforce::SubjectKind::Ip,
            "127.0.0.1",
        ));

        // HTTP/2 (h2c): version `20` in the fingerprint
        let r = send_h2(p.addr, get("/h2", &[("user-agent", "h2-client")])).await;
        assert_eq!(r.status, StatusCode::OK);
        let e = next_event(&mut p).await;
        let f = e.http_fingerprint.expect("a JA4H over h2c");
        assert!(f.starts_with("ge20nn"), "{f}");
    })
    .await;
}

#[tokio::test]
async fn fingerprints_off_computes_none() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = self_signed(dir.path());
        let up = Upstream::start().await;
        let mut p = start_proxy(
            ProxyConfig {
                fingerprints: false,
                ..Default::default()
            },
            &up,
        )
        .await;
        let r = send_h1(p.addr, get("/off", &[("user-agent", "x")])).await;
        assert_eq!(r.status, StatusCode::OK);
        let e = next_event(&mut p).await;
        assert_eq!((e.tls_fingerprint, e.http_fingerprint), (None, None));

        let mut p = start_proxy(
            ProxyConfig {
                fingerprints: false,
                tls_cert_path: Some(cert),
                tls_key_path: Some(key),
                ..Default::default()
            },
            &up,
        )
        .await;
        assert_eq!(
            tls_get(p.addr, &connector(&ca), "/off").await,
            StatusCode::OK
        );
        let e = next_event(&mut p).await;
        assert_eq!((e.tls_fingerprint, e.http_fingerprint), (None, None));
    })
    .await;
}

/// A rustls client trusting `ca`, offering HTTP/1.1 only; `resume`: it resumes sessions
/// (TLS 1.3 tickets), so its later hellos carry a `pre_shared_key` extension.
fn connector_with(ca: &CertificateDer<'static>, resume: bool) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    TlsConnector::from(Arc::new(cfg))
}

/// A rustls client trusting `ca`, offering HTTP/1.1 only, every handshake a full one.
fn connector(ca: &CertificateDer<'static>) -> TlsConnector {
    connector_with(ca, false)
}

/// One TLS connection from `c` carrying two HTTP/1.1 requests for `path`; the second status.
async fn tls_get(addr: SocketAddr, c: &TlsConnector, path: &str) -> StatusCode {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let s = c
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let first = collect(h1.send_request(get(path, &[])).await.unwrap()).await;
    assert_eq!(first.status, StatusCode::OK);
    collect(h1.send_request(get(path, &[])).await.unwrap())
        .await
        .status
}

#[tokio::test]
async fn ja4_of_each_tls_connection() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = self_signed(dir.path());
        let up = Upstream::start().await;
        let mut p = start_proxy(
            ProxyConfig {
                tls_cert_path: Some(cert),
                tls_key_path: Some(key),
                ..Default::default()
            },
            &up,
        )
        .await;

        // two connections from the same rustls client, two requests on each
        let c = connector(&ca);
        let mut rustls_ja4 = Vec::new();
        for _ in 0..2 {
            assert_eq!(tls_get(p.addr, &c, "/tls").await, StatusCode::OK);
            for _ in 0..2 {
                let e = next_event(&mut p).await;
                let h = e.http_fingerprint.expect("a JA4H over TLS");
                assert!(h.starts_with("ge11nn01"), "{h}");
                rustls_ja4.push(e.tls_fingerprint.expect("a JA4 of the rustls hello"));
            }
        }
        let first = &rustls_ja4[0];
        assert!(rustls_ja4.iter().all(|f| f == first), "{rustls_ja4:?}");
        // TLS 1.3, SNI `localhost`, ALPN http/1.1
        assert!(
            first.starts_with("t13d") && first[..10].ends_with("h1"),
            "{first}"
        );

        // a client that resumes: its first hello offers resumption, its second resumes
        // (`pre_shared_key`, hashed into `c`); version, counts, ALPN and ciphers (`a`, `b`)
        // stay, and each connection's requests carry its own hello's JA4
        let resuming = connector_with(&ca, true);
        let mut resumed = Vec::new();
        for _ in 0..2 {
            assert_eq!(tls_get(p.addr, &resuming, "/tls").await, StatusCode::OK);
            for _ in 0..2 {
                resumed.push(next_event(&mut p).await.tls_fingerprint.expect("a JA4"));
            }
        }
        println!("rustls JA4: full {first}, resumable {resumed:?}");
        assert_eq!(resumed[0], resumed[1]);
        assert_eq!(resumed[2], resumed[3]);
        assert_eq!(resumed[0][..23], resumed[2][..23], "{resumed:?}");

        // Debian's curl (OpenSSL) to the IP: another stack, no SNI
        let out = tokio::process::Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(format!("https://127.0.0.1:{}/curl", p.addr.port()))
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("curl is installed");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        let e = next_event(&mut p).await;
        let curl = e.tls_fingerprint.expect("a JA4 of curl's hello");
        assert!(curl.starts_with("t13i"), "{curl}");
        assert_ne!(&curl, first, "different TLS stacks, different JA4");
        let h = e.http_fingerprint.expect("a JA4H of curl's request");
        assert!(h.starts_with("ge"), "{h}");
    })
    .await;
}

/// What fingerprints cost, as the proxy computes them: JA4H per request (from a `HeaderMap`),
/// JA4 per TLS connection (chromium's captured 1.9 KB hello).
/// `cargo test -p vigil-enforce --release --test fingerprint_proxy fingerprint_cost --
/// --ignored --nocapture` prints nanoseconds per call.
#[test]
#[ignore = "a measurement; run in release"]
fn fingerprint_cost() {
    let browser = [
        ("host", "shop.example"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0",
        ),
        ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        ("accept-language", "en-US,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://shop.example/cart"),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "navigate"),
        ("upgrade-insecure-requests", "1"),
        (
            "cookie",
            "session=8f2c1e9a; _ga=GA1.2.3; theme=dark; cart=42; consent=yes",
        ),
    ];
    let api = [
        ("host", "api.example"),
        ("user-agent", "okhttp/4.12"),
        ("accept", "application/json"),
        ("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"),
    ];
    for (name, lines) in [
        ("browser, 10 headers, 5 cookies", &browser[..]),
        ("api, 4 headers", &api[..]),
    ] {
        let (_, map) = head("/", lines);
        let n = 200_000u32;
        for _ in 0..n / 10 {
            std::hint::black_box(ja4h(
                &Method::GET,
                Version::HTTP_11,
                std::hint::black_box(&map),
            ));
        }
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(ja4h(
                &Method::GET,
                Version::HTTP_11,
                std::hint::black_box(&map),
            ));
        }
        let per = t.elapsed() / n;
        println!("ja4h, {name}: {} ns per request", per.as_nanos());
    }
    let hex = include_str!("data/clienthello_chromium.hex").trim();
    let hello: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let n = 50_000u32;
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(vigil_enforce::fingerprint::ja4(std::hint::black_box(
            &hello,
        )));
    }
    println!(
        "ja4, chromium hello ({} bytes): {} ns per connection",
        hello.len(),
        (t.elapsed() / n).as_nanos()
    );
}

/// A decision on a device (the client software, as ingest names it in `events.device`)
/// refuses that client, and only that client, whatever its address or account.
#[tokio::test]
async fn a_device_decision_refuses_that_client_software() {
    bounded(async {
        let up = Upstream::start().await;
        let mut p = start_proxy(ProxyConfig::default(), &up).await;
        let script = [
            ("Host", "api.example"),
            ("Accept", "*/*"),
            ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
            ("Connection", "close"),
        ];
        let browser = [
            ("Host", "api.example"),
            ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
            ("Accept", "text/html"),
            ("Accept-Language", "en-US,en;q=0.9"),
            ("Accept-Encoding", "gzip, br"),
            ("Connection", "close"),
        ];
        let (script_head, map) = head("/login", &script);
        let device = vigil_enforce::fingerprint::device_id(
            None,
            Some(&ja4h(&Method::GET, Version::HTTP_11, &map)),
        )
        .expect("a device from the JA4H");
        assert!(device.starts_with("h_"), "{device}");
        p.table
            .insert(vigil_enforce::Decision::new(
                vigil_enforce::Subject::new(vigil_enforce::SubjectKind::Device, device.clone()),
                vigil_enforce::Action::Block,
                0.95,
                "rule",
                Duration::from_secs(60),
            ))
            .unwrap();
        let text = raw(p.addr, &script_head, Duration::from_secs(5)).await;
        assert!(text.starts_with("HTTP/1.1 403"), "{text}");
        assert!(!next_event(&mut p).await.forwarded);
        let (browser_head, _) = head("/login", &browser);
        let text = raw(p.addr, &browser_head, Duration::from_secs(5)).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(next_event(&mut p).await.forwarded);
    })
    .await;
}
