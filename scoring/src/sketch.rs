//! Small fixed-size sketches for per-subject state: a windowed distinct-count estimate and a
//! membership filter. Both are a few machine words, so a million subjects fit in memory.

/// How many low bits of a value's hash the sketches read: six pick a distinct bitmap's bit,
/// twelve the membership filter's two probes. A subject seen once keeps no more of them.
pub const HASH_BITS_READ: u32 = 12;

/// Distinct values of `N` kinds seen over a sliding window, each estimated by linear counting
/// on two 64-bit bitmaps: the current half-window and the previous one (so the estimate covers
/// between half a window and a whole one). Close to exact up to ~20 values; it saturates near
/// 250, far above what rules compare against. `4 + 16 * N` bytes: the bitmaps are kept as
/// 32-bit halves and the epoch in 32 bits (as the attack classes' epochs), so two of these sit
/// in a subject's state without padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowedDistinct<const N: usize> {
    /// Half-window epoch of `cur` (`t_us / half_us`, truncated to 32 bits: a 1-second window's
    /// half-windows stay in range until 2038, a minute's for millennia).
    epoch: i32,
    cur: [Bits; N],
    prev: [Bits; N],
}

/// A 64-bit map as two 32-bit words (4-byte aligned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bits([u32; 2]);

impl Bits {
    fn get(self) -> u64 {
        u64::from(self.0[0]) | (u64::from(self.0[1]) << 32)
    }

    fn set(&mut self, bit: u32) {
        self.0[(bit >> 5) as usize] |= 1 << (bit & 31);
    }
}

impl<const N: usize> Default for WindowedDistinct<N> {
    fn default() -> Self {
        Self {
            epoch: i32::MIN,
            cur: [Bits::default(); N],
            prev: [Bits::default(); N],
        }
    }
}

impl<const N: usize> WindowedDistinct<N> {
    fn epoch_at(t_us: i64, half_us: i64) -> i32 {
        t_us.div_euclid(half_us) as i32
    }

    fn roll(&mut self, epoch: i32) {
        if epoch > self.epoch {
            self.prev = if epoch == self.epoch.wrapping_add(1) {
                self.cur
            } else {
                [Bits::default(); N]
            };
            self.cur = [Bits::default(); N];
            self.epoch = epoch;
        }
    }

    /// Adds a value (by its hash) of kind `slot` seen at `t_us`, for a window of `2 * half_us`.
    pub fn add(&mut self, slot: usize, hash: u64, t_us: i64, half_us: i64) {
        let epoch = Self::epoch_at(t_us, half_us);
        self.roll(epoch);
        let bit = (hash & 63) as u32;
        if epoch == self.epoch {
            self.cur[slot].set(bit);
        } else if epoch == self.epoch.wrapping_sub(1) {
            // a late event within the previous half-window
            self.prev[slot].set(bit);
        }
    }

    /// The estimate for `slot` at `t_us` (values older than the window are forgotten).
    pub fn estimate(&self, slot: usize, t_us: i64, half_us: i64) -> f64 {
        let epoch = Self::epoch_at(t_us, half_us);
        let bits = if epoch == self.epoch {
            self.cur[slot].get() | self.prev[slot].get()
        } else if epoch == self.epoch.wrapping_add(1) {
            self.cur[slot].get()
        } else {
            0
        };
        linear_count(bits)
    }
}

/// Linear counting (Whang et al.) on a 64-bit map.
fn linear_count(bits: u64) -> f64 {
    let m: f64 = 64.0;
    let zeros = f64::from(bits.count_zeros());
    if zeros == 0.0 {
        // saturated: the largest value the map can tell
        return m * m.ln();
    }
    -m * (zeros / m).ln()
}

/// A 64-bit Bloom filter with two probes: "have we seen this value for this subject?".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen(u64);

impl Seen {
    fn mask(hash: u64) -> u64 {
        (1u64 << (hash & 63)) | (1u64 << ((hash >> 6) & 63))
    }

    /// Records `hash`; true when it was (probably) not seen before.
    pub fn insert(&mut self, hash: u64) -> bool {
        let m = Self::mask(hash);
        let new = self.0 & m != m;
        self.0 |= m;
        new
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes())
    }

    #[test]
    fn distinct_counts_and_forgets() {
        let half = 30_000_000; // 1 min window
        let mut d = WindowedDistinct::<2>::default();
        for i in 0..10 {
            d.add(0, h(i), 1_000_000 * i as i64, half);
        }
        let e = d.estimate(0, 10_000_000, half);
        assert!((8.0..=12.5).contains(&e), "{e}");
        assert_eq!(d.estimate(1, 10_000_000, half), 0.0, "slots are separate");
        // the same values again do not count twice
        for i in 0..10 {
            d.add(0, h(i), 11_000_000, half);
        }
        assert!((d.estimate(0, 11_000_000, half) - e).abs() < 1e-9);
        // two windows later, all forgotten
        assert_eq!(d.estimate(0, 200_000_000, half), 0.0);
        let mut many = WindowedDistinct::<1>::default();
        for i in 0..1000 {
            many.add(0, h(i), 0, half);
        }
        assert!(many.estimate(0, 0, half) > 200.0);
    }

    #[test]
    fn bitmaps_keep_all_64_bits() {
        let half = 30_000_000;
        let mut d = WindowedDistinct::<1>::default();
        // hashes whose low six bits are 0..63: every bit of the map, once
        for b in 0..64u64 {
            d.add(0, b, 0, half);
        }
        assert_eq!(d.estimate(0, 0, half), 64.0 * 64f64.ln(), "saturated");
        let mut one = WindowedDistinct::<1>::default();
        one.add(0, 63, 0, half);
        one.add(0, 31, 0, half);
        one.add(0, 32, 0, half);
        let e = one.estimate(0, 0, half);
        assert!((e - -64.0 * (61f64 / 64.0).ln()).abs() < 1e-9, "{e}");
    }

    #[test]
    fn only_the_low_hash_bits_are_read() {
        let half = 30_000_000;
        let high = !0u64 << HASH_BITS_READ;
        let (mut a, mut b) = (
            WindowedDistinct::<1>::default(),
            WindowedDistinct::<1>::default(),
        );
        let (mut sa, mut sb) = (Seen::default(), Seen::default());
        for i in 0..40 {
            let v = h(i);
            a.add(0, v, 0, half);
            b.add(0, v & !high, 0, half);
            assert_eq!(sa.insert(v), sb.insert(v & !high));
        }
        assert_eq!((a, sa), (b, sb));
    }

    #[test]
    fn seen_filter() {
        let mut s = Seen::default();
        assert!(s.insert(h(1)));
        assert!(!s.insert(h(1)));
        assert!(s.insert(h(2)));
    }
}
