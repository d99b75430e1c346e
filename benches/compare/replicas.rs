//! A primary with two replicas behind a Sentinel: batched gets with `read_from=spread` against the same client
//! reading from the primary only, the share of the read bytes each server sent, and the latency of a put stream
//! while large reads run on the primary or on the replicas.

use std::sync::atomic::{AtomicBool, Ordering};

use kvcache_redis::ReadFrom;

use crate::prelude::*;
use crate::sentinel::{SentinelOptions, SentinelSet};

/// A Sentinel client of `set` reading from `read_from`.
fn sentinel_client(set: &SentinelSet, read_from: ReadFrom) -> Client {
    let config: Config = set.url("redis+sentinel", "").parse().unwrap();
    Client::with_config(config.read_from(read_from)).unwrap()
}

/// `total_net_output_bytes` of every data node (primary first).
fn output_bytes(set: &SentinelSet) -> Vec<u64> {
    set.nodes
        .iter()
        .map(|n| {
            let info: String = redis::cmd("INFO").arg("stats").query(&mut n.admin()).unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

/// Each server's share of the bytes sent while `f` ran, in percent (primary first).
fn shares(set: &SentinelSet, mut f: impl FnMut()) -> Vec<f64> {
    let before = output_bytes(set);
    f();
    let sent: Vec<f64> = output_bytes(set)
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b) as f64)
        .collect();
    let total: f64 = sent.iter().sum();
    sent.iter().map(|s| 100.0 * s / total).collect()
}

fn percent(shares: &[f64]) -> String {
    let s: Vec<String> = shares.iter().map(|p| format!("{p:.0}%")).collect();
    format!("bytes sent by primary / replicas: {}", s.join(" / "))
}

impl Runner {
    pub fn replica_reads(&mut self, name: &'static str, kind: Kind) {
        let set = SentinelSet::start(
            kind,
            SentinelOptions {
                replicas: 2,
                sentinels: 1,
                ..SentinelOptions::default()
            },
        );
        let primary = sentinel_client(&set, ReadFrom::Primary);
        let spread = sentinel_client(&set, ReadFrom::Spread);
        for (n, len) in [(8, 32 * MIB), (1000, 4 * KIB)] {
            let ks = keys(&format!("replicas{len}"), n);
            store(&primary, &ks, &values(n, len));
            set.wait_synced();
            // Every replica has every key before anything is timed (a miss would fail `check_all_hit`).
            for _ in 0..3 {
                check_all_hit(&spread.batched_get(&ks).unwrap(), len);
            }
            let t = alternate(
                self.rounds,
                &mut [
                    &mut || check_all_hit(&primary.batched_get(&ks).unwrap(), len),
                    &mut || check_all_hit(&spread.batched_get(&ks).unwrap(), len),
                ],
            );
            let on_primary = shares(&set, || {
                for _ in 0..3 {
                    check_all_hit(&primary.batched_get(&ks).unwrap(), len);
                }
            });
            let spread_shares = shares(&set, || {
                for _ in 0..3 {
                    check_all_hit(&spread.batched_get(&ks).unwrap(), len);
                }
            });
            let total = n * len;
            let w = format!("primary + 2 replicas: batched_get {n} x {}", size(len));
            self.record(
                Row::new(name, w, "read_from=primary (same client)", "GiB/s")
                    .values(gib(total, t[0]), gib(total, t[1]))
                    .latency(format!(
                        "spread: {}; primary only: {:.0}%",
                        percent(&spread_shares),
                        on_primary[0]
                    )),
            );
        }
        self.put_latency_under_reads(name, &set);
    }

    /// The p99 of 1 MiB puts from one thread while another reads 8 x 32 MiB in a loop from the primary, then from
    /// the replicas (`read_from=replica`).
    fn put_latency_under_reads(&mut self, name: &'static str, set: &SentinelSet) {
        let writer = sentinel_client(set, ReadFrom::Primary);
        let ks = keys(&format!("replicas{}", 32 * MIB), 8);
        let puts = keys("replicas-puts", 64);
        let value = Bytes::from(vec![7u8; MIB]);
        let mut p99 = Vec::new();
        let mut p50 = Vec::new();
        for read_from in [ReadFrom::Primary, ReadFrom::Replica] {
            let reader = sentinel_client(set, read_from);
            let mut lats: Vec<f64> = Vec::new();
            for _ in 0..self.rounds.min(5) {
                let stop = AtomicBool::new(false);
                let mut lat = std::thread::scope(|s| {
                    s.spawn(|| {
                        while !stop.load(Ordering::Relaxed) {
                            check_all_hit(&reader.batched_get(&ks).unwrap(), 32 * MIB);
                        }
                    });
                    let mut lat = Vec::new();
                    let until = Instant::now() + Duration::from_millis(1500);
                    let mut i = 0;
                    while Instant::now() < until {
                        let t = Instant::now();
                        writer.put(&puts[i % puts.len()], value.clone()).unwrap();
                        lat.push(t.elapsed().as_secs_f64());
                        i += 1;
                    }
                    stop.store(true, Ordering::Relaxed);
                    lat
                });
                lats.append(&mut lat);
            }
            p50.push(percentile(&mut lats, 0.5) * 1e3);
            p99.push(percentile(&mut lats, 0.99) * 1e3);
        }
        self.record(
            Row::new(
                name,
                "put 1 MiB p99 while 8 x 32 MiB reads loop (lower is better)",
                "reads on the primary",
                "ms",
            )
            .values(p99[0], p99[1])
            .latency(format!(
                "reads on the replicas; p50 {:.2} ms vs {:.2} ms on the primary",
                p50[1], p50[0]
            )),
        );
    }
}
