//! The Kafka decision feed against a real Kafka-protocol broker (Tansu on 127.0.0.1): a
//! decision published on `vigil.decisions` is enforced by a proxy that subscribes to the
//! topic, a tombstone revokes it, a proxy started later is warm with the topic's contents,
//! and a silent broker makes the feed stale (the fail policy applies).

mod support;

use hyper::StatusCode;
use std::time::Duration;
use support::kafka::{Broker, produce};
use support::*;
use vigil_enforce::config::{FailPolicy, FeedType};
use vigil_enforce::subjects::api_key_id_salted;
use vigil_enforce::{Action, Decision, ProxyConfig, Subject, SubjectKind};

const TOPIC: &str = "vigil.decisions";

async fn bounded<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test took too long")
}

fn key_subject(raw: &str) -> Subject {
    Subject::new(SubjectKind::ApiKey, api_key_id_salted("", raw))
}

fn kafka_cfg(broker: &Broker, upstream: &Upstream) -> ProxyConfig {
    let mut cfg = ProxyConfig {
        upstream: upstream.url(),
        ..Default::default()
    };
    cfg.feed.kind = FeedType::Kafka;
    cfg.feed.brokers = Some(broker.brokers.clone());
    cfg.feed.heartbeat_interval_ms = 200;
    cfg.feed.connect_timeout_ms = 1000;
    cfg
}

async fn publish(p: &rdkafka::producer::FutureProducer, d: &Decision) {
    produce(p, TOPIC, &d.subject.key(), Some(&d.to_json())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_on_the_topic_are_enforced_revoked_and_replayed() {
    bounded(60, async {
        let broker = Broker::start();
        broker.create_topic(TOPIC, 3);
        let producer = broker.producer();
        let up = Upstream::start().await;
        let bad = key_subject("key-bad");
        let later = key_subject("key-later");
        let block = |s: &Subject| {
            Decision::new(
                s.clone(),
                Action::Block,
                0.97,
                "rule",
                Duration::from_secs(600),
            )
            .with_reason("rule:credential_stuffing")
        };
        // on the topic before any proxy starts, with noise a reader must survive
        publish(&producer, &block(&bad)).await;
        produce(&producer, TOPIC, "identity:noise", Some("not json")).await;
        produce(&producer, TOPIC, "not-a-key", Some("{}")).await;
        for i in 0..20 {
            let d = block(&Subject::new(SubjectKind::Ip, format!("198.51.100.{i}")));
            publish(&producer, &d).await;
        }

        let a = Point::start(kafka_cfg(&broker, &up)).await;
        a.wait_warm(20).await;
        assert_eq!(a.table.len(), 21, "read from the beginning");
        assert_eq!(
            a.status("/", &[("x-api-key", "key-bad")]).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            a.status("/", &[("x-api-key", "key-later")]).await,
            StatusCode::OK
        );
        let counts = a.running.feed.as_ref().unwrap().counts();
        assert_eq!(counts.invalid, 2, "{counts:?}");

        // live: a new decision is enforced, a tombstone revokes
        publish(&producer, &block(&later)).await;
        wait_status(
            a.addr,
            "/",
            &[("x-api-key", "key-later")],
            StatusCode::FORBIDDEN,
            10,
        )
        .await;
        produce(&producer, TOPIC, &bad.key(), None).await;
        wait_status(a.addr, "/", &[("x-api-key", "key-bad")], StatusCode::OK, 10).await;

        // a proxy started now is warm with the topic as it stands (the tombstone applied)
        let b = Point::start(kafka_cfg(&broker, &up)).await;
        b.wait_warm(20).await;
        assert_eq!(
            b.status("/", &[("x-api-key", "key-later")]).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            b.status("/", &[("x-api-key", "key-bad")]).await,
            StatusCode::OK
        );
        assert!(b.table.get(&bad).is_none());

        // feed health is exported
        let m = b.metrics().await;
        assert!(m.contains("vigil_feed_warm{feed=\"kafka\"} 1"), "{m}");
        assert!(m.contains("vigil_feed_stale{feed=\"kafka\"} 0"), "{m}");
        assert!(
            m.contains("vigil_feed_records_total{feed=\"kafka\",result=\"revoked\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("vigil_proxy_requests_total{action=\"block\"} 1"),
            "{m}"
        );
        let r = send_h1(b.admin, get("/readyz", &[])).await;
        assert_eq!(r.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_makes_the_feed_stale_and_the_fail_policy_applies() {
    bounded(60, async {
        let mut broker = Broker::start();
        broker.create_topic(TOPIC, 1);
        let producer = broker.producer();
        let up = Upstream::start().await;
        let d = Decision::new(
            key_subject("k1"),
            Action::Block,
            0.9,
            "rule",
            Duration::from_secs(600),
        );
        publish(&producer, &d).await;
        let mut cfg = kafka_cfg(&broker, &up);
        cfg.feed.stale_after_ms = 1000;
        cfg.fail_policy = FailPolicy::KeepLastKnown;
        cfg.fail_policy_routes = vec![vigil_enforce::config::FailPolicyRoute {
            path_prefix: "/pay".into(),
            fail_policy: FailPolicy::FailClosed,
        }];
        let p = Point::start(cfg).await;
        p.wait_warm(20).await;
        assert_eq!(p.status("/pay/1", &[]).await, StatusCode::OK);
        drop(producer);
        broker.stop();
        let feed = p.running.feed.clone().unwrap();
        wait_for(15, "the feed to go stale", || feed.is_stale()).await;
        // /pay fails closed; elsewhere the last-known decisions still apply
        let r = send_h1(p.addr, get("/pay/1", &[])).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.json()["type"], "urn:vigil:problem:decisions-unavailable");
        assert_eq!(r.header("retry-after"), Some("5"));
        assert_eq!(
            p.status("/other", &[("x-api-key", "k1")]).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(p.status("/other", &[]).await, StatusCode::OK);
        let m = p.metrics().await;
        assert!(m.contains("vigil_feed_stale{feed=\"kafka\"} 1"), "{m}");
        assert!(
            m.contains("vigil_fail_policy_applied_total{policy=\"fail_closed\"} 1"),
            "{m}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_bad_feed_config_fails_at_start() {
    let mut cfg = ProxyConfig::default();
    cfg.feed.kind = FeedType::Kafka;
    let settings = cfg.build().unwrap();
    let e = vigil_enforce::KafkaFeed::new(&settings.feed, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("proxy.feed.brokers"), "{e}");
    // the engine's [kafka] brokers are used when the feed names none
    let kafka = [("bootstrap.servers".to_string(), "127.0.0.1:1".to_string())];
    assert!(vigil_enforce::KafkaFeed::new(&settings.feed, &kafka).is_ok());
    cfg.feed
        .options
        .insert("no.such.setting".into(), "1".into());
    let settings = cfg.build().unwrap();
    let e = vigil_enforce::KafkaFeed::new(&settings.feed, &kafka)
        .unwrap_err()
        .to_string();
    assert!(e.contains("proxy.feed.options"), "{e}");
}
