//! Per-subject token buckets for `throttle` decisions, as a lock-free GCRA (generic cell rate
//! algorithm: one atomic "theoretical arrival time" per subject, no refill task).
//!
//! A subject throttled at `r` requests/s may burst `max(1, ceil(r))` requests, then gets one
//! request every `1/r` s. Buckets that have fully refilled carry no state and are swept.

use crate::decision::Subject;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Bucket {
    /// Theoretical arrival time, in ns since the limiter's epoch.
    tat_ns: AtomicU64,
}

/// The token buckets of all throttled subjects.
#[derive(Debug)]
pub struct Throttle {
    epoch: Instant,
    buckets: papaya::HashMap<Subject, Bucket>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

impl Throttle {
    pub fn new() -> Self {
        Throttle {
            epoch: Instant::now(),
            buckets: papaya::HashMap::new(),
        }
    }

    fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes one token from `subject`'s bucket at `rps`. `Err(retry_after)` when empty.
    pub fn check(&self, subject: &Subject, rps: f64, now: Instant) -> Result<(), Duration> {
        let rps = if rps.is_finite() { rps.max(0.001) } else { 1.0 };
        let interval = (1e9 / rps) as u64;
        let burst = rps.ceil().max(1.0) as u64;
        let tolerance = interval.saturating_mul(burst - 1);
        let t = self.ns(now);
        let buckets = self.buckets.pin();
        let bucket = match buckets.get(subject) {
            Some(b) => b,
            None => buckets.get_or_insert(
                subject.clone(),
                Bucket {
                    tat_ns: AtomicU64::new(0),
                },
            ),
        };
        let mut tat = bucket.tat_ns.load(Ordering::Acquire);
        loop {
            let base = tat.max(t);
            if base - t > tolerance {
                return Err(Duration::from_nanos(base - t - tolerance));
            }
            match bucket.tat_ns.compare_exchange_weak(
                tat,
                base.saturating_add(interval),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(cur) => tat = cur,
            }
        }
    }

    /// Removes buckets that have fully refilled by `now` (they hold no information).
    pub fn sweep(&self, now: Instant) -> usize {
        let t = self.ns(now);
        let b = self.buckets.pin();
        let before = b.len();
        b.retain(|_, v| v.tat_ns.load(Ordering::Acquire) > t);
        before.saturating_sub(b.len())
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::SubjectKind;

    #[test]
    fn bucket_empties_and_refills() {
        let th = Throttle::new();
        let s = Subject::new(SubjectKind::Ip, "1.2.3.4");
        let t0 = Instant::now();
        // 2 rps: burst of 2, then one every 500 ms
        assert!(th.check(&s, 2.0, t0).is_ok());
        assert!(th.check(&s, 2.0, t0).is_ok());
        let wait = th.check(&s, 2.0, t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        assert!(th.check(&s, 2.0, t0 + Duration::from_millis(500)).is_ok());
        // another subject has its own bucket
        assert!(
            th.check(&Subject::new(SubjectKind::Ip, "5.6.7.8"), 2.0, t0)
                .is_ok()
        );
        assert_eq!(th.len(), 2);
        assert_eq!(th.sweep(t0 + Duration::from_secs(5)), 2);
        assert!(th.is_empty());
        // slow rates: the wait is long
        let slow = Subject::new(SubjectKind::Identity, "x");
        assert!(th.check(&slow, 0.1, t0).is_ok());
        assert_eq!(retry_after_secs(th.check(&slow, 0.1, t0).unwrap_err()), 10);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
