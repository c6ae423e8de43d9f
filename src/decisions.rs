//! Where decisions go once issued, automatic or manual: the engine's decision table and
//! `/v1/decisions/stream` (through [`DecisionBroadcast`]), the compacted Kafka topic when
//! Kafka is configured, and the store's `decisions` table.

use anyhow::{Context, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use vigil_enforce::feed::sse::DecisionBroadcast;
use vigil_enforce::{Action, Decision, Subject};
use vigil_ingest::store::Store;
use vigil_scoring::tables::{Change, decisions_batch};

/// The actions in `Action as usize` order, for counters.
pub const ACTIONS: [Action; 5] = [
    Action::Allow,
    Action::Monitor,
    Action::StepUp,
    Action::Throttle,
    Action::Block,
];

/// Publishes decisions to the compacted decisions topic: key `kind:id`, value the decision
/// record (schema version 1), a tombstone to revoke; awaited until the broker has them.
pub struct DecisionPublisher {
    producer: rdkafka::producer::FutureProducer,
    topic: String,
}

impl DecisionPublisher {
    pub fn new(settings: &[(String, String)], topic: &str) -> Result<Self> {
        let mut cc = rdkafka::ClientConfig::new();
        for (k, v) in settings {
            cc.set(k, v);
        }
        cc.set("enable.idempotence", "true");
        Ok(Self {
            producer: cc
                .create()
                .context("cannot create the decisions producer")?,
            topic: topic.to_string(),
        })
    }

    /// Sends `(key, value)` records (`None`: a tombstone) and waits for the broker.
    async fn send(&self, records: &[(String, Option<String>)]) -> Result<()> {
        let mut pending = Vec::with_capacity(records.len());
        for (key, value) in records {
            let mut record =
                rdkafka::producer::FutureRecord::<String, String>::to(&self.topic).key(key);
            if let Some(v) = value {
                record = record.payload(v);
            }
            let fut = self
                .producer
                .send_result(record)
                .map_err(|(e, _)| anyhow::anyhow!("publish decision to {}: {e}", self.topic))?;
            pending.push(fut);
        }
        for fut in pending {
            match fut.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => anyhow::bail!("publish decision to {}: {e}", self.topic),
                Err(_) => anyhow::bail!("decisions producer closed"),
            }
        }
        Ok(())
    }
}

/// Every destination of a decision, shared by the scoring consumer and the manual-decision API.
pub struct DecisionSink {
    pub feed: DecisionBroadcast,
    publisher: Option<DecisionPublisher>,
    store: Option<Arc<Store>>,
    /// Decisions issued, by action (index = position in [`ACTIONS`]).
    by_action: [AtomicU64; 5],
    pub revoked: AtomicU64,
}

impl DecisionSink {
    pub fn new(
        feed: DecisionBroadcast,
        publisher: Option<DecisionPublisher>,
        store: Option<Arc<Store>>,
    ) -> Self {
        Self {
            feed,
            publisher,
            store,
            by_action: Default::default(),
            revoked: AtomicU64::new(0),
        }
    }

    pub fn issued(&self, a: Action) -> u64 {
        ACTIONS
            .iter()
            .position(|x| *x == a)
            .map_or(0, |i| self.by_action[i].load(Ordering::Relaxed))
    }

    /// Applies `decisions` to the table and the stream, publishes them to the topic (awaited)
    /// and records them in the store.
    pub async fn issue(&self, decisions: &[Decision]) -> Result<()> {
        if decisions.is_empty() {
            return Ok(());
        }
        for d in decisions {
            if let Some(i) = ACTIONS.iter().position(|x| *x == d.action) {
                self.by_action[i].fetch_add(1, Ordering::Relaxed);
            }
            if let Err(error) = self.feed.publish(d.clone()) {
                tracing::warn!(%error, subject = %d.subject.key(), "decision not applied");
            }
        }
        if let Some(p) = &self.publisher {
            let records: Vec<(String, Option<String>)> = decisions
                .iter()
                .map(|d| (d.subject.key(), Some(d.to_json())))
                .collect();
            p.send(&records).await?;
        }
        self.record(decisions.iter().map(|d| (d, Change::Issue)))
    }

    /// Withdraws the subject's decision everywhere (a tombstone on the topic); `by` names who
    /// revoked it. Returns the decision the engine held, if any.
    pub async fn revoke(&self, subject: Subject, by: &str) -> Result<Option<Arc<Decision>>> {
        let old = self.feed.revoke(subject.clone());
        self.revoked.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = &self.publisher {
            p.send(&[(subject.key(), None)]).await?;
        }
        let mut row = match &old {
            Some(d) => Decision::clone(d),
            None => Decision::new(
                subject,
                Action::Allow,
                0.0,
                "manual",
                std::time::Duration::ZERO,
            ),
        };
        row.origin = "manual".into();
        row.reasons.push(format!("manual:{by}"));
        row.issued_at = vigil_enforce::UnixMicros::now();
        row.expires_at = row.issued_at;
        self.record([(&row, Change::Revoke)])?;
        Ok(old)
    }

    fn record<'a>(&self, rows: impl IntoIterator<Item = (&'a Decision, Change)>) -> Result<()> {
        if let Some(store) = &self.store {
            let batch = decisions_batch(rows)?;
            store.append("decisions", batch, None)?;
        }
        Ok(())
    }
}
