//! The Kafka decision feed: the compacted topic `vigil.decisions` read into a
//! [`DecisionTable`].
//!
//! At start the subscriber asks the broker for the topic's partitions and their end offsets,
//! then *assigns* every partition from `Offset::Beginning` (no consumer group: a group join
//! takes tens of seconds, and every enforcement point needs every partition anyway). It is
//! warm once each partition has reached the end offset seen at start (or reported its end,
//! whichever comes first), and then follows the topic live. Records: key `kind:id`, value the
//! JSON decision record, a null value (tombstone) revokes. Invalid records are counted and
//! skipped, never fatal.
//!
//! The heartbeat is a metadata request every `heartbeat_interval` (it also finds partitions
//! added later, which are assigned from their beginning); when the broker stops answering,
//! the feed goes stale after `stale_after`. librdkafka reconnects by itself.
//!
//! Queues: librdkafka's fetch queue is bounded by its own settings
//! (`queued.max.messages.kbytes`); this task applies each record to the table before reading
//! the next, so a slow table would slow the fetcher, never grow memory.

use super::FeedStatus;
use crate::config::{FeedSettings, FeedSource};
use crate::error::EnforceError;
use crate::table::DecisionTable;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The consumer's context: librdkafka's global errors go to `tracing`, except the end of a
/// partition, which is how this feed knows it is warm, not an error.
pub struct FeedContext;

impl ClientContext for FeedContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // reaching a partition's end is how the feed knows it caught up, not an error
        if !matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::error::RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::warn!(%error, reason, "librdkafka");
        }
    }
}

impl ConsumerContext for FeedContext {}

type FeedConsumer = StreamConsumer<FeedContext>;

/// A configured Kafka decision feed (its consumer created, so a bad client setting fails at
/// start, not later).
pub struct KafkaFeed {
    consumer: Arc<FeedConsumer>,
    topic: String,
    heartbeat_interval: Duration,
    timeout: Duration,
    stale_after: Duration,
}

impl std::fmt::Debug for KafkaFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaFeed")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Where one partition's reading stands: caught up once the consumer reports its end
/// (partition EOF, from a fetch) or when it was empty at start. Not by comparing offsets with
/// the high watermark read at start: some Kafka-protocol brokers (Tansu) report a batch's first
/// offset there, which would call the feed warm one batch early.
#[derive(Debug, Clone, Copy)]
struct PartitionState {
    caught_up: bool,
}

impl KafkaFeed {
    /// The feed of `[proxy.feed]` (which must be `type = "kafka"`); call it inside a Tokio
    /// runtime (the consumer is created here). `kafka` holds the engine's
    /// `[kafka]` client settings (`bootstrap.servers` and extra options), used when the feed
    /// names no brokers of its own; the feed's `options` are applied over them.
    pub fn new(feed: &FeedSettings, kafka: &[(String, String)]) -> Result<Self, EnforceError> {
        let FeedSource::Kafka {
            brokers,
            topic,
            options,
        } = &feed.source
        else {
            return Err(EnforceError::config(
                "proxy.feed.type",
                "the Kafka feed needs `type = \"kafka\"`",
            ));
        };
        let mut client: BTreeMap<String, String> = kafka.iter().cloned().collect();
        if let Some(b) = brokers {
            client.insert("bootstrap.servers".into(), b.clone());
        }
        if !client.contains_key("bootstrap.servers") {
            return Err(EnforceError::config(
                "proxy.feed.brokers",
                "required: no brokers here and no [kafka] section",
            ));
        }
        client.extend(options.iter().cloned());
        Ok(KafkaFeed {
            consumer: Arc::new(Self::consumer(&client)?),
            topic: topic.clone(),
            heartbeat_interval: feed.heartbeat_interval,
            timeout: feed.connect_timeout,
            stale_after: feed.stale_after,
        })
    }

    /// A new status for this feed (`kind` `kafka`).
    pub fn status(&self) -> Arc<FeedStatus> {
        Arc::new(FeedStatus::new("kafka", self.stale_after))
    }

    fn consumer(client: &BTreeMap<String, String>) -> Result<FeedConsumer, EnforceError> {
        let mut cc = ClientConfig::new();
        for (k, v) in client {
            cc.set(k, v);
        }
        // librdkafka wants a group id even for `assign`; nothing joins it or commits to it
        cc.set(
            "group.id",
            format!("vigil-enforce-feed-{}", uuid::Uuid::now_v7()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("client.id", "vigil-enforce-feed");
        cc.create_with_context(FeedContext).map_err(|e| {
            EnforceError::config(
                "proxy.feed.options",
                format!("cannot create the Kafka consumer: {e}"),
            )
        })
    }

    /// The topic's partition ids (blocking: call off the runtime). Empty: no such topic yet.
    fn partitions(
        consumer: &FeedConsumer,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<i32>, KafkaError> {
        let md = consumer.fetch_metadata(Some(topic), timeout)?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    }

    /// Reads the topic into `table` until `shutdown`. Returns an error only when the
    /// partitions cannot be assigned (a local error); broker trouble is retried and shows as
    /// staleness.
    pub async fn run(
        self,
        table: Arc<DecisionTable>,
        status: Arc<FeedStatus>,
        shutdown: CancellationToken,
    ) -> Result<(), EnforceError> {
        let consumer = self.consumer.clone();
        status.count_connect();
        // 1. the partitions and their end offsets, as the broker has them now
        let mut backoff = Duration::from_millis(100);
        let mut parts: BTreeMap<i32, PartitionState> = loop {
            let c = consumer.clone();
            let topic = self.topic.clone();
            let timeout = self.timeout;
            let found = blocking(&shutdown, move || {
                let ids = Self::partitions(&c, &topic, timeout)?;
                let mut out = BTreeMap::new();
                for p in ids {
                    let (low, high) = c.fetch_watermarks(&topic, p, timeout)?;
                    out.insert(
                        p,
                        PartitionState {
                            caught_up: high <= low.max(0),
                        },
                    );
                }
                Ok::<_, KafkaError>(out)
            })
            .await;
            match found {
                None => return Ok(()),
                Some(Ok(p)) if !p.is_empty() => break p,
                Some(Ok(_)) => {
                    tracing::info!(topic = %self.topic, "decision topic not found yet; waiting");
                    status.heartbeat();
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, topic = %self.topic, "cannot read the decision topic's offsets; retrying");
                    status.count_error();
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        };
        status.heartbeat();
        // 2. every partition from its beginning
        let mut tpl = TopicPartitionList::new();
        for p in parts.keys() {
            tpl.add_partition_offset(&self.topic, *p, Offset::Beginning)
                .map_err(|e| EnforceError::Feed(e.to_string()))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| EnforceError::Feed(format!("cannot assign the decision topic: {e}")))?;
        tracing::info!(topic = %self.topic, partitions = parts.len(), "reading the decision topic from the beginning");
        check_warm(&parts, &status);

        // 3. follow
        let mut heartbeat = tokio::time::interval(self.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = heartbeat.tick() => {
                    let c = consumer.clone();
                    let topic = self.topic.clone();
                    let timeout = self.timeout;
                    match blocking(&shutdown, move || Self::partitions(&c, &topic, timeout)).await {
                        None => return Ok(()),
                        Some(Ok(ids)) => {
                            status.heartbeat();
                            let new: Vec<i32> = ids.into_iter().filter(|p| !parts.contains_key(p)).collect();
                            if !new.is_empty() {
                                let mut tpl = TopicPartitionList::new();
                                for p in &new {
                                    let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Beginning);
                                    // found after start: not part of what warm waits for
                                    parts.insert(*p, PartitionState { caught_up: true });
                                }
                                match consumer.incremental_assign(&tpl) {
                                    Ok(()) => tracing::info!(topic = %self.topic, partitions = ?new, "new decision topic partitions assigned"),
                                    Err(error) => {
                                        status.count_error();
                                        tracing::warn!(%error, "cannot assign new decision topic partitions");
                                        for p in &new {
                                            parts.remove(p);
                                        }
                                    }
                                }
                            }
                        }
                        Some(Err(error)) => {
                            status.count_error();
                            tracing::warn!(%error, topic = %self.topic, "decision feed heartbeat failed");
                        }
                    }
                }
                m = consumer.recv() => match m {
                    Ok(m) => {
                        failing = false;
                        status.apply_record(&table, m.key(), m.payload());
                    }
                    Err(KafkaError::PartitionEOF(p)) => {
                        failing = false;
                        status.heartbeat();
                        if let Some(st) = parts.get_mut(&p)
                            && !st.caught_up
                        {
                            st.caught_up = true;
                            check_warm(&parts, &status);
                        }
                    }
                    Err(error) => {
                        status.count_error();
                        if !failing {
                            tracing::warn!(%error, topic = %self.topic, "decision feed read failed");
                        }
                        failing = true;
                        // librdkafka retries by itself; do not spin on a persistent error
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                },
            }
        }
    }
}

fn check_warm(parts: &BTreeMap<i32, PartitionState>, status: &FeedStatus) {
    if !status.is_warm() && parts.values().all(|p| p.caught_up) {
        status.set_warm(true);
    }
}

/// Runs a blocking librdkafka call (bounded by its own timeout) on the blocking pool; `None`
/// when `shutdown` came first (the call then finishes within its timeout on its own).
async fn blocking<T: Send + 'static>(
    shutdown: &CancellationToken,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let h = tokio::task::spawn_blocking(f);
    tokio::select! {
        _ = shutdown.cancelled() => None,
        r = h => r.ok(),
    }
}
