//! A per-thread memory of request parts that were inspected and found clean.
//!
//! An access log repeats itself: a few dozen user agents and referers, and the same paths and
//! parameters (`page=2`, `lang=en`), make up most of its lines. Inspecting a part is a pure
//! function of the detectors and the part's bytes, so a part seen clean once is clean every
//! time; [`Detectors::inspect`](crate::Detectors::inspect) asks this memo before inspecting a
//! part and skips the ones it remembers.
//!
//! Guarantees:
//!
//! * **Exact.** An entry answers only for the same detectors instance, the same kind of part
//!   and the same bytes, compared byte for byte; the hash only picks the slot. Only clean
//!   outcomes are stored, so a part with any finding is inspected in full every time.
//! * **Bounded.** [`SLOTS`] direct-mapped slots per thread, each holding one key of at most
//!   [`MAX_KEY_BYTES`] bytes (longer parts are never stored): at most about 1.1 MiB per thread
//!   that inspects requests, allocated on first use. A new key replaces whatever held its slot.
//! * **Private to a thread**, so it needs no lock; the parsing threads and the proxy's workers
//!   each warm their own.

use std::cell::RefCell;
use std::hash::BuildHasher;

/// Slots per thread: a few thousand distinct clean parts fit, far more than the popular user
/// agents and referers of a site, so those stay put while unique paths come and go.
pub(crate) const SLOTS: usize = 2048;

/// Parts longer than this are inspected every time: they are rare in ordinary traffic, and
/// storing them would let a few long keys make up most of the memo's memory.
pub(crate) const MAX_KEY_BYTES: usize = 512;

/// The kinds of request part inspected as one unit. A part's bytes are inspected differently
/// depending on its kind (a string clean as a referer can be an attack as a path), so the kind
/// is part of every key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The raw path: decoded, matched, checked for XSS, its decoding anomalies reported.
    Path = 1,
    /// One raw `name=value` pair of the query.
    Param = 2,
    /// The raw target, or a separately logged query, decoded and matched as a whole URI.
    Uri = 3,
    /// The `User-Agent` header as logged.
    UserAgent = 4,
    /// The `Referer` header as logged (before decoding).
    Referer = 5,
}

/// A key located in the memo: its hash and slot, computed once for the lookup and the store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    hash: u64,
    slot: usize,
}

#[derive(Debug, Default)]
struct Slot {
    hash: u64,
    /// The [`Detectors`](crate::Detectors) instance's id; 0 in an empty slot (ids start at 1).
    owner: u64,
    part: u8,
    key: Box<[u8]>,
}

/// A fixed number of slots, each remembering one clean part.
#[derive(Debug)]
pub(crate) struct CleanMemo {
    seed: u64,
    slots: Vec<Slot>,
}

impl CleanMemo {
    /// An empty memo of `slots` slots (rounded up to a power of two), with a hash seed of its
    /// own so that nobody outside can aim keys at one slot to keep a popular entry out.
    pub(crate) fn new(slots: usize) -> CleanMemo {
        CleanMemo {
            seed: std::hash::RandomState::new().hash_one(0x5eed_u64),
            slots: (0..slots.next_power_of_two())
                .map(|_| Slot::default())
                .collect(),
        }
    }

    /// Where `key` of `part` for detectors `owner` lives, or `None` when it is too long to
    /// be remembered.
    pub(crate) fn probe(&self, owner: u64, part: Part, key: &[u8]) -> Option<Probe> {
        if key.len() > MAX_KEY_BYTES {
            return None;
        }
        let hash = hash_key(self.seed ^ owner, part, key);
        // The slot count is a power of two: the hash's high bits, masked, pick the slot.
        let slot = (hash >> 32) as usize & (self.slots.len() - 1);
        Some(Probe { hash, slot })
    }

    /// Whether `key` was remembered as clean for `owner` and `part`.
    pub(crate) fn is_clean(&self, probe: Probe, owner: u64, part: Part, key: &[u8]) -> bool {
        let s = &self.slots[probe.slot];
        s.hash == probe.hash && s.owner == owner && s.part == part as u8 && *s.key == *key
    }

    /// Remembers `key` as clean, replacing the slot's previous key.
    pub(crate) fn remember_clean(&mut self, probe: Probe, owner: u64, part: Part, key: &[u8]) {
        let s = &mut self.slots[probe.slot];
        s.hash = probe.hash;
        s.owner = owner;
        s.part = part as u8;
        if s.key.len() != key.len() {
            s.key = key.into();
        } else {
            s.key.copy_from_slice(key);
        }
    }

    /// Bytes of keys held, for the tests that check the bound.
    #[cfg(test)]
    pub(crate) fn key_bytes(&self) -> usize {
        self.slots.iter().map(|s| s.key.len()).sum()
    }

    /// How many slots hold a key.
    #[cfg(test)]
    pub(crate) fn occupied(&self) -> usize {
        self.slots.iter().filter(|s| s.owner != 0).count()
    }
}

thread_local! {
    static MEMO: RefCell<CleanMemo> = RefCell::new(CleanMemo::new(SLOTS));
}

/// Runs `f` on this thread's memo.
pub(crate) fn with<R>(f: impl FnOnce(&mut CleanMemo) -> R) -> R {
    MEMO.with(|m| f(&mut m.borrow_mut()))
}

/// Swaps this thread's memo for `memo` (tests use a one-slot memo to force collisions).
#[cfg(test)]
pub(crate) fn replace(memo: CleanMemo) -> CleanMemo {
    MEMO.with(|m| m.replace(memo))
}

/// A fast keyed hash: 16 bytes a step, the two words multiplied into a 128-bit product whose
/// halves are folded together. Neither cryptographic nor needed to be: a collision only costs
/// a slot, since keys are compared in full, and the per-thread seed (in both factors) keeps
/// outsiders from choosing collisions.
fn hash_key(seed: u64, part: Part, key: &[u8]) -> u64 {
    const K0: u64 = 0x9e37_79b9_7f4a_7c15;
    const K1: u64 = 0xd6e8_feb8_6659_fd93;
    let secret = fold_mul(seed ^ K1, K0);
    let mut h = fold_mul(seed ^ K0, (part as u64) << 32 ^ key.len() as u64 ^ K1);
    let mut pairs = key.chunks_exact(16);
    for p in &mut pairs {
        h = fold_mul(h ^ word(&p[..8]), secret ^ word(&p[8..]));
    }
    let rest = pairs.remainder();
    let (a, b) = rest.split_at(rest.len().min(8));
    fold_mul(h ^ word(a), secret ^ word(b) ^ K1)
}

/// Up to 8 bytes as a little-endian word, zero-padded.
fn word(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(buf)
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_exact_keys_only() {
        let mut m = CleanMemo::new(64);
        let ua = b"Mozilla/5.0 (X11; Linux x86_64)";
        let p = m.probe(1, Part::UserAgent, ua).expect("short key");
        assert!(!m.is_clean(p, 1, Part::UserAgent, ua));
        m.remember_clean(p, 1, Part::UserAgent, ua);
        assert!(m.is_clean(p, 1, Part::UserAgent, ua));
        // another owner, another kind of part, or one byte more: not remembered
        for (owner, part, key) in [
            (2, Part::UserAgent, &ua[..]),
            (1, Part::Referer, &ua[..]),
            (1, Part::UserAgent, &b"Mozilla/5.0 (X11; Linux x86_64)!"[..]),
            (1, Part::UserAgent, &ua[..ua.len() - 1]),
        ] {
            let q = m.probe(owner, part, key).expect("short key");
            assert!(!m.is_clean(q, owner, part, key), "{owner} {part:?}");
        }
    }

    #[test]
    fn one_slot_holds_the_latest_key() {
        let mut m = CleanMemo::new(1);
        let (a, b) = (&b"curl/8.5.0"[..], &b"okhttp/4.12"[..]);
        let pa = m.probe(1, Part::UserAgent, a).expect("short key");
        let pb = m.probe(1, Part::UserAgent, b).expect("short key");
        m.remember_clean(pa, 1, Part::UserAgent, a);
        m.remember_clean(pb, 1, Part::UserAgent, b);
        assert!(!m.is_clean(pa, 1, Part::UserAgent, a));
        assert!(m.is_clean(pb, 1, Part::UserAgent, b));
        // a probe of a's hash cannot vouch for b's bytes, even in the same slot
        assert!(!m.is_clean(pa, 1, Part::UserAgent, b));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut m = CleanMemo::new(SLOTS);
        let long = vec![b'a'; MAX_KEY_BYTES + 1];
        assert!(m.probe(1, Part::Referer, &long).is_none());
        for i in 0..20 * SLOTS {
            let key = format!("{i:0>width$}", width = 64 + i % (MAX_KEY_BYTES - 64));
            let p = m.probe(1, Part::Path, key.as_bytes()).expect("short key");
            m.remember_clean(p, 1, Part::Path, key.as_bytes());
        }
        assert!(m.occupied() <= SLOTS);
        assert!(m.occupied() > SLOTS / 2, "{} slots used", m.occupied());
        assert!(m.key_bytes() <= SLOTS * MAX_KEY_BYTES, "{}", m.key_bytes());
    }

    #[test]
    fn hash_spreads_similar_keys() {
        let m = CleanMemo::new(SLOTS);
        let mut used = vec![false; SLOTS];
        for i in 0..SLOTS {
            let key = format!("/api/v1/users/{i}/orders");
            used[m.probe(1, Part::Path, key.as_bytes()).expect("short").slot] = true;
        }
        // random placement fills about 1 - 1/e of the slots
        let filled = used.iter().filter(|u| **u).count();
        assert!(filled > SLOTS / 2, "{filled} of {SLOTS}");
    }
}
