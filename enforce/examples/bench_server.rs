//! The two servers `scripts/bench-proxy` runs (release build):
//!
//! - `bench_server upstream LISTEN`: a minimal HTTP/1.1 upstream answering `200 ok`;
//! - `bench_server proxy LISTEN UPSTREAM_URL DECISIONS`: the vigil enforcement point, started
//!   as `vigil run` / `vigil proxy` start it (`vigil_enforce::service`), with `DECISIONS`
//!   block decisions loaded into its table (none of them for the benchmark client, so every
//!   request is looked up and forwarded).
//!
//! Both print `ready` on stdout once listening, and run until killed. Worker threads: the
//! `VIGIL_BENCH_THREADS` environment variable (default: the number of cores); the proxy's
//! `worker_threads` (single-threaded event loops): `VIGIL_BENCH_PROXY_LOOPS` (default 0).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use vigil_enforce::{
    Action, Decision, DecisionTable, ProxyConfig, Subject, SubjectKind, UnixMicros,
};

fn usage() -> ! {
    eprintln!(
        "usage: bench_server upstream LISTEN | bench_server proxy LISTEN UPSTREAM_URL DECISIONS"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = std::env::var("VIGIL_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        rt.worker_threads(n);
    }
    let rt = rt.build().expect("runtime");
    match args.first().map(String::as_str) {
        Some("upstream") if args.len() == 2 => rt.block_on(upstream(&args[1])),
        Some("proxy") if args.len() == 4 => {
            let n: u32 = args[3].parse().unwrap_or_else(|_| usage());
            rt.block_on(proxy(&args[1], &args[2], n))
        }
        _ => usage(),
    }
}

async fn upstream(listen: &str) {
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            a = listener.accept() => {
                let Ok((stream, _)) = a else { continue };
                let _ = stream.set_nodelay(true);
                let svc = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

async fn proxy(listen: &str, upstream: &str, n: u32) {
    let started = Instant::now();
    let table = Arc::new(DecisionTable::with_capacity(n as usize));
    let now = UnixMicros::now();
    for i in 0..n {
        // 10.0.0.0/8 and up: never the benchmark's client (127.0.0.1)
        let ip = std::net::Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i));
        let d = Decision::new(
            Subject::new(SubjectKind::Ip, ip.to_string()),
            Action::Block,
            0.9,
            "rule",
            Duration::from_secs(24 * 3600),
        )
        .with_reason("rule:bench");
        let _ = table.insert_at(d, now);
    }
    eprintln!(
        "bench_server: {} decisions loaded in {:?}",
        table.len(),
        started.elapsed()
    );
    let fingerprints =
        std::env::var("VIGIL_BENCH_FINGERPRINTS").map_or(true, |v| v != "false" && v != "0");
    eprintln!(
        "bench_server: fingerprints {}",
        if fingerprints { "on" } else { "off" }
    );
    let cfg = ProxyConfig {
        listen: listen.to_string(),
        upstream: upstream.to_string(),
        worker_threads: std::env::var("VIGIL_BENCH_PROXY_LOOPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        fingerprints,
        ..Default::default()
    };
    let settings = cfg.build().expect("valid proxy config");
    let shutdown = CancellationToken::new();
    let mut running = vigil_enforce::service::start(settings, table, &[], None, shutdown.clone())
        .await
        .expect("proxy starts");
    println!("ready");
    let _ = std::io::stdout().flush();
    while running.tasks.join_next().await.is_some() {}
}
