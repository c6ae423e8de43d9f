//! An enforcement point started as the binary starts it (`vigil_enforce::service`): several
//! single-threaded event loops share the port, and shutdown ends every task and thread.

mod support;

use hyper::StatusCode;
use std::time::Duration;
use support::*;
use vigil_enforce::ProxyConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_loops_share_the_port_and_all_stop_on_shutdown() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = Upstream::start().await;
        let mut p = Point::start(ProxyConfig {
            upstream: up.url(),
            worker_threads: 3,
            shutdown_drain_timeout_ms: 1000,
            ..Default::default()
        })
        .await;
        // many connections: the kernel spreads them over the loops; all are served
        let mut reqs = tokio::task::JoinSet::new();
        for i in 0..30 {
            let addr = p.addr;
            reqs.spawn(async move { send_h1(addr, get(&format!("/n/{i}"), &[])).await.status });
        }
        while let Some(s) = reqs.join_next().await {
            assert_eq!(s.unwrap(), StatusCode::OK);
        }
        assert_eq!(up.hits(), 30);
        assert!(p.running.readiness.is_ready());
        p.shutdown.cancel();
        let tasks = &mut p.running.tasks;
        tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .expect("every task and event loop ends after shutdown");
        assert!(!p.running.readiness.is_ready());
        assert!(
            tokio::net::TcpStream::connect(p.addr).await.is_err(),
            "listeners closed"
        );
    })
    .await
    .expect("test took too long");
}
