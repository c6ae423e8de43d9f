//! The scale-out roles (DESIGN.md, "Scale-out"): Kafka is the distributed engine.
//!
//! - `parse` ([`EventPublisher`]): the sources and the parse stage as in one process, then every
//!   event goes to `scale.events_topic` once for each of its subjects, keyed `kind:id` (an event
//!   without any subject once, keyed `event:<event_id>`). A subject's events therefore land in
//!   one partition, whichever gateway logged them. A source's batch is acknowledged (its Kafka
//!   offsets committed) only once the broker has every record of it.
//! - `score` ([`score`]): a consumer group on that topic. Each instance owns whole partitions,
//!   so the whole state of each subject; a record updates only the subject it is keyed by
//!   (`Scorer::score_partitioned`). Decisions go to the decisions topic as in one process. The
//!   event is stored once, by the owner of its first subject in the order ip, identity,
//!   session, api_key, device ([`stored_copy`]). Offsets are committed once the events they
//!   cover are in Parquet and their decisions published.
//!
//! Taking over a partition (another instance died or the group grew): before deciding on its
//! subjects, the instance reads back the decisions already published (the whole compacted
//! decisions topic) into its policy, so it neither repeats nor weakens them, and reads again the
//! partition's records of the last `rebuild_secs` before the group's committed offset, which
//! rebuild the subjects' features (no rule, model or policy runs on them; nothing is published
//! or stored).

use crate::config::Config;
use crate::decisions::DecisionSink;
use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use vigil_enforce::{Decision, Subject};
use vigil_ingest::ParseErrorKind;
use vigil_ingest::dead_letter::{DeadLetter, DeadLetterSink};
use vigil_ingest::event::col;
use vigil_ingest::store::Store;
use vigil_scoring::Scorer;
use vigil_scoring::features::KINDS;

/// The subject columns in the order that picks the stored copy of an event, with the kind's
/// position in [`KINDS`].
const SUBJECT_COLUMNS: [(&str, u8); 5] = [
    (col::CLIENT_IP, 2),
    (col::IDENTITY, 0),
    (col::SESSION, 1),
    (col::API_KEY_ID, 3),
    (col::DEVICE, 4),
];

/// `kind` of a record keyed `event:<event_id>`: stored, not scored.
const NO_SUBJECT: u8 = u8::MAX;

/// The scale-out counters, for `/metrics`.
#[derive(Default)]
pub struct ScaleStats {
    /// Records produced to the events topic (`parse`).
    pub published: AtomicU64,
    /// Records consumed from the events topic (`score`), replayed ones included.
    pub consumed: AtomicU64,
    /// Records read again to rebuild state after a takeover (`score`).
    pub replayed: AtomicU64,
    /// Partitions taken over from another instance or on first assignment (`score`).
    pub takeovers: AtomicU64,
    /// Published decisions read back on takeovers (`score`).
    pub decisions_read_back: AtomicU64,
    /// Assignments received through the incremental (cooperative) rebalance protocol (`score`).
    pub incremental_assignments: AtomicU64,
    /// Records of the events topic that were not an event (`score`; also dead letters).
    pub bad_records: AtomicU64,
    /// Batches handed to the store whose offsets wait for its write (`score`).
    awaiting_store: AtomicU64,
}

fn client_config(settings: &[(String, String)]) -> ClientConfig {
    let mut cc = ClientConfig::new();
    for (k, v) in settings {
        cc.set(k, v);
    }
    cc
}

/// The `parse` role's output: events to the events topic, once per subject.
pub struct EventPublisher {
    producer: FutureProducer,
    topic: String,
    stats: Arc<ScaleStats>,
}

impl EventPublisher {
    pub fn new(settings: &[(String, String)], topic: &str, stats: Arc<ScaleStats>) -> Result<Self> {
        let mut cc = client_config(settings);
        cc.set("enable.idempotence", "true");
        cc.set("linger.ms", "5");
        cc.set("compression.type", "lz4");
        Ok(Self {
            producer: cc.create().context("cannot create the events producer")?,
            topic: topic.to_string(),
            stats,
        })
    }

    /// Sends every event of `events` (the `events` schema) once per subject and waits until
    /// the broker has all of them.
    pub async fn publish(&self, events: &RecordBatch) -> Result<()> {
        let mut json = Vec::with_capacity(events.num_rows() * 512);
        vigil_ingest::event::write_ndjson(&mut json, events)?;
        let subjects = SUBJECT_COLUMNS
            .iter()
            .map(|(name, k)| Ok((string_column(events, name)?, KINDS[usize::from(*k)])))
            .collect::<Result<Vec<_>>>()?;
        let ids = string_column(events, col::EVENT_ID)?;
        let mut pending = Vec::new();
        let mut key = String::new();
        for (i, line) in json
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let mut sent = false;
            for (column, kind) in &subjects {
                if column.is_null(i) {
                    continue;
                }
                key.clear();
                key.push_str(kind.as_str());
                key.push(':');
                key.push_str(column.value(i));
                pending.push(self.send(&key, line)?);
                sent = true;
            }
            if !sent {
                key.clear();
                key.push_str("event:");
                key.push_str(ids.value(i));
                pending.push(self.send(&key, line)?);
            }
        }
        let n = pending.len() as u64;
        for fut in pending {
            match fut.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => bail!("publish events to {}: {e}", self.topic),
                Err(_) => bail!("events producer closed"),
            }
        }
        self.stats.published.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    fn send(&self, key: &str, value: &[u8]) -> Result<rdkafka::producer::DeliveryFuture> {
        self.producer
            .send_result(FutureRecord::to(&self.topic).key(key).payload(value))
            .map_err(|(e, _)| anyhow::anyhow!("publish events to {}: {e}", self.topic))
    }
}

fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .with_context(|| format!("events batch: column `{name}` missing or not utf8"))
}

/// Whether row `i`, consumed as the copy for the subject kind `kind`, is the copy of its event
/// that is stored: the one of its first subject in the order ip, identity, session, api_key,
/// device (or the only copy, of an event without subjects).
pub fn stored_copy(subjects: &[&StringArray], i: usize, kind: u8) -> bool {
    if kind == NO_SUBJECT {
        return true;
    }
    SUBJECT_COLUMNS
        .iter()
        .zip(subjects)
        .find(|(_, c)| c.is_valid(i))
        .is_some_and(|((_, k), _)| *k == kind)
}

/// The position in [`KINDS`] of a record key's kind, [`NO_SUBJECT`] for `event:`, `None` for
/// a key that is neither.
fn key_kind(key: &[u8]) -> Option<u8> {
    let kind = &key[..key.iter().position(|b| *b == b':')?];
    if kind == b"event" {
        return Some(NO_SUBJECT);
    }
    KINDS
        .iter()
        .position(|k| k.as_str().as_bytes() == kind)
        .map(|p| p as u8)
}

/// A partition this instance has just been given.
#[derive(Debug, Clone, Copy)]
struct Takeover {
    partition: i32,
    /// The group's committed offset when it was given: records before it are replayed.
    replay_until: Option<i64>,
}

/// The consumer's context: on each assignment, finds the partitions new to this instance and
/// starts them `rebuild_secs` back.
struct RebuildContext {
    topic: String,
    rebuild: Duration,
    /// The partitions of the last assignment (kept through a revoke, to tell new ones).
    assigned: Mutex<HashSet<i32>>,
    /// The partitions owned right now (empty between a revoke and the next assignment): a
    /// record of another partition is no longer this instance's to score.
    owned: Mutex<HashSet<i32>>,
    /// Takeovers not yet seen by the consuming loop.
    takeovers: Mutex<Vec<Takeover>>,
    stats: Arc<ScaleStats>,
}

impl ClientContext for RebuildContext {}

impl ConsumerContext for RebuildContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let given: Vec<i32> = tpl
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                let mut assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
                let new: Vec<i32> = given
                    .iter()
                    .copied()
                    .filter(|p| !assigned.contains(p))
                    .collect();
                let starts = self.rebuild_starts(consumer, &new);
                let mut takeovers = Vec::new();
                for p in new {
                    let (start, committed) = starts.get(&p).copied().unwrap_or((None, None));
                    let replay_until = match (start, committed) {
                        (Some(s), Some(c)) if s < c => {
                            if let Err(error) =
                                tpl.set_partition_offset(&self.topic, p, Offset::Offset(s))
                            {
                                tracing::warn!(partition = p, %error, "cannot start the partition back; its state is not rebuilt");
                                None
                            } else {
                                Some(c)
                            }
                        }
                        _ => None,
                    };
                    tracing::info!(
                        topic = %self.topic,
                        partition = p,
                        replay_from = ?start,
                        replay_until = ?replay_until,
                        "took over a partition"
                    );
                    takeovers.push(Takeover {
                        partition: p,
                        replay_until,
                    });
                }
                let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
                owned.extend(given.iter().copied());
                if cooperative {
                    assigned.extend(given);
                } else {
                    *assigned = given.into_iter().collect();
                }
                drop(owned);
                self.takeovers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(takeovers);
                let done = if cooperative {
                    self.stats
                        .incremental_assignments
                        .fetch_add(1, Ordering::Relaxed);
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(error) = done {
                    tracing::error!(%error, "cannot take the assigned partitions");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                {
                    let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
                    if cooperative {
                        for e in tpl.elements_for_topic(&self.topic) {
                            owned.remove(&e.partition());
                        }
                    } else {
                        owned.clear();
                    }
                }
                let done = if cooperative {
                    let mut assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
                    for e in tpl.elements_for_topic(&self.topic) {
                        assigned.remove(&e.partition());
                    }
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(error) = done {
                    tracing::error!(%error, "cannot give the revoked partitions up");
                }
            }
            other => tracing::error!(error = ?other, "consumer group rebalance failed"),
        }
    }
}

impl RebuildContext {
    /// For each partition: the offset `rebuild` ago (by record time) and the group's committed
    /// offset, where the broker knows them.
    fn rebuild_starts(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: &[i32],
    ) -> HashMap<i32, (Option<i64>, Option<i64>)> {
        let mut out = HashMap::new();
        if partitions.is_empty() || self.rebuild.is_zero() {
            return out;
        }
        let timeout = Duration::from_secs(10);
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&self.topic, *p);
        }
        let offset = |tpl: &TopicPartitionList, p: i32| match tpl
            .find_partition(&self.topic, p)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) if o >= 0 => Some(o),
            _ => None,
        };
        let committed = match consumer.committed_offsets(tpl.clone(), timeout) {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "cannot read the committed offsets; no rebuild");
                return out;
            }
        };
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(self.rebuild)
            .as_millis() as i64;
        let mut times = TopicPartitionList::new();
        for p in partitions {
            let _ = times.add_partition_offset(&self.topic, *p, Offset::Offset(since));
        }
        // A broker that cannot look offsets up by time: from the beginning (the records older
        // than the window fade out of the features anyway).
        let starts = consumer.offsets_for_times(times, timeout).ok();
        for p in partitions {
            let start = match &starts {
                Some(s) => match s.find_partition(&self.topic, *p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) if o >= 0 => Some(o),
                    // no record that recent: nothing to replay
                    Some(Offset::End) => None,
                    _ => Some(0),
                },
                None => Some(0),
            };
            out.insert(*p, (start, offset(&committed, *p)));
        }
        out
    }
}

/// Per partition of the decisions topic, the latest record of each subject (`None`: revoked).
type Published = BTreeMap<i32, BTreeMap<String, Option<Decision>>>;

/// Reads every partition of the compacted decisions topic from the beginning to its end. All
/// of them, not only the numbers taken over: a producer with another partitioner (or another
/// partition count) may have put a subject's decisions elsewhere than its events.
///
/// A partition's end is where the consumer reports it (partition EOF, from the fetch), not the
/// high watermark read beforehand: some Kafka-protocol brokers (Tansu) report a batch's first
/// offset there, which would stop the read before a batch's later decisions.
fn read_back_decisions(settings: &[(String, String)], topic: &str) -> Result<Published> {
    let mut cc = client_config(settings);
    cc.set(
        "group.id",
        format!("vigil-read-back-{}", std::process::id()),
    );
    cc.set("enable.auto.commit", "false");
    cc.set("enable.partition.eof", "true");
    let consumer: BaseConsumer = cc.create().context("cannot create the decisions reader")?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("cannot read the partitions of {topic}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    // the partitions not read to their end yet
    let mut reading = HashSet::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, timeout)
            .with_context(|| format!("cannot read the end of {topic}/{p}"))?;
        if high > low {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
            reading.insert(*p);
        }
    }
    let mut latest = Published::new();
    if reading.is_empty() {
        return Ok(latest);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reading.is_empty() {
        if Instant::now() > deadline {
            bail!("reading back {topic} did not reach its end within 60 s");
        }
        let m = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                reading.remove(&p);
                continue;
            }
            Some(m) => m.with_context(|| format!("cannot read back {topic}"))?,
        };
        let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            continue;
        };
        let d = match m.payload() {
            None => None,
            Some(v) => match Decision::from_json(v) {
                Ok(d) => Some(d),
                Err(error) => {
                    tracing::warn!(%error, key, "not a decision on the decisions topic");
                    continue;
                }
            },
        };
        latest
            .entry(m.partition())
            .or_default()
            .insert(key.to_string(), d);
    }
    Ok(latest)
}

/// One consumed record, until its batch is scored.
struct Record {
    partition: i32,
    offset: i64,
    kind: u8,
    replay: bool,
    payload: Vec<u8>,
}

/// What the `score` role works with: the engine's scorer, decision sink and store.
pub struct Scoring {
    pub scorer: Arc<Mutex<Scorer>>,
    pub sink: Arc<DecisionSink>,
    pub store: Option<Arc<Store>>,
    pub dead_letters: Arc<DeadLetterSink>,
    pub stats: Arc<ScaleStats>,
}

/// The `score` role: consumes the events topic until `shutdown`, scoring, publishing and
/// storing; returns on an error that stops the pipeline (the decisions topic, the store).
pub async fn score(cfg: &Config, parts: Scoring, shutdown: CancellationToken) -> Result<()> {
    let scale = &cfg.scale;
    let kafka = cfg.kafka.as_ref().context("the score role needs [kafka]")?;
    let settings = kafka.settings();
    let mut cc = client_config(&settings);
    cc.set("group.id", &scale.group_id);
    cc.set("enable.auto.commit", "false");
    cc.set("auto.offset.reset", "earliest");
    for (k, v) in &scale.consumer_options {
        cc.set(k, v);
    }
    let context = RebuildContext {
        topic: scale.events_topic.clone(),
        rebuild: Duration::from_secs(scale.rebuild_secs),
        assigned: Mutex::new(HashSet::new()),
        owned: Mutex::new(HashSet::new()),
        takeovers: Mutex::new(Vec::new()),
        stats: parts.stats.clone(),
    };
    let consumer: Arc<StreamConsumer<RebuildContext>> = Arc::new(
        cc.create_with_context(context)
            .context("cannot create the events consumer")?,
    );
    consumer
        .subscribe(&[&scale.events_topic])
        .with_context(|| format!("cannot subscribe to {}", scale.events_topic))?;
    tracing::info!(topic = %scale.events_topic, group = %scale.group_id, "scoring role consuming");

    // Offsets become committable when the store has the batch's events: the store's callback
    // (on its own thread) sends them here.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<(i32, i64)>>();
    let committer = {
        let consumer = consumer.clone();
        let topic = scale.events_topic.clone();
        let stop = shutdown.clone();
        let stats = parts.stats.clone();
        tokio::spawn(async move {
            let mut next: BTreeMap<i32, i64> = BTreeMap::new();
            loop {
                let stopping = tokio::select! {
                    Some(done) = done_rx.recv() => {
                        // committed at once: what a crash leaves stored but uncommitted (and
                        // so stored again by the partitions' next owner) is as small as it gets
                        for (p, o) in done {
                            let e = next.entry(p).or_insert(o);
                            *e = (*e).max(o);
                        }
                        false
                    }
                    () = stop.cancelled() => true,
                };
                if stopping {
                    // the last batches' offsets, once the store (writing eagerly now) has them
                    let deadline = Instant::now() + Duration::from_secs(10);
                    loop {
                        while let Ok(done) = done_rx.try_recv() {
                            for (p, o) in done {
                                let e = next.entry(p).or_insert(o);
                                *e = (*e).max(o);
                            }
                        }
                        if stats.awaiting_store.load(Ordering::Relaxed) == 0
                            || Instant::now() > deadline
                        {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                if !next.is_empty() {
                    let mut tpl = TopicPartitionList::new();
                    for (p, o) in &next {
                        let _ = tpl.add_partition_offset(&topic, *p, Offset::Offset(*o));
                    }
                    let mode = if stopping {
                        CommitMode::Sync
                    } else {
                        CommitMode::Async
                    };
                    // a partition given away meanwhile refuses the commit: its new owner reads
                    // those records again (at-least-once; the store drops repeated event ids)
                    if let Err(error) = consumer.commit(&tpl, mode) {
                        tracing::debug!(%error, "offsets not committed");
                    }
                    next.clear();
                }
                if stopping {
                    break;
                }
            }
        })
    };

    let topic = scale.events_topic.as_str();
    let max = scale.batch_max_events;
    let delay = Duration::from_millis(scale.batch_max_delay_ms);
    let mut batch: Vec<Record> = Vec::with_capacity(max);
    // partitions being replayed, and the offset their replay ends at
    let mut replay_until: HashMap<i32, i64> = HashMap::new();
    let mut first_at: Option<Instant> = None;
    let result: Result<()> = loop {
        let wait = first_at.map_or(delay, |t| delay.saturating_sub(t.elapsed()));
        let received = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            r = tokio::time::timeout(wait, consumer.recv()) => r,
        };
        match received {
            Ok(Ok(m)) => {
                // a rebalance inside recv(): first the batch read before it, then what the
                // new partitions need before their first record is scored
                let takeovers: Vec<Takeover> = std::mem::take(
                    &mut *consumer
                        .context()
                        .takeovers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()),
                );
                if !takeovers.is_empty() {
                    if let Err(e) = parts
                        .flush(topic, &mut batch, &done_tx, &consumer.context().owned)
                        .await
                    {
                        break Err(e);
                    }
                    first_at = None;
                    let published =
                        match read_back(&settings, kafka, &takeovers, &parts.stats).await {
                            Ok(p) => p.into_values().flatten().collect(),
                            Err(e) => break Err(e),
                        };
                    // the policy's memory of these subjects: what enforcement points hold (the
                    // replay rebuilds features only)
                    apply_published(&parts.scorer, &published);
                    for t in &takeovers {
                        match t.replay_until {
                            Some(c) => replay_until.insert(t.partition, c),
                            None => replay_until.remove(&t.partition),
                        };
                    }
                }
                parts.stats.consumed.fetch_add(1, Ordering::Relaxed);
                let partition = m.partition();
                let offset = m.offset();
                // a flush scores a batch's replayed rows before its live ones
                let replay = replay_until.get(&partition).is_some_and(|c| offset < *c);
                if !replay {
                    replay_until.remove(&partition);
                }
                let Some(kind) = m.key().and_then(key_kind) else {
                    let letter = dead_letter(
                        m.topic(),
                        partition,
                        offset,
                        "the record's key is not `kind:id` or `event:id`".into(),
                        m.payload().unwrap_or_default(),
                    );
                    write_letters(&parts.dead_letters, &parts.stats, &[letter]).await;
                    continue;
                };
                batch.push(Record {
                    partition,
                    offset,
                    kind,
                    replay,
                    payload: m.payload().unwrap_or_default().to_vec(),
                });
                first_at.get_or_insert_with(Instant::now);
                if batch.len() < max {
                    continue;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "events topic: consumer error");
                continue;
            }
            Err(_) => {} // the batch's delay is over
        }
        if let Err(e) = parts
            .flush(topic, &mut batch, &done_tx, &consumer.context().owned)
            .await
        {
            break Err(e);
        }
        first_at = None;
    };
    // what was read is scored and stored before the last commit
    let last = parts
        .flush(topic, &mut batch, &done_tx, &consumer.context().owned)
        .await;
    if let Some(s) = &parts.store {
        s.set_eager(true);
    }
    shutdown.cancel();
    let _ = committer.await;
    result.and(last)
}

/// Reads back the published decisions of the taken-over partitions.
async fn read_back(
    settings: &[(String, String)],
    kafka: &crate::config::KafkaConfig,
    takeovers: &[Takeover],
    stats: &ScaleStats,
) -> Result<Published> {
    stats
        .takeovers
        .fetch_add(takeovers.len() as u64, Ordering::Relaxed);
    let settings = settings.to_vec();
    let topic = kafka.decisions_topic.clone();
    let published =
        tokio::task::spawn_blocking(move || read_back_decisions(&settings, &topic)).await??;
    let n: usize = published.values().map(BTreeMap::len).sum();
    stats
        .decisions_read_back
        .fetch_add(n as u64, Ordering::Relaxed);
    tracing::info!(
        decisions = n,
        "read back the decisions of the partitions taken over"
    );
    Ok(published)
}

/// Teaches the policy the published decisions of the subjects taken over (what enforcement
/// points hold), where they are newer than what it knows.
fn apply_published(scorer: &Mutex<Scorer>, decisions: &BTreeMap<String, Option<Decision>>) {
    let mut scorer = scorer.lock().unwrap_or_else(|p| p.into_inner());
    let policy = scorer.policy_mut();
    for (key, d) in decisions {
        match d {
            Some(d) => policy.remember(d),
            None => {
                if let Ok(s) = Subject::from_key(key) {
                    policy.forget(&s);
                }
            }
        }
    }
}

/// A record of the events topic that is not an event, as a dead letter.
fn dead_letter(topic: &str, partition: i32, offset: i64, detail: String, raw: &[u8]) -> DeadLetter {
    use vigil_ingest::dead_letter::MAX_RAW_BYTES;
    let kept = &raw[..raw.len().min(MAX_RAW_BYTES)];
    DeadLetter {
        received_at: vigil_ingest::time::rfc3339_us(vigil_ingest::pipeline::now_us()),
        gateway: topic.to_string(),
        format: "vigil-event".to_string(),
        origin: format!("kafka:{topic}/{partition}:{offset}"),
        reason: ParseErrorKind::InvalidJson.as_str(),
        detail,
        line: String::from_utf8_lossy(kept).into_owned(),
        line_truncated: kept.len() < raw.len(),
        kind: ParseErrorKind::InvalidJson,
    }
}

async fn write_letters(dead_letters: &DeadLetterSink, stats: &ScaleStats, letters: &[DeadLetter]) {
    if letters.is_empty() {
        return;
    }
    stats
        .bad_records
        .fetch_add(letters.len() as u64, Ordering::Relaxed);
    if let Err(error) = dead_letters.write(letters).await {
        tracing::error!(%error, "cannot write dead letters");
    }
}

impl Scoring {
    /// Scores the batch's records (replayed ones first, quietly), publishes the decisions, stores
    /// the stored copies, and hands the offsets to the committer once the store has them.
    async fn flush(
        &self,
        topic: &str,
        batch: &mut Vec<Record>,
        done: &tokio::sync::mpsc::UnboundedSender<Vec<(i32, i64)>>,
        owned: &Mutex<HashSet<i32>>,
    ) -> Result<()> {
        // A partition given away since its records were read: they are its new owner's, who
        // reads them again from the committed offset (publishing a decision from them here
        // could race the new owner's read-back of the published ones).
        {
            let owned = owned.lock().unwrap_or_else(|p| p.into_inner());
            batch.retain(|r| owned.contains(&r.partition));
        }
        let Scoring {
            scorer,
            sink,
            store,
            dead_letters,
            stats,
        } = self;
        if batch.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(batch);
        let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
        for r in &records {
            let e = offsets.entry(r.partition).or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
        }
        let (replayed, live): (Vec<&Record>, Vec<&Record>) = records.iter().partition(|r| r.replay);
        if !replayed.is_empty() {
            stats
                .replayed
                .fetch_add(replayed.len() as u64, Ordering::Relaxed);
            let (events, kinds) = decode(topic, &replayed, dead_letters, stats).await?;
            tokio::task::block_in_place(|| {
                scorer
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .rebuild(&events, &kinds)
            })?;
        }
        let (events, kinds) = decode(topic, &live, dead_letters, stats).await?;
        let out = tokio::task::block_in_place(|| {
            scorer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .score_partitioned(&events, Some(&kinds), true)
        })?;
        sink.issue(&out.decisions).await?;
        let offsets: Vec<(i32, i64)> = offsets.into_iter().collect();
        match store {
            Some(store) => {
                if let Some(scores) = out.scores.filter(|s| s.num_rows() > 0) {
                    store.append("scores", scores, None)?;
                }
                let subjects = SUBJECT_COLUMNS
                    .iter()
                    .map(|(name, _)| string_column(&events, name))
                    .collect::<Result<Vec<_>>>()?;
                let keep: BooleanArray = (0..events.num_rows())
                    .map(|i| Some(stored_copy(&subjects, i, kinds[i])))
                    .collect();
                let stored = arrow::compute::filter_record_batch(&events, &keep)?;
                let done = done.clone();
                let stats = self.stats.clone();
                stats.awaiting_store.fetch_add(1, Ordering::Relaxed);
                store.append(
                    "events",
                    stored,
                    Some(Box::new(move || {
                        let _ = done.send(offsets);
                        stats.awaiting_store.fetch_sub(1, Ordering::Relaxed);
                    })),
                )?;
            }
            None => {
                let _ = done.send(offsets);
            }
        }
        Ok(())
    }
}

/// The records' events as one batch of the `events` schema, with each row's subject kind; a
/// record that is not one event goes to the dead letters.
async fn decode(
    topic: &str,
    records: &[&Record],
    dead_letters: &DeadLetterSink,
    stats: &ScaleStats,
) -> Result<(RecordBatch, Vec<u8>)> {
    let schema = vigil_ingest::event::events_schema();
    let kinds: Vec<u8> = records.iter().map(|r| r.kind).collect();
    if let Ok(events) = decode_events(&schema, records.iter().map(|r| &r.payload[..]))
        && events.num_rows() == records.len()
    {
        return Ok((events, kinds));
    }
    // some record is not one event: one at a time
    let mut good = Vec::with_capacity(records.len());
    let mut kinds = Vec::with_capacity(records.len());
    let mut letters = Vec::new();
    for r in records {
        let detail = match decode_events(&schema, std::iter::once(&r.payload[..])) {
            Ok(b) if b.num_rows() == 1 => {
                good.push(b);
                kinds.push(r.kind);
                continue;
            }
            Ok(b) => format!("{} events in one record, not one", b.num_rows()),
            Err(e) => format!("not an event: {e}"),
        };
        letters.push(dead_letter(
            topic,
            r.partition,
            r.offset,
            detail,
            &r.payload,
        ));
    }
    write_letters(dead_letters, stats, &letters).await;
    Ok((arrow::compute::concat_batches(&schema, &good)?, kinds))
}

fn decode_events<'a>(
    schema: &arrow::datatypes::SchemaRef,
    payloads: impl ExactSizeIterator<Item = &'a [u8]>,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    // room for one more row than expected, so that a record holding two shows
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(payloads.len() + 2)
        .build_decoder()?;
    for p in payloads {
        decoder.decode(p)?;
        decoder.decode(b"\n")?;
    }
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_name_the_subject_kind() {
        assert_eq!(key_kind(b"ip:10.0.0.1"), Some(2));
        assert_eq!(key_kind(b"identity:alice"), Some(0));
        assert_eq!(key_kind(b"session:s:with:colons"), Some(1));
        assert_eq!(key_kind(b"api_key:0123abcd"), Some(3));
        assert_eq!(key_kind(b"device:t13d_abc"), Some(4));
        assert_eq!(key_kind(b"event:00ff"), Some(NO_SUBJECT));
        assert_eq!(key_kind(b"nokind"), None);
        assert_eq!(key_kind(b"user:alice"), None);
    }

    #[test]
    fn each_event_is_stored_by_the_owner_of_its_first_subject() {
        let ip = StringArray::from(vec![Some("10.0.0.1"), None, None]);
        let identity = StringArray::from(vec![Some("alice"), Some("bob"), None]);
        let none = StringArray::from(vec![None::<&str>, None, None]);
        let session = StringArray::from(vec![Some("s1"), Some("s2"), None]);
        let subjects = [&ip, &identity, &session, &none, &none];
        // row 0: ip first
        assert!(stored_copy(&subjects, 0, 2));
        assert!(!stored_copy(&subjects, 0, 0) && !stored_copy(&subjects, 0, 1));
        // row 1: no ip, so identity
        assert!(stored_copy(&subjects, 1, 0));
        assert!(!stored_copy(&subjects, 1, 1));
        // row 2: no subject, the one copy
        assert!(stored_copy(&subjects, 2, NO_SUBJECT));
    }
}
