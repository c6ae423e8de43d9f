//! `type = "kafka"`: a consumer group on the gateways' log topics.
//!
//! Offsets are committed only for messages whose batch has been acknowledged downstream
//! (at-least-once): each chunk's [`Ack`] records `offset + 1` of its last message, and a
//! committer commits the highest acknowledged offset per partition every
//! `commit_interval_ms` and once more when the source stops.

use super::SourceContext;
use crate::error::IngestError;
use crate::pipeline::{Ack, LineChunk, LineSpan};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Topics to consume. Required.
    pub topics: Vec<String>,
    /// Consumer group. Default `vigil`.
    pub group_id: String,
    /// Where a group without committed offsets starts: `earliest` (default) or `latest`.
    pub auto_offset_reset: String,
    /// Most messages in one chunk. Default 2000.
    pub chunk_max_messages: usize,
    /// Longest a message waits in a partly filled chunk. Default 50 ms.
    pub chunk_max_delay_ms: u64,
    /// How often acknowledged offsets are committed. Default 1000 ms.
    pub commit_interval_ms: u64,
    /// Extra librdkafka consumer settings, e.g. `"session.timeout.ms" = "10000"`.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaSourceConfig {
    fn default() -> Self {
        Self {
            topics: Vec::new(),
            group_id: "vigil".into(),
            auto_offset_reset: "earliest".into(),
            chunk_max_messages: 2000,
            chunk_max_delay_ms: 50,
            commit_interval_ms: 1000,
            options: BTreeMap::new(),
        }
    }
}

/// `(topic, partition)` -> next offset to read (what a commit stores).
type Acked = (Arc<str>, i32, i64);

impl KafkaSourceConfig {
    pub fn build(
        &self,
        ctx: &SourceContext,
        chunks: mpsc::Sender<LineChunk>,
        tasks: &mut JoinSet<Result<(), IngestError>>,
    ) -> Result<(), IngestError> {
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(IngestError::config(
                ctx.key("topics"),
                "at least one non-empty topic is required",
            ));
        }
        if !matches!(self.auto_offset_reset.as_str(), "earliest" | "latest") {
            return Err(IngestError::config(
                ctx.key("auto_offset_reset"),
                format!("`{}` is not `earliest` or `latest`", self.auto_offset_reset),
            ));
        }
        if self.chunk_max_messages == 0
            || self.chunk_max_delay_ms == 0
            || self.commit_interval_ms == 0
        {
            return Err(IngestError::config(
                ctx.key("chunk_max_messages"),
                "chunk_max_messages, chunk_max_delay_ms and commit_interval_ms must be at least 1",
            ));
        }
        if !ctx.kafka.iter().any(|(k, _)| k == "bootstrap.servers") {
            return Err(IngestError::config(
                "kafka.brokers",
                "a Kafka source needs `[kafka] brokers`",
            ));
        }
        let mut cc = ClientConfig::new();
        for (k, v) in &ctx.kafka {
            cc.set(k, v);
        }
        cc.set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &self.auto_offset_reset)
            .set("client.id", format!("vigil-{}", ctx.name));
        for (k, v) in &self.options {
            cc.set(k, v);
        }
        let consumer: Arc<StreamConsumer> = Arc::new(cc.create().map_err(|e| {
            IngestError::kafka(format!("create consumer for source {}", ctx.name), e)
        })?);
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| IngestError::kafka(format!("subscribe to {}", topics.join(",")), e))?;
        let (acked_tx, acked_rx) = mpsc::unbounded_channel();
        tasks.spawn(commit_loop(
            consumer.clone(),
            acked_rx,
            Duration::from_millis(self.commit_interval_ms),
        ));
        let reader = Reader {
            consumer,
            cfg: self.clone(),
            ctx: ctx.clone(),
            chunks,
            acked: acked_tx,
            open: HashMap::new(),
        };
        tasks.spawn(reader.run());
        Ok(())
    }
}

struct Reader {
    consumer: Arc<StreamConsumer>,
    cfg: KafkaSourceConfig,
    ctx: SourceContext,
    chunks: mpsc::Sender<LineChunk>,
    /// Acks hold a clone; the committer ends once this and every in-flight ack are gone. Its
    /// length is bounded by the chunks in flight, which the bounded pipeline queues limit.
    acked: mpsc::UnboundedSender<Acked>,
    /// Partly filled chunk per partition, with its last offset.
    open: HashMap<(Arc<str>, i32), (LineChunk, i64)>,
}

impl Reader {
    async fn run(mut self) -> Result<(), IngestError> {
        let delay = Duration::from_millis(self.cfg.chunk_max_delay_ms);
        let mut tick = tokio::time::interval(delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let consumer = self.consumer.clone();
        loop {
            tokio::select! {
                msg = consumer.recv() => match msg {
                    Ok(m) => {
                        let topic: Arc<str> = m.topic().into();
                        let full = self.add(topic, m.partition(), m.offset(), m.payload().unwrap_or_default());
                        if let Some(key) = full {
                            self.send(&key).await?;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, source = %self.ctx.name, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                _ = tick.tick() => self.send_all().await?,
                () = self.ctx.shutdown.cancelled() => {
                    self.send_all().await?;
                    return Ok(());
                }
            }
        }
    }

    /// Adds one message's lines; returns the partition key when its chunk is full.
    fn add(
        &mut self,
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        payload: &[u8],
    ) -> Option<(Arc<str>, i32)> {
        let key = (topic.clone(), partition);
        let max_line = self.ctx.pipeline.max_line_bytes;
        let gateway = &self.ctx.name;
        let (chunk, last) = self.open.entry(key.clone()).or_insert_with(|| {
            let stream = format!("kafka:{topic}/{partition}");
            let seed = crate::event::stream_seed(gateway, stream.as_bytes());
            (LineChunk::new(stream.into(), seed), offset)
        });
        *last = offset;
        let payload = payload.strip_suffix(b"\n").unwrap_or(payload);
        for (sub, line) in payload.split(|b| *b == b'\n').enumerate() {
            let s = chunk.data.len();
            let kept = &line[..line
                .len()
                .min(max_line.max(crate::dead_letter::MAX_RAW_BYTES))];
            chunk.data.extend_from_slice(kept);
            if chunk.data.last() == Some(&b'\r') {
                chunk.data.pop();
            }
            chunk.lines.push(LineSpan {
                start: s,
                end: chunk.data.len(),
                position: offset as u64,
                sub: sub as u32,
                truncated: line.len() > max_line,
            });
        }
        (chunk.lines.len() >= self.cfg.chunk_max_messages).then_some(key)
    }

    async fn send(&mut self, key: &(Arc<str>, i32)) -> Result<(), IngestError> {
        let Some((mut chunk, last)) = self.open.remove(key) else {
            return Ok(());
        };
        let acked = self.acked.clone();
        let (topic, partition) = key.clone();
        chunk.ack = Some(Ack::new(move |_| {
            let _ = acked.send((topic, partition, last + 1));
        }));
        self.chunks
            .send(chunk)
            .await
            .map_err(|_| IngestError::Closed)
    }

    async fn send_all(&mut self) -> Result<(), IngestError> {
        let keys: Vec<_> = self.open.keys().cloned().collect();
        for k in keys {
            self.send(&k).await?;
        }
        Ok(())
    }
}

async fn commit_loop(
    consumer: Arc<StreamConsumer>,
    mut acked: mpsc::UnboundedReceiver<Acked>,
    every: Duration,
) -> Result<(), IngestError> {
    let mut pending: HashMap<(Arc<str>, i32), i64> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            a = acked.recv() => match a {
                Some((t, p, o)) => {
                    let e = pending.entry((t, p)).or_insert(o);
                    *e = (*e).max(o);
                }
                None => {
                    commit(&consumer, &mut pending, CommitMode::Sync);
                    return Ok(());
                }
            },
            _ = tick.tick() => commit(&consumer, &mut pending, CommitMode::Async),
        }
    }
}

fn commit(
    consumer: &StreamConsumer,
    pending: &mut HashMap<(Arc<str>, i32), i64>,
    mode: CommitMode,
) {
    if pending.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in pending.drain() {
        if let Err(error) = tpl.add_partition_offset(&t, p, Offset::Offset(o)) {
            tracing::warn!(%error, topic = %t, partition = p, "bad offset to commit");
        }
    }
    if let Err(error) = consumer.commit(&tpl, mode) {
        // A partition revoked by a rebalance cannot be committed by us; its new owner
        // re-reads from the last commit (at-least-once).
        tracing::warn!(%error, "kafka offset commit failed");
    }
}
