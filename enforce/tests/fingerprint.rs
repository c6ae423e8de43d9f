//! JA4 over real ClientHellos captured on 127.0.0.1: Debian's curl (OpenSSL), rustls and, when
//! installed, headless chromium (BoringSSL). The listener reads the hello's records as
//! `client_hello_len` asks, fingerprints them and closes; no handshake completes.
//!
//! With `VIGIL_CAPTURE_HELLO_DIR` set, each first capture is also written there as hex (how
//! `tests/data/clienthello_*.hex` were made).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use vigil_enforce::fingerprint::{HelloLen, MAX_PEEK_LEN, client_hello_len, ja4};

const WAIT: Duration = Duration::from_secs(30);

/// Reads the first ClientHello from `stream`: its bytes and JA4.
async fn read_hello(mut stream: TcpStream) -> (Vec<u8>, String) {
    let mut buf = vec![0u8; MAX_PEEK_LEN];
    let mut have = 0;
    let len = loop {
        match client_hello_len(&buf[..have]) {
            HelloLen::Complete(n) => break n,
            HelloLen::NeedAtLeast(n) => {
                assert!(n <= buf.len());
                while have < n {
                    let got = stream.read(&mut buf[have..]).await.unwrap();
                    assert!(got > 0, "client closed after {have} bytes");
                    have += got;
                }
            }
            HelloLen::NotClientHello => panic!("not a ClientHello: {:02x?}", &buf[..have]),
        }
    };
    let hello = buf[..len].to_vec();
    let fp = ja4(&hello).expect("a complete hello has a JA4");
    (hello, fp)
}

/// Accepts one connection on `listener` and fingerprints its hello.
async fn capture(listener: &TcpListener) -> (Vec<u8>, String) {
    let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("no client connected")
        .unwrap();
    tokio::time::timeout(WAIT, read_hello(stream))
        .await
        .expect("no ClientHello")
}

fn save(name: &str, hello: &[u8]) {
    if let Ok(dir) = std::env::var("VIGIL_CAPTURE_HELLO_DIR") {
        let hex: String = hello.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(format!("{dir}/clienthello_{name}.hex"), hex + "\n").unwrap();
    }
}

async fn curl_once(listener: &TcpListener, url: &str) -> (Vec<u8>, String) {
    let mut child = tokio::process::Command::new("curl")
        .args(["-sk", "--max-time", "20", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("curl is installed");
    let got = capture(listener).await;
    let _ = child.wait().await;
    got
}

async fn rustls_once(listener: &TcpListener, port: u16) -> (Vec<u8>, String) {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(cfg));
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        // the server closes after the hello: the handshake fails, as intended
        let _ = connector.connect(name, tcp).await;
    });
    let got = capture(listener).await;
    client.await.unwrap();
    got
}

/// chromium's hello, or `None` (with a note) when it is not installed.
async fn chromium_once(listener: &TcpListener, url: &str) -> Option<(Vec<u8>, String)> {
    let bin = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    let Some(bin) = bin else {
        println!("note: no chromium on PATH; skipping the chromium capture");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--ignore-certificate-errors",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let got = capture(listener).await;
    let _ = child.kill().await;
    Some(got)
}

#[tokio::test]
async fn ja4_of_real_clients() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}/");

    let (curl_hello, curl1) = curl_once(&listener, &url).await;
    let (_, curl2) = curl_once(&listener, &url).await;
    let (rustls_hello, rustls1) = rustls_once(&listener, port).await;
    let (_, rustls2) = rustls_once(&listener, port).await;
    println!("curl     JA4 {curl1}");
    println!("rustls   JA4 {rustls1}");
    save("curl", &curl_hello);
    save("rustls", &rustls_hello);

    assert_eq!(curl1, curl2, "same client, same JA4");
    assert_eq!(rustls1, rustls2, "same client, same JA4");
    assert_ne!(curl1, rustls1, "different TLS stacks");
    // curl to an IP sends no SNI; rustls was given the name `localhost`
    assert!(curl1.starts_with("t13i"), "{curl1}");
    assert!(rustls1.starts_with("t13d"), "{rustls1}");
    assert!(rustls1[..10].ends_with("h2"), "{rustls1}");

    if let Some((hello, chromium)) = chromium_once(&listener, &url).await {
        println!("chromium JA4 {chromium}");
        save("chromium", &hello);
        assert!(chromium.starts_with("t13i"), "{chromium}");
        assert_ne!(chromium, curl1);
        assert_ne!(chromium, rustls1);
    }
}
