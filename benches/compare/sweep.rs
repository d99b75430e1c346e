//! Throughput against value size (the plot), and how a call's cost grows with its keys and primaries.

use crate::prelude::*;

impl Runner {
    /// Throughput against value size, for the plot and the growth table.
    pub fn size_sweep(&mut self, name: &'static str, url: &str) {
        let client = ours(url);
        let mut conn = plain(url);
        let mut mget = plain(url);
        for len in [64, KIB, 4 * KIB, 64 * KIB, 256 * KIB, MIB, 4 * MIB, 32 * MIB] {
            let n = (64 * MIB / len).clamp(8, 1000);
            let ks = keys(&format!("sweep{len}"), n);
            store(&client, &ks, &values(n, len));
            let t = alternate(
                self.rounds.min(5),
                &mut [
                    &mut || {
                        for k in &ks {
                            let _: Vec<u8> = redis::cmd("GET").arg(k).query(&mut conn).unwrap();
                        }
                    },
                    &mut || {
                        let _: Vec<Vec<u8>> = redis::cmd("MGET").arg(&ks).query(&mut mget).unwrap();
                    },
                    &mut || check_all_hit(&client.batched_get(&ks).unwrap(), len),
                ],
            );
            let total = n * len;
            for (series, secs) in [("per-key GET loop", t[0]), ("one MGET", t[1]), ("kvcache-redis", t[2])] {
                self.sizes.push((name, len, series, gib(total, secs)));
            }
            println!(
                "{name:<7} sweep {n:>5} x {:<8} loop {:>6.2}  mget {:>6.2}  ours {:>6.2} GiB/s",
                size(len),
                gib(total, t[0]),
                gib(total, t[1]),
                gib(total, t[2])
            );
            for k in ks.chunks(500) {
                let _: () = redis::cmd("DEL").arg(k).query(&mut conn).unwrap();
            }
        }
    }

    /// Batch size and caller threads: how cost grows.
    pub fn growth(&mut self, name: &'static str, server: &Server) {
        let url = &server.url();
        let client = ours(url);
        let ks = keys("growth", 10_000);
        store(&client, &ks, &values(10_000, 4 * KIB));
        for n in [1, 10, 100, 1000, 10_000] {
            let mut lat: Vec<f64> = (0..self.rounds.max(5) * 4)
                .map(|_| {
                    let t = Instant::now();
                    check_all_hit(&client.batched_get(&ks[..n]).unwrap(), 4 * KIB);
                    t.elapsed().as_secs_f64()
                })
                .collect();
            let p50 = percentile(&mut lat, 0.5);
            println!(
                "{name:<7} growth batch {n:>5} x 4 KiB: p50 {:>8.3} ms p99 {:>8.3} ms  {:>8.0} kkey/s",
                p50 * 1e3,
                percentile(&mut lat, 0.99) * 1e3,
                n as f64 / p50 / 1e3
            );
        }
        for threads in [1, 4, 16, 64] {
            let (b, o) = self.threaded_gets(name, server, threads, None);
            println!(
                "{name:<7} growth {threads:>2} threads single 4 KiB gets: own connections {:>6.0} kop/s, one shared client {:>6.0} kop/s",
                b / 1e3,
                o / 1e3
            );
        }
    }
}
