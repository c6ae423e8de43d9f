//! The decision table: the current decision of every subject, read on every request.
//!
//! Built on [`papaya::HashMap`], a lock-free concurrent hash map: readers never take a lock
//! and never wait for writers (entries are reclaimed by epoch-based reclamation), writers do
//! not block readers, and it is actively maintained. `dashmap` locks shards for reads, and an
//! `arc-swap`ped immutable map would copy the whole table (a million entries) per update.
//! The map's hasher is the standard library's keyed SipHash: subject ids come from clients,
//! so a fixed-key hash would invite collision flooding.
//!
//! Guarantees:
//! - an expired decision is never returned, even before the sweeper removes it;
//! - a decision older (by `issued_at`) than the one held for its subject is ignored, so a
//!   replayed feed cannot resurrect a superseded decision;
//! - [`DecisionTable::evaluate`] returns the strictest live decision of the request's subjects,
//!   except that any live allow-list entry wins.

use crate::decision::{Action, Decision, Subject, UnixMicros};
use crate::error::EnforceError;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the table says about one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The action to apply (`Allow` when no decision applies).
    pub action: Action,
    /// The decision that produced the action, if any.
    pub decision: Option<Arc<Decision>>,
}

impl Verdict {
    /// No decision applies.
    pub fn allow() -> Self {
        Verdict {
            action: Action::Allow,
            decision: None,
        }
    }

    pub fn from_decision(d: Arc<Decision>) -> Self {
        Verdict {
            action: d.action,
            decision: Some(d),
        }
    }
}

/// What [`DecisionTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Inserted,
    Replaced,
    /// A newer decision for the subject is already held; this one was ignored.
    Superseded,
    /// The decision had already expired; ignored.
    Expired,
}

/// The concurrent table of current decisions, keyed by subject.
#[derive(Debug, Default)]
pub struct DecisionTable {
    map: papaya::HashMap<Subject, Arc<Decision>>,
}

impl DecisionTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// A table sized for `n` decisions up front (no resizing while it fills).
    pub fn with_capacity(n: usize) -> Self {
        DecisionTable {
            map: papaya::HashMap::with_capacity(n),
        }
    }

    /// Validates and stores `d`, replacing the subject's older decision.
    pub fn insert(&self, d: Decision) -> Result<Upsert, EnforceError> {
        self.insert_at(d, UnixMicros::now())
    }

    /// [`insert`](Self::insert) with an explicit clock.
    pub fn insert_at(&self, d: Decision, now: UnixMicros) -> Result<Upsert, EnforceError> {
        d.validate()?;
        if d.expires_at <= now {
            return Ok(Upsert::Expired);
        }
        let key = d.subject.clone();
        let new = Arc::new(d);
        let map = self.map.pin();
        let r = map.compute(key, |cur| match cur {
            // a newer decision replaces an older one, except that a live allow-list entry is
            // replaced only by another allow-list entry (or removed by a revoke)
            Some((_, old))
                if old.expires_at > now
                    && (old.issued_at > new.issued_at || (old.allow_list && !new.allow_list)) =>
            {
                papaya::Operation::Abort(())
            }
            _ => papaya::Operation::Insert(Arc::clone(&new)),
        });
        Ok(match r {
            papaya::Compute::Inserted(..) => Upsert::Inserted,
            papaya::Compute::Updated { .. } => Upsert::Replaced,
            _ => Upsert::Superseded,
        })
    }

    /// Removes the subject's decision (a tombstone on the feed, a manual revoke).
    pub fn revoke(&self, subject: &Subject) -> Option<Arc<Decision>> {
        self.map.pin().remove(subject).cloned()
    }

    /// [`revoke`](Self::revoke) by `kind:id` key.
    pub fn revoke_key(&self, key: &str) -> Result<Option<Arc<Decision>>, EnforceError> {
        Ok(self.revoke(&Subject::from_key(key)?))
    }

    /// The subject's live decision.
    pub fn get(&self, subject: &Subject) -> Option<Arc<Decision>> {
        self.get_at(subject, UnixMicros::now())
    }

    pub fn get_at(&self, subject: &Subject, now: UnixMicros) -> Option<Arc<Decision>> {
        self.map
            .pin()
            .get(subject)
            .filter(|d| d.is_live(now))
            .cloned()
    }

    /// The verdict for a request touching `subjects`.
    pub fn evaluate(&self, subjects: &[Subject]) -> Verdict {
        self.evaluate_at(subjects, UnixMicros::now())
    }

    pub fn evaluate_at(&self, subjects: &[Subject], now: UnixMicros) -> Verdict {
        let map = self.map.pin();
        let mut best: Option<&Arc<Decision>> = None;
        for s in subjects {
            let Some(d) = map.get(s).filter(|d| d.is_live(now)) else {
                continue;
            };
            if d.allow_list {
                return Verdict::from_decision(Arc::clone(d));
            }
            best = match best {
                Some(b) if (b.action, b.score) >= (d.action, d.score) => Some(b),
                _ => Some(d),
            };
        }
        best.map_or_else(Verdict::allow, |d| Verdict::from_decision(Arc::clone(d)))
    }

    /// Removes decisions that expired before `now`; returns how many.
    pub fn sweep(&self, now: UnixMicros) -> usize {
        let map = self.map.pin();
        let before = map.len();
        map.retain(|_, d| d.expires_at > now);
        before.saturating_sub(map.len())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every decision live at `now` (a consistent-enough copy for a feed snapshot: entries
    /// changed while it is taken may appear in either state).
    pub fn snapshot_at(&self, now: UnixMicros) -> Vec<Arc<Decision>> {
        let map = self.map.pin();
        let mut out = Vec::with_capacity(map.len());
        out.extend(map.values().filter(|d| d.is_live(now)).cloned());
        out
    }

    /// Keeps only the decisions for which `keep` is true; returns how many were removed.
    pub fn retain(&self, mut keep: impl FnMut(&Subject, &Decision) -> bool) -> usize {
        let map = self.map.pin();
        let before = map.len();
        map.retain(|s, d| keep(s, d));
        before.saturating_sub(map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sweeps every `interval` (or less often, see below) until `shutdown` is cancelled. Run
    /// it in the owner's task set.
    ///
    /// A sweep walks the whole table (a million decisions take tens of milliseconds), so it
    /// runs on the blocking pool, never on an async worker where it would stall requests, and
    /// the next sweep waits at least 100 times as long as the last one took: sweeping costs at
    /// most about 1% of one core. Expired decisions are never returned in between; the sweep
    /// only gives their memory back.
    pub async fn run_sweeper(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let interval = interval.max(Duration::from_millis(10));
        let mut wait = interval;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let table = self.clone();
            let started = std::time::Instant::now();
            let n = tokio::task::spawn_blocking(move || table.sweep(UnixMicros::now()))
                .await
                .unwrap_or(0);
            let took = started.elapsed();
            wait = interval.max(took * 100);
            if n > 0 {
                tracing::debug!(
                    removed = n,
                    held = self.len(),
                    ?took,
                    "expired decisions swept"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::SubjectKind;

    fn dec(kind: SubjectKind, id: &str, action: Action, score: f64, ttl_s: u64) -> Decision {
        Decision::new(
            Subject::new(kind, id),
            action,
            score,
            "rule",
            Duration::from_secs(ttl_s),
        )
    }

    #[test]
    fn strictest_wins_and_allow_list_overrides() {
        let t = DecisionTable::new();
        t.insert(dec(SubjectKind::Ip, "1.2.3.4", Action::Throttle, 0.6, 60))
            .unwrap();
        t.insert(dec(SubjectKind::Identity, "alice", Action::Block, 0.9, 60))
            .unwrap();
        t.insert(dec(SubjectKind::Session, "s1", Action::Monitor, 0.3, 60))
            .unwrap();
        let subs = [
            Subject::new(SubjectKind::Ip, "1.2.3.4"),
            Subject::new(SubjectKind::Identity, "alice"),
            Subject::new(SubjectKind::Session, "s1"),
        ];
        let v = t.evaluate(&subs);
        assert_eq!(v.action, Action::Block);
        assert_eq!(v.decision.unwrap().subject.id, "alice");
        assert_eq!(t.evaluate(&subs[2..]).action, Action::Monitor);
        assert_eq!(
            t.evaluate(&[Subject::new(SubjectKind::Ip, "9.9.9.9")]),
            Verdict::allow()
        );
        // an allow-list entry on any subject of the request wins over a block on another
        t.insert(Decision::allow_list(
            Subject::new(SubjectKind::Session, "s1"),
            "manual",
            Duration::from_secs(60),
        ))
        .unwrap();
        let v = t.evaluate(&subs);
        assert_eq!(v.action, Action::Allow);
        assert!(v.decision.unwrap().allow_list);
        // a later automatic decision does not replace a live allow-list entry; a revoke ends it
        let s1 = Subject::new(SubjectKind::Session, "s1");
        let later = dec(SubjectKind::Session, "s1", Action::Block, 0.9, 60);
        assert_eq!(t.insert(later.clone()).unwrap(), Upsert::Superseded);
        assert!(t.get(&s1).unwrap().allow_list);
        t.revoke(&s1);
        assert_eq!(t.insert(later).unwrap(), Upsert::Inserted);
        assert_eq!(t.get(&s1).unwrap().action, Action::Block);
    }

    #[test]
    fn expiry_replacement_and_revoke() {
        let t = DecisionTable::new();
        let s = Subject::new(SubjectKind::Identity, "bob");
        let d = dec(SubjectKind::Identity, "bob", Action::Block, 0.9, 60);
        let issued = d.issued_at;
        assert_eq!(t.insert(d.clone()).unwrap(), Upsert::Inserted);
        // expired on read, before any sweep
        let later = issued.plus(Duration::from_secs(61));
        assert!(t.get_at(&s, later).is_none());
        assert_eq!(
            t.evaluate_at(std::slice::from_ref(&s), later).action,
            Action::Allow
        );
        // an older decision does not replace a newer one
        let mut older = dec(SubjectKind::Identity, "bob", Action::Allow, 0.0, 600);
        older.issued_at = UnixMicros(issued.0 - 1_000_000);
        assert_eq!(t.insert(older).unwrap(), Upsert::Superseded);
        assert_eq!(t.get(&s).unwrap().action, Action::Block);
        // a newer one does
        let mut newer = dec(SubjectKind::Identity, "bob", Action::Monitor, 0.4, 600);
        newer.issued_at = UnixMicros(issued.0 + 1);
        assert_eq!(t.insert(newer).unwrap(), Upsert::Replaced);
        assert_eq!(t.get(&s).unwrap().action, Action::Monitor);
        assert_eq!(
            t.revoke_key("identity:bob").unwrap().unwrap().action,
            Action::Monitor
        );
        assert!(t.get(&s).is_none());
        // already expired: not stored
        let mut gone = dec(SubjectKind::Ip, "5.5.5.5", Action::Block, 1.0, 1);
        gone.issued_at = UnixMicros(0);
        gone.expires_at = UnixMicros(1);
        assert_eq!(t.insert(gone).unwrap(), Upsert::Expired);
        // invalid: rejected
        let mut bad = dec(SubjectKind::Ip, "5.5.5.5", Action::Block, f64::NAN, 1);
        bad.score = f64::NAN;
        assert!(t.insert(bad).is_err());
    }

    #[test]
    fn sweep_removes_only_expired() {
        let t = DecisionTable::new();
        for i in 0..100 {
            t.insert(dec(
                SubjectKind::Ip,
                &format!("10.0.0.{i}"),
                Action::Block,
                1.0,
                1 + i % 2,
            ))
            .unwrap();
        }
        let now = UnixMicros::now().plus(Duration::from_millis(1500));
        assert_eq!(t.sweep(now), 50);
        assert_eq!(t.len(), 50);
    }

    /// Resident memory of this process in bytes (Linux), for the capacity test.
    fn rss_bytes() -> Option<u64> {
        let s = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }

    #[test]
    fn holds_a_million_decisions() {
        let before = rss_bytes();
        let t = DecisionTable::with_capacity(1_000_000);
        let now = UnixMicros::now();
        for i in 0..1_000_000u32 {
            let mut d = dec(
                SubjectKind::Ip,
                &std::net::Ipv4Addr::from(i).to_string(),
                Action::Block,
                0.9,
                600,
            );
            d.reasons.push("rule:test".into());
            t.insert_at(d, now).unwrap();
        }
        assert_eq!(t.len(), 1_000_000);
        let v = t.evaluate(&[Subject::new(SubjectKind::Ip, "0.0.1.0")]);
        assert_eq!(v.action, Action::Block);
        if let (Some(b), Some(a)) = (before, rss_bytes()) {
            let per = a.saturating_sub(b) / 1_000_000;
            eprintln!("decision table: {per} bytes of resident memory per decision");
            // measured about 530 bytes per decision (record, key, map slot); keep headroom
            assert!(per < 1024, "{per} bytes per decision");
        }
    }
}
