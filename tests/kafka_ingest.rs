//! `vigil run` consuming gateway logs from a real Kafka-protocol broker: every produced line is
//! an event or a dead letter, offsets are committed after the batches are handled, and after a
//! restart the consumer group resumes where it stopped (no re-read, no gap). Dead letters go to
//! a Kafka topic. Killed with SIGKILL mid-stream, the engine re-reads what it had not committed
//! and the store keeps every event exactly once.

mod support;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::HashSet;
use std::time::Duration;
use support::{Broker, Vigil, free_port, read_ndjson, wait_until};

const TOPIC: &str = "gateway-logs";
const GROUP: &str = "vigil-e2e";
const DEAD: &str = "vigil.dead-letters";

fn nginx_line(i: usize) -> String {
    format!(
        "198.51.100.{} - user-{i} [24/Nov/2026:10:{:02}:{:02} +0000] \"GET /api/v1/orders/{i} HTTP/1.1\" 200 {} \"-\" \"okhttp/4.12.0\" 0.012 0.010",
        i % 200,
        (i / 60) % 60,
        i % 60,
        500 + i
    )
}

/// Produces lines `range` (every 10th one malformed) and waits for every delivery.
fn produce(brokers: &str, range: std::ops::Range<usize>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut pending = Vec::new();
        for i in range {
            let line = if i % 10 == 9 {
                format!("corrupted line {i}")
            } else {
                nginx_line(i)
            };
            let key = format!("k{i}");
            let fut = producer
                .send_result(FutureRecord::to(TOPIC).key(&key).payload(&line))
                .map_err(|(e, _)| e)
                .unwrap();
            pending.push(fut);
        }
        for f in pending {
            f.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    });
}

/// Every record of the dead-letter topic, read by assignment from the beginning.
fn dead_letters(brokers: &str) -> Vec<serde_json::Value> {
    support::topic_records(brokers, DEAD, 1)
        .into_iter()
        .map(|(_, _, v)| {
            serde_json::from_slice(&v.expect("a dead letter, not a tombstone")).unwrap()
        })
        .collect()
}

fn write_config(dir: &std::path::Path, brokers: &str) -> std::path::PathBuf {
    let cfg = format!(
        r#"
data_dir = "{data}"
[server]
listen = "127.0.0.1:{port}"
[pipeline]
batch_max_delay_ms = 50
[kafka]
brokers = "{brokers}"
[kafka.options]
"topic.metadata.refresh.interval.ms" = "1000"
[dead_letters]
type = "kafka"
topic = "{DEAD}"
[sources.edge]
type = "kafka"
format = "nginx"
topics = ["{TOPIC}"]
group_id = "{GROUP}"
commit_interval_ms = 200
"#,
        data = dir.join("data").display(),
        port = free_port(),
    );
    let path = dir.join("vigil.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

#[test]
fn consumes_commits_and_resumes_after_restart() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 2);
    broker.create_topic(DEAD, 1);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &broker.brokers);

    produce(&broker.brokers, 0..300);
    let events1 = dir.path().join("events1.ndjson");
    let vigil = Vigil::run(&config, &events1);
    // The group join takes ~20 s on this broker: wait for the data, not a fixed time.
    wait_until(120, "270 events consumed", || {
        read_ndjson(&events1).len() >= 270
    });
    wait_until(60, "offsets committed", || {
        support::committed_offsets(&broker.brokers, GROUP, TOPIC, 2) == Some(300)
    });
    vigil.stop();

    let first = read_ndjson(&events1);
    let dead = dead_letters(&broker.brokers);
    assert_eq!(first.len(), 270, "every well-formed line is an event");
    assert_eq!(dead.len(), 30, "every malformed line is a dead letter");
    assert!(dead.iter().all(|d| {
        d["reason"] == "malformed"
            && d["origin"]
                .as_str()
                .unwrap()
                .starts_with("kafka:gateway-logs/")
    }));

    produce(&broker.brokers, 300..400);
    let events2 = dir.path().join("events2.ndjson");
    let vigil = Vigil::run(&config, &events2);
    wait_until(120, "90 more events consumed", || {
        read_ndjson(&events2).len() >= 90
    });
    wait_until(60, "offsets committed", || {
        support::committed_offsets(&broker.brokers, GROUP, TOPIC, 2) == Some(400)
    });
    // Give a re-read (the failure this test is about) the time to show up.
    std::thread::sleep(Duration::from_secs(2));
    vigil.stop();

    let second = read_ndjson(&events2);
    assert_eq!(
        second.len(),
        90,
        "only the new lines are read after the restart"
    );
    assert_eq!(
        dead_letters(&broker.brokers).len(),
        40,
        "dead letters produced once each"
    );
    let ids: HashSet<&str> = first
        .iter()
        .chain(&second)
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 360, "no line read twice, none skipped");
    let users: HashSet<&str> = first
        .iter()
        .chain(&second)
        .map(|e| e["identity"].as_str().unwrap())
        .collect();
    for i in (0..400).filter(|i| i % 10 != 9) {
        assert!(
            users.contains(format!("user-{i}").as_str()),
            "user-{i} missing"
        );
    }
}

/// `count(*)` and `count(DISTINCT event_id)` of `events`, from the running engine's SQL API.
fn stored(port: u16) -> Option<(i64, i64)> {
    let body = br#"{"sql":"SELECT count(*) AS n, count(DISTINCT event_id) AS u FROM events"}"#;
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    drop(s);
    let (status, _, b) = support::http_request(port, "POST", "/v1/sql", &[], body);
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
    Some((v["rows"][0]["n"].as_i64()?, v["rows"][0]["u"].as_i64()?))
}

/// The engine is killed (SIGKILL) in the middle of a stream, with events stored but their
/// offsets not yet committed, and restarted: the consumer group replays from the committed
/// offsets, and the store keeps every produced event exactly once.
#[test]
fn sigkill_mid_stream_stores_every_event_exactly_once() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 2);
    broker.create_topic(DEAD, 1);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // commits every 3 s, flushes every 200 ms: a kill leaves stored, uncommitted events
    let cfg = format!(
        r#"
data_dir = "{data}"
[server]
listen = "127.0.0.1:{port}"
[pipeline]
batch_max_events = 100
batch_max_delay_ms = 50
[store]
flush_interval_ms = 200
[kafka]
brokers = "{brokers}"
[kafka.options]
"topic.metadata.refresh.interval.ms" = "1000"
[dead_letters]
type = "kafka"
topic = "{DEAD}"
[sources.edge]
type = "kafka"
format = "nginx"
topics = ["{TOPIC}"]
group_id = "vigil-crash"
commit_interval_ms = 3000
chunk_max_messages = 100
"#,
        data = dir.path().join("data").display(),
        brokers = broker.brokers,
    );
    let config = dir.path().join("vigil.toml");
    std::fs::write(&config, cfg).unwrap();

    let expected = (0..4000).filter(|i| i % 10 != 9).count() as i64;
    let mut vigil = Vigil::run(&config, &dir.path().join("events1.ndjson"));
    // a first part, until the consumer group has joined (~20 s on this broker)
    produce(&broker.brokers, 0..100);
    wait_until(120, "the first events", || {
        stored(port).is_some_and(|(n, _)| n >= 50)
    });
    // then a steady stream (200 lines/s), during which the engine is killed
    let brokers = broker.brokers.clone();
    let producer = std::thread::spawn(move || {
        for start in (100..4000).step_by(100) {
            produce(&brokers, start..start + 100);
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    // kill once more rows are in Parquet (so some are stored but not yet committed)
    wait_until(120, "a first part written to Parquet", || {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            return false;
        }
        let (_, _, m) = support::http_request(port, "GET", "/metrics", &[], b"");
        String::from_utf8_lossy(&m)
            .lines()
            .find(|l| l.starts_with("vigil_store_rows_flushed_total{table=\"events\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .is_some_and(|n| n >= 1000)
    });
    vigil.child.kill().unwrap();
    vigil.child.wait().unwrap();
    let at_kill = read_ndjson(&dir.path().join("events1.ndjson")).len();
    eprintln!("killed after {at_kill} events handled");

    producer.join().unwrap();
    let vigil = Vigil::run(&config, &dir.path().join("events2.ndjson"));
    wait_until(180, "every produced event stored", || {
        stored(port).is_some_and(|(n, _)| n >= expected)
    });
    // give a late duplicate the time to show up
    std::thread::sleep(Duration::from_secs(2));
    let (n, distinct) = stored(port).unwrap();
    let (_, _, metrics) = support::http_request(port, "GET", "/metrics", &[], b"");
    let metrics = String::from_utf8(metrics).unwrap();
    let dropped = metrics
        .lines()
        .find(|l| l.starts_with("vigil_store_duplicates_dropped_total{table=\"events\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or("?")
        .to_string();
    let replayed = read_ndjson(&dir.path().join("events2.ndjson")).len();
    eprintln!(
        "produced {expected}, stored {n}, distinct {distinct}, handled again after the restart {}, duplicates dropped {dropped}",
        (at_kill + replayed) as i64 - expected
    );
    assert_eq!(n, expected, "every produced event stored, none twice");
    assert_eq!(distinct, expected);
    assert!(
        at_kill + replayed > expected as usize,
        "the kill left uncommitted events that were read again"
    );
    vigil.stop();
}
