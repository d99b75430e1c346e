//! Call latencies: a lock-free log-linear histogram (8 buckets per power of two, so a percentile is read within
//! 12.5%), one per priority level.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const BUCKETS: usize = 256;

/// Latency percentiles of one priority level's calls, in microseconds (each an upper bound within 12.5%).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Latency {
    /// Calls measured.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest.
    pub max_us: u64,
}

pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    max_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            max_us: AtomicU64::new(0),
        }
    }
}

fn index(us: u64) -> usize {
    if us < 8 {
        return us as usize;
    }
    let e = 63 - us.leading_zeros() as usize; // >= 3
    let sub = ((us >> (e - 3)) & 7) as usize;
    (8 + (e - 3) * 8 + sub).min(BUCKETS - 1)
}

/// The smallest value of bucket `i`.
fn lower(i: usize) -> u64 {
    if i < 8 {
        return i as u64;
    }
    let (e, sub) = ((i - 8) / 8 + 3, (i - 8) % 8);
    (8 + sub as u64) << (e - 3)
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.buckets[index(us)].fetch_add(1, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    pub(crate) fn summary(&self) -> Latency {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        let max_us = self.max_us.load(Relaxed);
        let at = |p: f64| -> u64 {
            let target = ((count as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= target {
                    return (lower(i + 1).saturating_sub(1)).min(max_us);
                }
            }
            max_us
        };
        if count == 0 {
            return Latency::default();
        }
        Latency {
            count,
            p50_us: at(0.5),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order_within_an_eighth() {
        let mut last = 0;
        for us in [0u64, 1, 7, 8, 9, 15, 16, 17, 100, 1000, 12_345, 1 << 20, 1 << 33] {
            let i = index(us);
            assert!(i >= last, "{us}");
            last = i;
            assert!(
                lower(i) <= us && (us < lower(i + 1) || i == BUCKETS - 1),
                "{us} in bucket {i}"
            );
            assert!(
                lower(i + 1) - lower(i) <= lower(i).max(8) / 8 + 1,
                "{us}: bucket too wide"
            );
        }
    }

    #[test]
    fn percentiles_are_read_back() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let l = h.summary();
        assert_eq!((l.count, l.max_us), (1000, 1000));
        assert!((500..=563).contains(&l.p50_us), "{l:?}");
        assert!((990..=1000).contains(&l.p99_us), "{l:?}");
        assert_eq!(Histogram::default().summary(), Latency::default());
    }
}
