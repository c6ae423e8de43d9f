//! The timing half of `scripts/bench`, the whole-system benchmark: it produces to Kafka, posts
//! to the HTTP ingest API, polls the in-process proxy and reads `/metrics`, against a `vigil
//! run` and a Tansu broker that the script started on 127.0.0.1. Each subcommand prints one
//! JSON line of its figures on stdout (progress goes to stderr).
//!
//! ```text
//! bench_loop throughput --brokers B --topic T --api URL --source NAME --lines FILE
//!     M lines of FILE to topic T, one record each: from the first produce until the engine
//!     has stored (so parsed, scored and decided) all M, read from its /metrics.
//! bench_loop latency --via kafka|http --api URL --source NAME --proxy HOST:PORT --trials N
//!     per trial a fresh client IP sends two SQL injection requests (as log lines, to Kafka or
//!     to POST /v1/ingest); the proxy is polled as that IP until it answers 403.
//! bench_loop subjects --api URL --source NAME --pid PID --subjects N [--visits V]
//!     the engine's anonymous RSS before and after V lines from each of N new client IPs.
//! ```

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(about = "Producing and timing for scripts/bench")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Kafka end-to-end throughput: produce M lines, wait until the engine has stored them.
    Throughput {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        /// The engine's HTTP API, e.g. http://127.0.0.1:7070
        #[arg(long)]
        api: String,
        /// The name of the engine's Kafka source (its metric label).
        #[arg(long)]
        source: String,
        /// The lines to produce, one record each.
        #[arg(long)]
        lines: std::path::PathBuf,
        /// The decisions topic, whose records are counted after the run.
        #[arg(long, default_value = "vigil.decisions")]
        decisions_topic: String,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// Detection-to-enforcement latency over fresh client IPs.
    Latency {
        #[arg(long, value_enum)]
        via: Via,
        /// Bootstrap servers (`--via kafka`).
        #[arg(long, default_value = "")]
        brokers: String,
        /// The engine's gateway-log topic (`--via kafka`).
        #[arg(long, default_value = "")]
        topic: String,
        #[arg(long)]
        api: String,
        /// The name of the engine's source the lines go to (metric label, `source=` of ingest).
        #[arg(long)]
        source: String,
        /// The in-process proxy, HOST:PORT.
        #[arg(long)]
        proxy: String,
        #[arg(long, default_value_t = 100)]
        trials: usize,
        /// Trials run first and left out of the figures.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Client addresses are NET.x.y (a /16 of its own per run).
        #[arg(long)]
        net: String,
        /// Pause between two polls of the proxy, in microseconds.
        #[arg(long, default_value_t = 1000)]
        poll_interval_us: u64,
        /// A trial with no 403 after this long is a miss.
        #[arg(long, default_value_t = 10)]
        trial_timeout_secs: u64,
    },
    /// Memory per tracked subject: RSS growth of the engine over N new subjects.
    Subjects {
        #[arg(long)]
        api: String,
        #[arg(long)]
        source: String,
        /// The engine's process id (its /proc/PID/status is read).
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 500_000)]
        subjects: usize,
        /// Lines from each new address (1: subjects seen once, kept as their one event; 2 or
        /// more: full states).
        #[arg(long, default_value_t = 2)]
        visits: usize,
        /// Lines per POST.
        #[arg(long, default_value_t = 25_000)]
        chunk: usize,
    },
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Via {
    Kafka,
    Http,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = rt.block_on(async {
        match args.command {
            Command::Throughput {
                brokers,
                topic,
                api,
                source,
                lines,
                decisions_topic,
                timeout_secs,
            } => {
                let lines = std::fs::read(&lines)
                    .with_context(|| format!("cannot read {}", lines.display()))?;
                throughput(
                    &brokers,
                    &topic,
                    &Http::new(&api),
                    &source,
                    &lines,
                    &decisions_topic,
                    Duration::from_secs(timeout_secs),
                )
                .await
            }
            Command::Latency {
                via,
                brokers,
                topic,
                api,
                source,
                proxy,
                trials,
                warmup,
                net,
                poll_interval_us,
                trial_timeout_secs,
            } => {
                let send = match via {
                    Via::Kafka => {
                        ensure!(
                            !brokers.is_empty() && !topic.is_empty(),
                            "--via kafka needs --brokers and --topic"
                        );
                        Sender::Kafka {
                            producer: producer(&brokers, "0")?,
                            topic,
                        }
                    }
                    Via::Http => Sender::Http {
                        url: format!("{api}/v1/ingest?format=nginx&source={source}"),
                    },
                };
                let t = Trials {
                    http: Http::new(&api),
                    source,
                    send,
                    proxy,
                    net,
                    poll_interval: Duration::from_micros(poll_interval_us),
                    timeout: Duration::from_secs(trial_timeout_secs),
                };
                t.run(warmup, trials).await
            }
            Command::Subjects {
                api,
                source,
                pid,
                subjects,
                visits,
                chunk,
            } => memory_per_subject(&Http::new(&api), &source, pid, subjects, visits, chunk).await,
        }
    })?;
    println!("{out}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTP: the engine's API and the proxy

#[derive(Clone)]
struct Http {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    fn new(base: &str) -> Http {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Http {
            base: base.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        let resp = self.client.request(req).await?;
        let status = resp.status();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Bytes)> {
        let req = Request::get(format!("{}{path}", self.base)).body(Full::default())?;
        self.send(req).await
    }

    async fn metrics(&self) -> Result<Metrics> {
        let (status, body) = self.get("/metrics").await?;
        ensure!(status == StatusCode::OK, "GET /metrics answered {status}");
        Ok(Metrics(String::from_utf8_lossy(&body).into_owned()))
    }
}

/// Prometheus text from the engine's `/metrics`.
struct Metrics(String);

impl Metrics {
    /// Sum of the samples of `name` whose labels contain `label` (e.g. `source="edge"`; empty:
    /// every sample).
    fn sum(&self, name: &str, label: &str) -> f64 {
        self.0
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let (labels, value) = match rest.strip_prefix('{') {
                    Some(r) => r.split_once("} ")?,
                    None => ("", rest.strip_prefix(' ')?),
                };
                labels
                    .contains(label)
                    .then(|| value.trim().parse::<f64>().ok())?
            })
            .sum()
    }

    fn lines(&self, source: &str) -> u64 {
        self.sum("vigil_ingest_lines_total", &format!("source=\"{source}\"")) as u64
    }

    fn events(&self, source: &str) -> u64 {
        self.sum("vigil_ingest_events_total", &format!("source=\"{source}\"")) as u64
    }

    fn dead_letters(&self, source: &str) -> u64 {
        self.sum(
            "vigil_ingest_dead_letters_total",
            &format!("source=\"{source}\""),
        ) as u64
    }

    /// Events the consumer has scored and handed to the store (in memory or in Parquet).
    fn stored_events(&self) -> u64 {
        let t = "table=\"events\"";
        (self.sum("vigil_store_hot_rows", t) + self.sum("vigil_store_rows_flushed_total", t)) as u64
    }

    fn decisions(&self) -> u64 {
        self.sum("vigil_decisions_total", "") as u64
    }
}

/// Polls `/metrics` until `done` holds, for at most `timeout`.
async fn wait_metrics(
    http: &Http,
    what: &str,
    timeout: Duration,
    every: Duration,
    done: impl Fn(&Metrics) -> bool,
) -> Result<(Metrics, Instant)> {
    let start = Instant::now();
    loop {
        let m = http.metrics().await?;
        if done(&m) {
            return Ok((m, Instant::now()));
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Kafka

/// Counts the producer's deliveries and failures.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

type KafkaProducer = ThreadedProducer<Deliveries>;

fn producer(brokers: &str, linger_ms: &str) -> Result<Arc<KafkaProducer>> {
    let p = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", linger_ms)
        .set("message.timeout.ms", "60000")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Deliveries::default())
        .context("cannot create the Kafka producer")?;
    Ok(Arc::new(p))
}

/// Queues one record, waiting while the producer's queue is full.
fn produce(p: &KafkaProducer, topic: &str, key: &[u8], payload: &[u8]) -> Result<()> {
    loop {
        match p.send(BaseRecord::to(topic).key(key).payload(payload)) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("cannot produce to {topic}: {e}"),
        }
    }
}

/// Records in `topic` (every partition, read by assignment from the beginning until idle).
/// Counted, not computed from watermarks, which this broker does not report reliably.
fn count_records(brokers: &str, topic: &str) -> Result<u64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "vigil-bench-counter")
        .set("enable.auto.commit", "false")
        .create()?;
    let meta = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    if tpl.count() == 0 {
        return Ok(0);
    }
    c.assign(&tpl)?;
    let (mut n, mut idle) = (0, 0);
    while idle < 15 {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = 0;
                n += u64::from(m.payload().is_some());
            }
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None => idle += 1,
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Log lines

/// `[dd/Mon/yyyy:HH:MM:SS +0000]` of the current time, NGINX's `$time_local` in UTC.
fn nginx_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil date from days since 1970-01-01 (H. Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Requests with SQL injection per trial: the built-in `exploit_attempts` rule blocks an IP
/// past 1.5 recent strong-evidence requests (a decayed count: two lines a second apart make
/// 1.998). A third line keeps the trial about the pipeline's speed, not the threshold.
const ATTACK_LINES: usize = 3;

/// A request from `ip` carrying SQL injection in its query: strong evidence (`sqli`).
fn sqli_line(ip: &str, time: &str, n: usize) -> String {
    format!(
        "{ip} - - [{time}] \"GET /api/v1/products?id={n}%27%20UNION%20SELECT%20username,password%20FROM%20users--%20- HTTP/1.1\" 200 512 \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" 0.004 0.003"
    )
}

/// An ordinary API request from `ip`.
fn clean_line(ip: &str, time: &str, n: usize) -> String {
    format!(
        "{ip} - - [{time}] \"GET /api/v1/items/{n} HTTP/1.1\" 200 734 \"-\" \"okhttp/4.12.0\" 0.011 0.009"
    )
}

// ---------------------------------------------------------------------------------------------
// Kafka end-to-end throughput

async fn throughput(
    brokers: &str,
    topic: &str,
    http: &Http,
    source: &str,
    file: &[u8],
    decisions_topic: &str,
    timeout: Duration,
) -> Result<String> {
    let lines: Vec<&[u8]> = file
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let m = lines.len() as u64;
    ensure!(m > 0, "no lines to produce");
    let p = producer(brokers, "5")?;

    // The consumer group's first assignment takes tens of seconds on this broker: one line
    // first, and the clock starts only once the engine has read it. It is the file's first
    // line: a line with a later time would move the engine's event-time watermark past the
    // file's, and the scorer would ignore every line after it as late.
    let joined = Instant::now();
    produce(&p, topic, b"warmup", lines[0])?;
    let (base, _) = wait_metrics(
        http,
        "the engine to read the warm-up line (consumer group join)",
        Duration::from_secs(180),
        Duration::from_millis(100),
        |m| m.lines(source) >= 1 && m.stored_events() >= 1,
    )
    .await?;
    let join_secs = joined.elapsed().as_secs_f64();
    eprintln!("bench_loop: kafka source assigned after {join_secs:.1} s; producing {m} lines");
    let decisions_before = count_records(brokers, decisions_topic)?;

    let owned: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
    let start = Instant::now();
    let producing = {
        let p = p.clone();
        let topic = topic.to_string();
        std::thread::spawn(move || -> Result<f64> {
            for (i, line) in owned.iter().enumerate() {
                produce(&p, &topic, format!("k{i}").as_bytes(), line)?;
            }
            p.flush(Duration::from_secs(120))?;
            Ok(start.elapsed().as_secs_f64())
        })
    };
    let (lines0, events0) = (base.lines(source), base.events(source));
    let (stored0, decisions0, dead0) = (
        base.stored_events(),
        base.decisions(),
        base.dead_letters(source),
    );
    let (_, read_at) = wait_metrics(
        http,
        "every line read",
        timeout,
        Duration::from_millis(20),
        |x| x.lines(source) >= lines0 + m,
    )
    .await?;
    let (end, stored_at) = wait_metrics(
        http,
        "every event scored and stored",
        timeout,
        Duration::from_millis(20),
        |x| {
            x.lines(source) >= lines0 + m
                && x.stored_events() >= stored0 + x.events(source) - events0
        },
    )
    .await?;
    let produce_secs = producing
        .join()
        .map_err(|_| anyhow::anyhow!("the producing thread panicked"))??;
    let read_secs = (read_at - start).as_secs_f64();
    let e2e_secs = (stored_at - start).as_secs_f64();
    let events = end.events(source) - events0;
    let decisions = end.decisions() - decisions0;
    let published = count_records(brokers, decisions_topic)? - decisions_before;
    let ctx = p.context();
    Ok(json!({
        "lines": m,
        "events": events,
        "dead_letters": end.dead_letters(source) - dead0,
        "delivery_failures": ctx.failed.load(Ordering::Relaxed),
        "join_secs": round(join_secs, 1),
        "produce_secs": round(produce_secs, 3),
        "produce_lines_per_s": (m as f64 / produce_secs).round(),
        "read_secs": round(read_secs, 3),
        "e2e_secs": round(e2e_secs, 3),
        "e2e_events_per_s": (events as f64 / e2e_secs).round(),
        "decisions_issued": decisions,
        "decisions_published": published,
    })
    .to_string())
}

// ---------------------------------------------------------------------------------------------
// Detection-to-enforcement latency

enum Sender {
    Kafka {
        producer: Arc<KafkaProducer>,
        topic: String,
    },
    Http {
        url: String,
    },
}

struct Trials {
    http: Http,
    source: String,
    send: Sender,
    proxy: String,
    net: String,
    poll_interval: Duration,
    timeout: Duration,
}

/// What one trial saw.
struct Trial {
    latency: Option<Duration>,
    polls: u64,
    /// Answers other than 200 and 403 (throttled, challenged, errors).
    other: u64,
}

impl Trials {
    async fn run(&self, warmup: usize, trials: usize) -> Result<String> {
        let joined = Instant::now();
        self.wait_source_reads().await?;
        let join_secs = joined.elapsed().as_secs_f64();
        let proxy = Http::new(&format!("http://{}", self.proxy));
        let mut lat = Vec::with_capacity(trials);
        let (mut misses, mut polls, mut other) = (0, 0, 0);
        for i in 0..warmup + trials {
            let ip = format!("{}.{}.{}", self.net, i / 250 + 1, i % 250 + 1);
            let t = self.trial(&proxy, &ip, i).await?;
            if i < warmup {
                continue;
            }
            polls += t.polls;
            other += t.other;
            match t.latency {
                Some(d) => lat.push(d.as_secs_f64() * 1e3),
                None => misses += 1,
            }
            // a short gap, so that a trial does not start inside the previous one's batch
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ensure!(
            !lat.is_empty(),
            "no trial was enforced within {:?}",
            self.timeout
        );
        lat.sort_by(f64::total_cmp);
        let mean = lat.iter().sum::<f64>() / lat.len() as f64;
        Ok(json!({
            "via": match self.send { Sender::Kafka { .. } => "kafka", Sender::Http { .. } => "http" },
            "trials": trials,
            "enforced": lat.len(),
            "misses": misses,
            "join_secs": round(join_secs, 1),
            "poll_interval_ms": self.poll_interval.as_secs_f64() * 1e3,
            "polls": polls,
            "other_answers": other,
            "min_ms": round(lat[0], 2),
            "p50_ms": round(percentile(&lat, 50.0), 2),
            "p90_ms": round(percentile(&lat, 90.0), 2),
            "p99_ms": round(percentile(&lat, 99.0), 2),
            "max_ms": round(lat[lat.len() - 1], 2),
            "mean_ms": round(mean, 2),
        })
        .to_string())
    }

    /// Sends one clean line and waits until the engine has read it: for Kafka, the consumer
    /// group has its assignment.
    async fn wait_source_reads(&self) -> Result<()> {
        let before = self.http.metrics().await?.lines(&self.source);
        let line = clean_line(&format!("{}.255.254", self.net), &nginx_now(), 0);
        self.send_lines(line).await?;
        wait_metrics(
            &self.http,
            "the engine to read the warm-up line",
            Duration::from_secs(180),
            Duration::from_millis(100),
            |m| m.lines(&self.source) > before,
        )
        .await?;
        Ok(())
    }

    /// Hands `lines` to the engine without waiting for it (the HTTP ingest answers only once
    /// the lines are stored, seconds later; the decision comes before).
    async fn send_lines(&self, lines: String) -> Result<()> {
        match &self.send {
            Sender::Kafka { producer, topic } => {
                for (i, line) in lines.lines().enumerate() {
                    produce(producer, topic, format!("l{i}").as_bytes(), line.as_bytes())?;
                }
            }
            Sender::Http { url } => {
                let req = Request::post(url)
                    .header("content-type", "text/plain")
                    .body(Full::new(Bytes::from(lines)))?;
                let http = self.http.clone();
                tokio::spawn(async move {
                    match http.send(req).await {
                        Ok((s, _)) if s.is_success() => {}
                        Ok((s, body)) => eprintln!(
                            "bench_loop: ingest answered {s}: {}",
                            String::from_utf8_lossy(&body)
                        ),
                        Err(e) => eprintln!("bench_loop: ingest failed: {e}"),
                    }
                });
            }
        }
        Ok(())
    }

    async fn trial(&self, proxy: &Http, ip: &str, n: usize) -> Result<Trial> {
        let mut t = Trial {
            latency: None,
            polls: 0,
            other: 0,
        };
        // the proxy lets this address through before the lines exist
        let (status, _) = self.poll(proxy, ip).await?;
        ensure!(
            status == StatusCode::OK,
            "the proxy answered {status} for the fresh address {ip} before any line"
        );
        let time = nginx_now();
        let lines: String = (0..ATTACK_LINES)
            .map(|k| sqli_line(ip, &time, n * ATTACK_LINES + k) + "\n")
            .collect();
        let start = Instant::now();
        self.send_lines(lines).await?;
        while start.elapsed() < self.timeout {
            let (status, _) = self.poll(proxy, ip).await?;
            t.polls += 1;
            if status == StatusCode::FORBIDDEN {
                t.latency = Some(start.elapsed());
                break;
            }
            if status != StatusCode::OK {
                t.other += 1;
            }
            tokio::time::sleep(self.poll_interval).await;
        }
        Ok(t)
    }

    async fn poll(&self, proxy: &Http, ip: &str) -> Result<(StatusCode, Bytes)> {
        let req = Request::get(format!("{}/bench", proxy.base))
            .header("x-forwarded-for", ip)
            .body(Full::default())?;
        proxy.send(req).await
    }
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

// ---------------------------------------------------------------------------------------------
// Memory per tracked subject

/// `RssAnon` and `VmRSS` of process `pid`, in bytes.
fn rss(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .context("malformed status line")?
            .parse()?;
        Ok(kb * 1024)
    };
    Ok((field("RssAnon:")?, field("VmRSS:")?))
}

/// Posts `n` clean lines, the i-th from `ip(i)`, in chunks, each answered (scored) before the
/// next.
async fn push(
    http: &Http,
    source: &str,
    n: usize,
    chunk: usize,
    ip: impl Fn(usize) -> String,
) -> Result<()> {
    let url = format!("{}/v1/ingest?format=nginx&source={source}", http.base);
    let mut i = 0;
    while i < n {
        let time = nginx_now();
        let end = (i + chunk).min(n);
        let mut body = String::with_capacity((end - i) * 120);
        for j in i..end {
            body.push_str(&clean_line(&ip(j), &time, j % 5000));
            body.push('\n');
        }
        let req = Request::post(&url)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(body)))?;
        let (status, answer) = http.send(req).await?;
        ensure!(
            status.is_success(),
            "ingest answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        i = end;
    }
    Ok(())
}

async fn tracked(http: &Http, ip: &str) -> Result<bool> {
    let (status, body) = http.get(&format!("/v1/subjects/ip/{ip}")).await?;
    if status == StatusCode::NOT_FOUND {
        return Ok(false);
    }
    ensure!(
        status == StatusCode::OK,
        "GET /v1/subjects/ip/{ip}: {status}"
    );
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v["tracked"] == true)
}

async fn memory_per_subject(
    http: &Http,
    source: &str,
    pid: u32,
    n: usize,
    visits: usize,
    chunk: usize,
) -> Result<String> {
    ensure!(n > 0 && n < 1 << 22, "--subjects must be within 1..4194304");
    ensure!((1..=16).contains(&visits), "--visits must be within 1..16");
    let lines = n * visits;
    // The same number of lines first, from 1,000 addresses: the batches, buffers and
    // allocator arenas of that many lines are in place before the baseline is taken.
    let old = |i: usize| format!("10.0.{}.{}", i % 1000 / 250, i % 250 + 1);
    let new = |i: usize| format!("10.{}.{}.{}", 64 + i / 62_500, i / 250 % 250, i % 250 + 1);
    push(http, source, lines, chunk, old).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (anon0, rss0) = rss(pid)?;
    let events0 = http.metrics().await?.events(source);
    // every new address once, then every one again, ...
    push(http, source, lines, chunk, |i| new(i % n)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (anon1, rss1) = rss(pid)?;
    let events = http.metrics().await?.events(source) - events0;
    ensure!(events == lines as u64, "{events} events of {lines} lines");
    for ip in [new(0), new(n / 2), new(n - 1)] {
        ensure!(tracked(http, &ip).await?, "{ip} is not tracked");
    }
    Ok(json!({
        "subjects": n,
        "visits": visits,
        "rss_anon_before": anon0,
        "rss_anon_after": anon1,
        "rss_before": rss0,
        "rss_after": rss1,
        "bytes_per_subject": ((anon1 as f64 - anon0 as f64) / n as f64).round(),
        "rss_bytes_per_subject": ((rss1 as f64 - rss0 as f64) / n as f64).round(),
    })
    .to_string())
}
