//! `vigil run` consuming gateway logs from a real Kafka-protocol broker: every produced line is
//! an event or a dead letter, offsets are committed after the batches are handled, and after a
//! restart the consumer group resumes where it stopped (no re-read, no gap). Dead letters go to
//! a Kafka topic.

mod support;

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
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

/// The group's committed offsets summed over the topic's partitions.
fn committed_total(brokers: &str, partitions: i32) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", GROUP)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(TOPIC, p);
    }
    match c.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(t) => t
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum(),
        Err(_) => -1,
    }
}

/// Every record of the dead-letter topic, read by assignment from the beginning.
fn dead_letters(brokers: &str) -> Vec<serde_json::Value> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "dead-letter-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(DEAD, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut idle = 0;
    while idle < 10 {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = 0;
                out.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
            }
            _ => idle += 1,
        }
    }
    out
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
        committed_total(&broker.brokers, 2) == 300
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
        committed_total(&broker.brokers, 2) == 400
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
