//! Small fixed-size sketches for per-subject state: a windowed distinct-count estimate and a
//! membership filter. Both are a few machine words, so a million subjects fit in memory.

/// How many low bits of a value's hash the sketches read: five pick a distinct bitmap's bit,
/// fourteen the membership filter's two probes. A subject seen once keeps no more of them.
pub const HASH_BITS_READ: u32 = 14;

/// Distinct values of `N` kinds seen over a sliding window, each estimated by linear counting
/// on two 32-bit bitmaps: the current half-window and the previous one (so the estimate covers
/// between half a window and a whole one). `4 + 8 * N` bytes.
///
/// Close to exact for a handful of values; at 10 the estimate's standard error is about 1.3,
/// at 25 about 3.6, where it also reads a little high (25.7 on average); 64-bit maps, at twice
/// the bytes, give 0.9 and 2.4. It saturates at `32 ln 32`, about 111. Rules compare distinct
/// counts against 2 to 25.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowedDistinct<const N: usize> {
    /// Half-window epoch of `cur` (`t_us / half_us`, truncated to 32 bits: a 1-second window's
    /// half-windows stay in range until 2038, a minute's for millennia).
    epoch: i32,
    cur: [u32; N],
    prev: [u32; N],
}

impl<const N: usize> Default for WindowedDistinct<N> {
    fn default() -> Self {
        Self {
            epoch: i32::MIN,
            cur: [0; N],
            prev: [0; N],
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
                [0; N]
            };
            self.cur = [0; N];
            self.epoch = epoch;
        }
    }

    /// Adds a value (by its hash) of kind `slot` seen at `t_us`, for a window of `2 * half_us`.
    pub fn add(&mut self, slot: usize, hash: u64, t_us: i64, half_us: i64) {
        let epoch = Self::epoch_at(t_us, half_us);
        self.roll(epoch);
        let bit = 1 << (hash & 31);
        if epoch == self.epoch {
            self.cur[slot] |= bit;
        } else if epoch == self.epoch.wrapping_sub(1) {
            // a late event within the previous half-window
            self.prev[slot] |= bit;
        }
    }

    /// The estimate for `slot` at `t_us` (values older than the window are forgotten).
    pub fn estimate(&self, slot: usize, t_us: i64, half_us: i64) -> f64 {
        let epoch = Self::epoch_at(t_us, half_us);
        let bits = if epoch == self.epoch {
            self.cur[slot] | self.prev[slot]
        } else if epoch == self.epoch.wrapping_add(1) {
            self.cur[slot]
        } else {
            0
        };
        linear_count(bits)
    }
}

/// Linear counting (Whang et al.) on a 32-bit map: the estimate depends only on the number
/// of bits set, so it is read from a table of the 33 possible ones (a logarithm per estimate
/// was a percent of the scoring thread).
fn linear_count(bits: u32) -> f64 {
    static ESTIMATES: std::sync::LazyLock<[f64; 33]> =
        std::sync::LazyLock::new(|| std::array::from_fn(|zeros| linear_count_of(zeros as u32)));
    ESTIMATES[bits.count_zeros() as usize]
}

fn linear_count_of(zeros: u32) -> f64 {
    let m: f64 = 32.0;
    if zeros == 0 {
        // saturated: the largest value the map can tell
        return m * m.ln();
    }
    -m * (f64::from(zeros) / m).ln()
}

/// A 128-bit Bloom filter with two probes: "has this subject used this value before?", for
/// values of a few kinds (a person's addresses, user agents and devices) in one filter: each
/// kind's probes are moved by its own salt. With six values in all, a new one passes for seen
/// about once in 120 (three 64-bit filters of two values each, 24 bytes: once in 270).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen([u64; 2]);

/// Salts of the value kinds of a [`Seen`] (14-bit, so every probe bit differs).
const SALTS: [u64; 4] = [0, 0x2b5d, 0x1c93, 0x36e7];

impl Seen {
    fn probes(kind: usize, hash: u64) -> [u32; 2] {
        let h = hash ^ SALTS[kind % SALTS.len()];
        [(h & 127) as u32, ((h >> 7) & 127) as u32]
    }

    /// Records `hash`, a value of kind `kind` (0 to 3); true when it was (probably) not seen
    /// before.
    pub fn insert(&mut self, kind: usize, hash: u64) -> bool {
        let mut new = false;
        for p in Self::probes(kind, hash) {
            let (word, bit) = ((p >> 6) as usize, 1u64 << (p & 63));
            new |= self.0[word] & bit == 0;
            self.0[word] |= bit;
        }
        new
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 2]
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
        assert!(many.estimate(0, 0, half) > 100.0, "saturated");
    }

    #[test]
    fn the_estimate_table_is_linear_counting() {
        for ones in 0..=32u32 {
            let bits = if ones == 32 {
                u32::MAX
            } else {
                (1u32 << ones) - 1
            };
            let zeros = f64::from(32 - ones);
            let expected = if ones == 32 {
                32.0 * 32f64.ln()
            } else {
                -32.0 * (zeros / 32.0).ln()
            };
            assert_eq!(linear_count(bits), expected, "{ones} bits set");
            assert_eq!(linear_count(bits.reverse_bits()), expected);
        }
    }

    #[test]
    fn estimates_are_as_accurate_as_documented() {
        // 4,000 random sets of each size: the estimate's mean is close to the true count and
        // its standard error what the type's documentation says
        let half = 30_000_000;
        for (n, max_bias, sd_range) in
            [(5, 0.2, 0.3..0.8), (10, 0.4, 1.0..1.6), (25, 1.0, 3.0..4.2)]
        {
            let trials = 4_000;
            let estimates: Vec<f64> = (0..trials)
                .map(|t| {
                    let mut d = WindowedDistinct::<1>::default();
                    for v in 0..n {
                        d.add(0, h(1_000 * t + v), 0, half);
                    }
                    d.estimate(0, 0, half)
                })
                .collect();
            let mean = estimates.iter().sum::<f64>() / trials as f64;
            let var = estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / trials as f64;
            assert!((mean - n as f64).abs() < max_bias, "{n}: mean {mean}");
            assert!(sd_range.contains(&var.sqrt()), "{n}: sd {}", var.sqrt());
        }
    }

    #[test]
    fn bitmaps_keep_all_32_bits() {
        let half = 30_000_000;
        let mut d = WindowedDistinct::<1>::default();
        // hashes whose low five bits are 0..31: every bit of the map, once
        for b in 0..32u64 {
            d.add(0, b + 64, 0, half);
        }
        assert_eq!(d.estimate(0, 0, half), 32.0 * 32f64.ln(), "saturated");
        let mut one = WindowedDistinct::<1>::default();
        one.add(0, 31, 0, half);
        one.add(0, 0, 0, half);
        one.add(0, 32, 0, half);
        let e = one.estimate(0, 0, half);
        assert!((e - -32.0 * (30f64 / 32.0).ln()).abs() < 1e-9, "{e}");
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
            assert_eq!(
                sa.insert(i as usize % 3, v),
                sb.insert(i as usize % 3, v & !high)
            );
        }
        assert_eq!((a, sa), (b, sb));
    }

    #[test]
    fn seen_filter_keeps_kinds_apart() {
        let mut s = Seen::default();
        assert!(s.is_empty());
        assert!(s.insert(0, h(1)));
        assert!(!s.insert(0, h(1)));
        assert!(s.insert(0, h(2)));
        // the same hash as a value of another kind is new
        assert!(s.insert(1, h(1)));
        assert!(s.insert(2, h(1)));
        assert!(!s.insert(2, h(1)));
        // about one new value in 120 passes for seen once six are in
        let (mut wrong, trials) = (0, 20_000);
        for t in 0..trials {
            let mut s = Seen::default();
            for v in 0..6 {
                s.insert(v % 3, h(1000 * t + v as u64));
            }
            wrong += usize::from(!s.insert(t as usize % 3, h(1000 * t + 999)));
        }
        let rate = wrong as f64 / trials as f64;
        assert!((0.004..0.014).contains(&rate), "{rate}");
    }
}
