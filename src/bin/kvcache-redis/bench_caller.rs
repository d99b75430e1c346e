//! One `bench` caller thread: batched gets and puts of random runs of the working set, every chunk read checked
//! against the pattern it was written with, all counted in shared counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use kvcache_redis::{ChunkKey, ChunkStore};

/// A latency histogram in microseconds, from 1 us to an hour (every caller's, and the run's merged one).
pub fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

/// What every caller counts.
#[derive(Default)]
pub struct Counters {
    pub calls: AtomicU64,
    pub read_calls: AtomicU64,
    pub write_calls: AtomicU64,
    pub read_bytes: AtomicU64,
    pub write_bytes: AtomicU64,
    pub read_chunks: AtomicU64,
    pub write_chunks: AtomicU64,
    pub errors: AtomicU64,
    pub wrong: AtomicU64,
    pub misses: AtomicU64,
}

/// A chunk's payload: a shared pattern with the chunk's index in its first 8 bytes.
pub fn payload(base: &[u8], i: u64) -> Bytes {
    let mut v = base.to_vec();
    let n = v.len().min(8);
    v[..n].copy_from_slice(&i.to_le_bytes()[..n]);
    Bytes::from(v)
}

pub fn sound(base: &[u8], i: u64, got: &[u8]) -> bool {
    let n = base.len().min(8);
    got.len() == base.len() && got[..n] == i.to_le_bytes()[..n] && got[n..] == base[n..]
}

/// One caller thread: batched gets and puts of random runs of the working set, every chunk read checked.
pub struct Caller {
    pub store: ChunkStore,
    pub keys: Arc<Vec<ChunkKey>>,
    pub base: Arc<Vec<u8>>,
    pub counters: Arc<Counters>,
    pub stop: Arc<AtomicBool>,
    pub batch: u64,
    pub read_ratio: f64,
    pub count: Option<u64>,
    pub rng: u64,
}

impl Caller {
    pub fn run(mut self) -> Histogram<u64> {
        let mut hist = histogram();
        let n = self.keys.len() as u64;
        while !self.stop.load(Relaxed) {
            if let Some(count) = self.count
                && self.counters.calls.fetch_add(1, Relaxed) >= count
            {
                break;
            }
            let first = self.next() % n;
            let idx: Vec<u64> = (0..self.batch.min(n)).map(|j| (first + j) % n).collect();
            let read = (self.next() % 1_000_000) as f64 / 1_000_000.0 < self.read_ratio;
            let took = if read { self.read(&idx) } else { self.write(&idx) };
            let _ = hist.record(took.as_micros().max(1) as u64);
            if self.count.is_none() {
                self.counters.calls.fetch_add(1, Relaxed);
            }
        }
        hist
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn batch_keys(&self, idx: &[u64]) -> Vec<ChunkKey> {
        idx.iter().map(|&i| self.keys[i as usize].clone()).collect()
    }

    /// One batched get, every chunk checked; returns how long the call took.
    fn read(&self, idx: &[u64]) -> Duration {
        let c = &self.counters;
        let keys = self.batch_keys(idx);
        let t0 = Instant::now();
        let result = self.store.batched_get(&keys);
        let took = t0.elapsed();
        c.read_calls.fetch_add(1, Relaxed);
        match result {
            Ok(per_key) => {
                for (&i, r) in idx.iter().zip(per_key) {
                    match r {
                        Ok(Some(chunk)) => {
                            c.read_chunks.fetch_add(1, Relaxed);
                            c.read_bytes.fetch_add(chunk.payload.len() as u64, Relaxed);
                            if !sound(&self.base, i, &chunk.payload) {
                                c.wrong.fetch_add(1, Relaxed);
                            }
                        }
                        Ok(None) => _ = c.misses.fetch_add(1, Relaxed),
                        Err(_) => _ = c.errors.fetch_add(1, Relaxed),
                    }
                }
            }
            Err(_) => _ = c.errors.fetch_add(idx.len() as u64, Relaxed),
        }
        took
    }

    /// One batched put; returns how long the call took (not counting making the payloads).
    fn write(&self, idx: &[u64]) -> Duration {
        let c = &self.counters;
        let keys = self.batch_keys(idx);
        let values: Vec<Bytes> = idx.iter().map(|&i| payload(&self.base, i)).collect();
        let t0 = Instant::now();
        let result = self.store.batched_put(&keys, values, None);
        let took = t0.elapsed();
        c.write_calls.fetch_add(1, Relaxed);
        match result {
            Ok(per_key) => {
                for r in per_key {
                    match r {
                        Ok(()) => {
                            c.write_chunks.fetch_add(1, Relaxed);
                            c.write_bytes.fetch_add(self.base.len() as u64, Relaxed);
                        }
                        Err(_) => _ = c.errors.fetch_add(1, Relaxed),
                    }
                }
            }
            Err(_) => _ = c.errors.fetch_add(idx.len() as u64, Relaxed),
        }
        took
    }
}
