//! The HTTP decision feed: the engine's `GET /v1/decisions/stream` (server-sent events) served
//! on 127.0.0.1 by the router in `vigil_enforce::feed::sse`, followed by a proxy. Snapshot,
//! live changes, resume from a sequence number, resync when the gap is too old, periodic
//! resync, and the fail policies when the stream is gone.

mod support;

use hyper::StatusCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio_util::sync::CancellationToken;
use vigil_enforce::config::{FailPolicy, FailPolicyRoute, FeedType};
use vigil_enforce::feed::sse::{self, BroadcastOptions, StreamOptions};
use vigil_enforce::subjects::api_key_id_salted;
use vigil_enforce::{
    Action, Decision, DecisionBroadcast, DecisionTable, ProxyConfig, Subject, SubjectKind,
};

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test took too long")
}

/// The engine's side: the stream router on 127.0.0.1.
struct Engine {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Engine {
    async fn start(
        feed: &DecisionBroadcast,
        opts: StreamOptions,
        addr: Option<SocketAddr>,
    ) -> Engine {
        let listener =
            tokio::net::TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()))
                .await
                .unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let app = sse::router(feed.clone(), opts, shutdown.clone());
        let s = shutdown.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await;
        });
        Engine {
            addr,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    fn url(&self) -> String {
        format!("http://{}{}", self.addr, sse::STREAM_PATH)
    }
}

fn opts(resync: Option<Duration>) -> StreamOptions {
    StreamOptions {
        heartbeat_interval: Duration::from_millis(100),
        resync_interval: resync,
    }
}

fn key(raw: &str) -> Subject {
    Subject::new(SubjectKind::ApiKey, api_key_id_salted("", raw))
}

fn block(s: Subject) -> Decision {
    Decision::new(s, Action::Block, 0.9, "rule", Duration::from_secs(600))
}

fn follower(engine: &Engine, up: &Upstream) -> ProxyConfig {
    let mut cfg = ProxyConfig {
        upstream: up.url(),
        ..Default::default()
    };
    cfg.feed.kind = FeedType::Http;
    cfg.feed.url = Some(engine.url());
    cfg.feed.heartbeat_interval_ms = 100;
    cfg.feed.stale_after_ms = 600;
    cfg.feed.connect_timeout_ms = 500;
    cfg
}

fn broadcast(ring: usize) -> DecisionBroadcast {
    DecisionBroadcast::new(
        Arc::new(DecisionTable::new()),
        BroadcastOptions {
            ring_capacity: ring,
            channel_capacity: 64,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_live_changes_and_resume_from_a_sequence_number() {
    bounded(async {
        let feed = broadcast(1000);
        for i in 0..50 {
            feed.publish(block(Subject::new(
                SubjectKind::Ip,
                format!("198.51.100.{i}"),
            )))
            .unwrap();
        }
        feed.publish(block(key("k-old"))).unwrap();
        let engine = Engine::start(&feed, opts(None), None).await;
        let up = Upstream::start().await;
        let p = Point::start(follower(&engine, &up)).await;
        p.wait_warm(10).await;
        assert_eq!(p.table.len(), 51);
        let st = p.running.feed.clone().unwrap();
        assert_eq!(
            st.counts().resyncs,
            1,
            "a first connection starts with a snapshot"
        );
        assert_eq!(
            p.status("/", &[("x-api-key", "k-old")]).await,
            StatusCode::FORBIDDEN
        );

        // live: a decision and a revoke
        feed.publish(block(key("k-live"))).unwrap();
        wait_status(
            p.addr,
            "/",
            &[("x-api-key", "k-live")],
            StatusCode::FORBIDDEN,
            5,
        )
        .await;
        feed.revoke(key("k-old"));
        wait_status(p.addr, "/", &[("x-api-key", "k-old")], StatusCode::OK, 5).await;

        // the engine goes away; changes made meanwhile arrive on resume, without a snapshot
        let addr = engine.addr;
        engine.stop().await;
        feed.publish(block(key("k-gap"))).unwrap();
        feed.revoke(key("k-live"));
        let connects = st.counts().connects;
        let engine = Engine::start(&feed, opts(None), Some(addr)).await;
        wait_for(10, "the follower to reconnect", || {
            st.counts().connects > connects
        })
        .await;
        wait_status(
            p.addr,
            "/",
            &[("x-api-key", "k-gap")],
            StatusCode::FORBIDDEN,
            5,
        )
        .await;
        wait_status(p.addr, "/", &[("x-api-key", "k-live")], StatusCode::OK, 5).await;
        assert_eq!(
            st.counts().resyncs,
            1,
            "resumed from its sequence number: no snapshot"
        );
        assert!(!st.is_stale());
        engine.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_older_than_the_ring_and_the_periodic_resync_send_a_snapshot() {
    bounded(async {
        let feed = broadcast(2);
        feed.publish(block(key("k1"))).unwrap();
        feed.publish(block(key("k2"))).unwrap();
        let engine = Engine::start(&feed, opts(None), None).await;
        let up = Upstream::start().await;
        let p = Point::start(follower(&engine, &up)).await;
        p.wait_warm(10).await;
        let st = p.running.feed.clone().unwrap();
        assert_eq!(p.table.len(), 2);

        // while the engine is away: more changes than its ring holds, including a revoke
        let addr = engine.addr;
        engine.stop().await;
        feed.revoke(key("k1"));
        for i in 0..5 {
            feed.publish(block(key(&format!("n{i}")))).unwrap();
        }
        let engine = Engine::start(&feed, opts(Some(Duration::from_millis(300))), Some(addr)).await;
        wait_for(10, "a snapshot after the gap", || st.counts().resyncs >= 2).await;
        wait_status(p.addr, "/", &[("x-api-key", "k1")], StatusCode::OK, 5).await;
        assert_eq!(
            p.status("/", &[("x-api-key", "n4")]).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            p.table.len(),
            6,
            "the snapshot removed the revoked decision"
        );

        // a decision the follower holds by mistake is removed by the periodic resync
        p.table.insert(block(key("stray"))).unwrap();
        wait_for(10, "the periodic resync", || {
            p.table.get(&key("stray")).is_none()
        })
        .await;
        assert!(st.counts().resyncs >= 3);
        engine.stop().await;
    })
    .await;
}

/// Reads the raw stream until `until` appears in it (or 5 s pass); returns the text.
async fn raw_stream(addr: SocketAddr, query: &str, until: &str) -> String {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let resp = sender
        .send_request(get(&format!("{}{query}", sse::STREAM_PATH), &[]))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains(until) {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    text.push_str(&String::from_utf8_lossy(&d));
                }
            }
            _ => break,
        }
    }
    conn.abort();
    text
}

#[tokio::test]
async fn the_wire_format_resume_and_snapshot() {
    bounded(async {
        let feed = broadcast(100);
        let d1 = block(key("a"));
        feed.publish(d1.clone()).unwrap();
        feed.publish(block(key("b"))).unwrap();
        feed.revoke(key("a"));
        let engine = Engine::start(&feed, opts(None), None).await;
        let epoch = feed.epoch().to_string();

        // no `since`: hello, then a full snapshot of what is live
        let t = raw_stream(engine.addr, "", "event: snapshot_end").await;
        assert!(t.starts_with("event: hello\ndata: {\"epoch\":\""), "{t}");
        assert!(t.contains("event: reset\ndata: {\"seq\":3}"), "{t}");
        assert!(
            t.contains("event: snapshot_end\nid: 3\ndata: {\"seq\":3,\"count\":1}\n\n"),
            "{t}"
        );
        assert!(
            !t.contains(&d1.id),
            "a revoked decision is not in the snapshot: {t}"
        );

        // since=1 with the same epoch: only changes 2 and 3, no snapshot
        let t = raw_stream(
            engine.addr,
            &format!("?since=1&epoch={epoch}"),
            "event: revoke",
        )
        .await;
        assert!(!t.contains("event: reset"), "{t}");
        assert!(t.contains("event: decision") && t.contains("id: 2"), "{t}");
        assert!(t.contains("event: revoke") && t.contains("id: 3"), "{t}");
        assert!(!t.contains(&d1.id), "change 1 is not sent again: {t}");

        // another epoch (the engine restarted): a snapshot
        let t = raw_stream(engine.addr, "?since=1&epoch=other", "event: snapshot_end").await;
        assert!(t.contains("event: reset"), "{t}");
        // Last-Event-ID resumes too; then heartbeats keep the stream alive
        let t = raw_stream(engine.addr, "?since=3", "event: heartbeat").await;
        assert!(
            !t.contains("event: reset") && t.contains("event: heartbeat\ndata: {\"seq\":3}"),
            "{t}"
        );
        engine.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_feed_fail_open_fail_closed_and_keep_last_known() {
    bounded(async {
        let feed = broadcast(100);
        feed.publish(block(key("bad"))).unwrap();
        let engine = Engine::start(&feed, opts(None), None).await;
        let up = Upstream::start().await;
        let mut cfg = follower(&engine, &up);
        cfg.fail_policy = FailPolicy::FailOpen;
        cfg.fail_policy_routes = vec![
            FailPolicyRoute {
                path_prefix: "/closed".into(),
                fail_policy: FailPolicy::FailClosed,
            },
            FailPolicyRoute {
                path_prefix: "/keep".into(),
                fail_policy: FailPolicy::KeepLastKnown,
            },
        ];
        let p = Point::start(cfg).await;
        p.wait_warm(10).await;
        let bad = [("x-api-key", "bad")];
        for path in ["/open", "/closed", "/keep"] {
            assert_eq!(p.status(path, &bad).await, StatusCode::FORBIDDEN, "{path}");
        }
        let st = p.running.feed.clone().unwrap();
        engine.stop().await;
        wait_for(10, "the feed to go stale", || st.is_stale()).await;
        // fail_open: decisions are not looked up; fail_closed: 503; keep_last_known: as before
        assert_eq!(p.status("/open", &bad).await, StatusCode::OK);
        let r = send_h1(p.addr, get("/closed/x", &[])).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(p.status("/keep", &bad).await, StatusCode::FORBIDDEN);
        let m = p.metrics().await;
        assert!(m.contains("vigil_feed_stale{feed=\"http\"} 1"), "{m}");
        assert!(
            m.contains("vigil_fail_policy_applied_total{policy=\"fail_open\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("vigil_fail_policy_applied_total{policy=\"fail_closed\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("vigil_feed_seconds_since_heartbeat{feed=\"http\"}"),
            "{m}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_proxy_whose_feed_never_connects_is_stale_and_not_ready() {
    bounded(async {
        let up = Upstream::start().await;
        let mut cfg = ProxyConfig {
            upstream: up.url(),
            fail_policy: FailPolicy::FailClosed,
            ..Default::default()
        };
        cfg.feed.kind = FeedType::Http;
        // nothing listens there
        cfg.feed.url = Some(format!(
            "http://127.0.0.1:{}/v1/decisions/stream",
            support::kafka::free_port()
        ));
        let p = Point::start(cfg).await;
        assert_eq!(p.status("/", &[]).await, StatusCode::SERVICE_UNAVAILABLE);
        let r = send_h1(p.admin, get("/readyz", &[])).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(up.hits(), 0);
    })
    .await;
}
