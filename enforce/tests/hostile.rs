//! Hostile input over raw sockets: request smuggling, oversized heads, slow clients. Every
//! attempt is counted at the upstream: nothing may reach it.

mod support;

use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vigil_enforce::ProxyConfig;

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test took too long")
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or_default()
}

#[tokio::test]
async fn smuggling_attempts_are_rejected_before_the_upstream() {
    bounded(async {
        let up = Upstream::start().await;
        let p = start_proxy(ProxyConfig::default(), &up).await;
        let wait = Duration::from_secs(3);
        let attempts: [(&str, &[u8]); 7] = [
            // CL.TE: the smuggled request hides in what the chunked reading calls the body
            (
                "content-length and transfer-encoding",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
            ),
            // TE.CL, the header order reversed
            (
                "transfer-encoding then content-length",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n0\r\n\r\n",
            ),
            (
                "duplicate identical content-length",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            ),
            (
                "duplicate differing content-length",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
            ),
            (
                "content-length list",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
            ),
            (
                "transfer-encoding not ending in chunked",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            ),
            (
                "obfuscated transfer-encoding with content-length",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\nhello",
            ),
        ];
        for (what, bytes) in attempts {
            let resp = raw(p.addr, bytes, wait).await;
            assert_eq!(status_line(&resp), "HTTP/1.1 400 Bad Request", "{what}: {resp}");
        }
        // a clean request after a clean one on the same connection still works (the guard
        // follows bodies, it does not flag the second head)
        let resp = raw(
            p.addr,
            b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            wait,
        )
        .await;
        assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), 2, "{resp}");
        let resp = raw(p.addr, b"CONNECT internal:22 HTTP/1.1\r\nHost: internal:22\r\n\r\n", wait).await;
        assert_eq!(status_line(&resp), "HTTP/1.1 400 Bad Request", "{resp}");
        // HTTP/1.0 without Host: forwarded with the upstream's name
        let resp = raw(p.addr, b"GET /old HTTP/1.0\r\n\r\n", wait).await;
        assert_eq!(status_line(&resp), "HTTP/1.0 200 OK", "{resp}");
        assert_eq!(up.last().headers["host"], up.addr.to_string().as_str());
        assert_eq!(up.hits(), 3, "only the clean requests reached the upstream");
    })
    .await;
}

#[tokio::test]
async fn oversized_heads_get_431() {
    bounded(async {
        let up = Upstream::start().await;
        let p = start_proxy(ProxyConfig::default(), &up).await;
        let wait = Duration::from_secs(3);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        let resp = raw(p.addr, big.as_bytes(), wait).await;
        assert!(status_line(&resp).starts_with("HTTP/1.1 431"), "{resp}");
        let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..150 {
            many.push_str(&format!("X-H{i}: v\r\n"));
        }
        many.push_str("\r\n");
        let resp = raw(p.addr, many.as_bytes(), wait).await;
        assert!(status_line(&resp).starts_with("HTTP/1.1 431"), "{resp}");

        // HTTP/2: too many fields is 431 from the proxy itself
        let mut req = hyper::Request::get("http://api.example/");
        for i in 0..150 {
            req = req.header(format!("x-h{i}"), "v");
        }
        let r = send_h2(p.addr, req.body(empty()).unwrap()).await;
        assert_eq!(r.status.as_u16(), 431);
        assert_eq!(up.hits(), 0);
    })
    .await;
}

#[tokio::test]
async fn slow_clients_are_cut_off_by_the_header_read_timeout() {
    bounded(async {
        let up = Upstream::start().await;
        let cfg = ProxyConfig {
            header_read_timeout_ms: 300,
            ..Default::default()
        };
        let p = start_proxy(cfg, &up).await;
        // slowloris: a partial head, then nothing
        let started = Instant::now();
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "connection closed by the server");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");

        // a client that sends nothing at all
        let started = Instant::now();
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "idle connection closed by the server");
        assert!(started.elapsed() < Duration::from_secs(3));

        // a prompt client on the same server is served
        assert_eq!(send_h1(p.addr, get("/", &[])).await.status.as_u16(), 200);
        assert_eq!(up.hits(), 1);
    })
    .await;
}
