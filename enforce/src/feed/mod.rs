//! The decision feed: how decisions reach an enforcement point's [`DecisionTable`], and how
//! fresh they are.
//!
//! - in process (`vigil run`): the engine writes the table directly; never stale;
//! - [`kafka`]: the compacted topic `vigil.decisions` (key `kind:id`, value the JSON decision
//!   record of [`crate::decision`], a null value revokes), read from the beginning of every
//!   partition at start, then followed live;
//! - [`sse`]: the engine's `GET /v1/decisions/stream` (server-sent events with sequence
//!   numbers, resume and periodic full resync): the server side for the engine and the
//!   client that follows it.
//!
//! Every feed reports into one [`FeedStatus`]: warm (it has caught up with what its source
//! held when it started), the time since the last record and the last heartbeat, and counts.
//! The feed is **stale** until it is warm and whenever neither a record nor a heartbeat has
//! arrived for `stale_after`; while it is stale, the proxy and forward-auth apply the fail
//! policy of the request's route (`keep_last_known`, `fail_open`, `fail_closed`).

pub mod kafka;
pub mod sse;

use crate::decision::{Decision, Subject, UnixMicros};
use crate::table::{DecisionTable, Upsert};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One change on a feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedChange {
    /// A new or replacing decision for its subject.
    Decision(std::sync::Arc<Decision>),
    /// The subject's decision is revoked (a tombstone on the topic).
    Revoke(Subject),
}

impl FeedChange {
    pub fn subject(&self) -> &Subject {
        match self {
            FeedChange::Decision(d) => &d.subject,
            FeedChange::Revoke(s) => s,
        }
    }
}

/// The health of one decision feed, shared by the feed task (which writes it) and the
/// request path and metrics (which read it). Lock-free.
#[derive(Debug)]
pub struct FeedStatus {
    kind: &'static str,
    origin: Instant,
    stale_after: Duration,
    warm: AtomicBool,
    /// Microseconds after `origin` (+1, so 0 means never).
    last_record: AtomicU64,
    last_heartbeat: AtomicU64,
    /// `issued_at` of the last applied decision to its arrival, in microseconds.
    last_lag_us: AtomicU64,
    applied: AtomicU64,
    revoked: AtomicU64,
    ignored: AtomicU64,
    invalid: AtomicU64,
    errors: AtomicU64,
    resyncs: AtomicU64,
    connects: AtomicU64,
}

impl FeedStatus {
    /// A feed of `kind` (`kafka`, `http`) that is stale after `stale_after` of silence.
    pub fn new(kind: &'static str, stale_after: Duration) -> Self {
        FeedStatus {
            kind,
            origin: Instant::now(),
            stale_after,
            warm: AtomicBool::new(false),
            last_record: AtomicU64::new(0),
            last_heartbeat: AtomicU64::new(0),
            last_lag_us: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            revoked: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            connects: AtomicU64::new(0),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    fn stamp(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn since(&self, at: &AtomicU64) -> Option<Duration> {
        match at.load(Ordering::Acquire) {
            0 => None,
            t => Some(Duration::from_micros(self.stamp().saturating_sub(t))),
        }
    }

    /// The feed has caught up with what its source held when it (re)started.
    pub fn set_warm(&self, warm: bool) {
        let was = self.warm.swap(warm, Ordering::AcqRel);
        if warm && !was {
            tracing::info!(feed = self.kind, "decision feed is warm");
        }
    }

    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Acquire)
    }

    /// The source answered (a heartbeat, a metadata response, a keep-alive event).
    pub fn heartbeat(&self) {
        self.last_heartbeat.store(self.stamp(), Ordering::Release);
    }

    /// Time since the last record, `None` before the first.
    pub fn since_record(&self) -> Option<Duration> {
        self.since(&self.last_record)
    }

    /// Time since the last heartbeat, `None` before the first.
    pub fn since_heartbeat(&self) -> Option<Duration> {
        self.since(&self.last_heartbeat)
    }

    /// Time since the source was last heard from (record or heartbeat); `None`: never.
    pub fn staleness(&self) -> Option<Duration> {
        match (self.since_record(), self.since_heartbeat()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Not warm yet, or silent for longer than `stale_after`.
    pub fn is_stale(&self) -> bool {
        !self.is_warm() || self.staleness().is_none_or(|s| s > self.stale_after)
    }

    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_invalid(&self) {
        self.invalid.fetch_add(1, Ordering::Relaxed);
        self.last_record.store(self.stamp(), Ordering::Release);
    }

    pub fn count_resync(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_connect(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    /// Records applied (decisions stored or replaced), revoked, ignored (older or expired),
    /// invalid; errors; full resyncs; (re)connections.
    pub fn counts(&self) -> FeedCounts {
        FeedCounts {
            applied: self.applied.load(Ordering::Relaxed),
            revoked: self.revoked.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
        }
    }

    /// Applies one change to `table` and accounts for it.
    pub fn apply(&self, table: &DecisionTable, change: FeedChange) {
        self.apply_at(table, change, UnixMicros::now());
    }

    pub(crate) fn apply_at(&self, table: &DecisionTable, change: FeedChange, now: UnixMicros) {
        self.last_record.store(self.stamp(), Ordering::Release);
        match change {
            FeedChange::Revoke(s) => {
                table.revoke(&s);
                self.revoked.fetch_add(1, Ordering::Relaxed);
            }
            FeedChange::Decision(d) => {
                let lag = now.0.saturating_sub(d.issued_at.0).max(0);
                self.last_lag_us
                    .store(u64::try_from(lag).unwrap_or(0), Ordering::Relaxed);
                match table.insert_at(Decision::clone(&d), now) {
                    Ok(Upsert::Inserted | Upsert::Replaced) => {
                        self.applied.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Upsert::Superseded | Upsert::Expired) => {
                        self.ignored.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        tracing::debug!(%error, feed = self.kind, "invalid decision on the feed");
                        self.invalid.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Reads one keyed record (the topic's shape): `value` `None` is a tombstone. The key
    /// must name the record's subject.
    pub fn apply_record(&self, table: &DecisionTable, key: Option<&[u8]>, value: Option<&[u8]>) {
        match parse_record(key, value) {
            Ok(c) => self.apply(table, c),
            Err(error) => {
                tracing::debug!(%error, feed = self.kind, "invalid record on the decision feed");
                self.count_invalid();
            }
        }
    }

    /// Appends this feed's Prometheus families to `out` (no per-subject labels).
    pub fn render_metrics(&self, out: &mut String) {
        let secs = |d: Option<Duration>| d.map_or(-1.0, |d| d.as_secs_f64());
        let kind = self.kind;
        let c = self.counts();
        let gauges: [(&str, &str, f64); 5] = [
            (
                "vigil_feed_warm",
                "Whether the decision feed has caught up with its source.",
                f64::from(u8::from(self.is_warm())),
            ),
            (
                "vigil_feed_stale",
                "Whether the decision feed is stale (the fail policy applies).",
                f64::from(u8::from(self.is_stale())),
            ),
            (
                "vigil_feed_seconds_since_record",
                "Seconds since the last record on the decision feed (-1: none yet).",
                secs(self.since_record()),
            ),
            (
                "vigil_feed_seconds_since_heartbeat",
                "Seconds since the decision feed's source last answered (-1: never).",
                secs(self.since_heartbeat()),
            ),
            (
                "vigil_feed_lag_seconds",
                "Age (now - issued_at) of the last decision when it was applied.",
                self.last_lag_us.load(Ordering::Relaxed) as f64 / 1e6,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{feed=\"{kind}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP vigil_feed_records_total Records read from the decision feed, by result.\n# TYPE vigil_feed_records_total counter"
        );
        for (result, n) in [
            ("applied", c.applied),
            ("revoked", c.revoked),
            ("ignored", c.ignored),
            ("invalid", c.invalid),
        ] {
            let _ = writeln!(
                out,
                "vigil_feed_records_total{{feed=\"{kind}\",result=\"{result}\"}} {n}"
            );
        }
        for (name, help, n) in [
            (
                "vigil_feed_errors_total",
                "Errors reading the decision feed.",
                c.errors,
            ),
            (
                "vigil_feed_resyncs_total",
                "Full snapshots received by the decision feed.",
                c.resyncs,
            ),
            (
                "vigil_feed_connects_total",
                "Connections (or restarts) of the decision feed.",
                c.connects,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{feed=\"{kind}\"}} {n}"
            );
        }
    }
}

/// Counters of a [`FeedStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedCounts {
    pub applied: u64,
    pub revoked: u64,
    pub ignored: u64,
    pub invalid: u64,
    pub errors: u64,
    pub resyncs: u64,
    pub connects: u64,
}

/// A keyed record as a change: the key is `kind:id`, a missing value is a tombstone, and a
/// decision's subject must be the key's.
pub fn parse_record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<FeedChange, crate::EnforceError> {
    use crate::EnforceError;
    let key = key
        .ok_or_else(|| EnforceError::InvalidDecision("record without a key".into()))
        .and_then(|k| {
            std::str::from_utf8(k)
                .map_err(|_| EnforceError::InvalidDecision("key is not UTF-8".into()))
        })?;
    let subject = Subject::from_key(key)?;
    match value {
        None => Ok(FeedChange::Revoke(subject)),
        Some(v) => {
            let d = Decision::from_json(v)?;
            if d.subject != subject {
                return Err(EnforceError::InvalidDecision(format!(
                    "key `{key}` does not match the decision's subject `{}`",
                    d.subject
                )));
            }
            Ok(FeedChange::Decision(std::sync::Arc::new(d)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Action, SubjectKind};

    #[test]
    fn records_tombstones_and_staleness() {
        let t = DecisionTable::new();
        let st = FeedStatus::new("test", Duration::from_millis(50));
        assert!(st.is_stale(), "stale until warm");
        let d = Decision::new(
            Subject::new(SubjectKind::Identity, "alice"),
            Action::Block,
            0.9,
            "rule",
            Duration::from_secs(60),
        );
        st.apply_record(&t, Some(b"identity:alice"), Some(d.to_json().as_bytes()));
        assert_eq!(t.len(), 1);
        // key and subject disagree: refused
        st.apply_record(&t, Some(b"identity:bob"), Some(d.to_json().as_bytes()));
        st.apply_record(&t, Some(b"nokind"), None);
        st.apply_record(&t, None, Some(b"{}"));
        st.apply_record(&t, Some(b"identity:alice"), Some(b"not json"));
        assert_eq!(st.counts().invalid, 4);
        st.set_warm(true);
        assert!(!st.is_stale());
        st.apply_record(&t, Some(b"identity:alice"), None);
        assert!(t.is_empty());
        let c = st.counts();
        assert_eq!((c.applied, c.revoked), (1, 1));
        std::thread::sleep(Duration::from_millis(80));
        assert!(st.is_stale(), "silent for longer than stale_after");
        st.heartbeat();
        assert!(!st.is_stale());
        let mut m = String::new();
        st.render_metrics(&mut m);
        assert!(m.contains("vigil_feed_warm{feed=\"test\"} 1"), "{m}");
        assert!(m.contains("vigil_feed_records_total{feed=\"test\",result=\"invalid\"} 4"));
    }
}
