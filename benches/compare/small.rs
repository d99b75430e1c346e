//! Small values: a 1000-key batched get against a per-key loop, one `MGET`, and the server's pipelined ceiling.

use crate::prelude::*;

impl Runner {
    /// batched_get of n small values: naive loop, one MGET, ours.
    pub fn small_gets(
        &mut self,
        name: &'static str,
        url: &str,
        n: usize,
        len: usize,
        naive_target: f64,
        mget_target: f64,
    ) {
        let client = ours(url);
        let mut conn = plain(url);
        let ks = keys(&format!("small{len}"), n);
        store(&client, &ks, &values(n, len));
        let mut mget = plain(url);
        let t = alternate(
            self.rounds,
            &mut [
                &mut || {
                    for k in &ks {
                        let v: Option<Vec<u8>> = redis::cmd("GET").arg(k).query(&mut conn).unwrap();
                        assert_eq!(v.map(|v| v.len()), Some(len));
                    }
                },
                &mut || {
                    let v: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&ks).query(&mut mget).unwrap();
                    assert!(v.iter().all(|v| v.as_ref().map(Vec::len) == Some(len)));
                },
                &mut || check_all_hit(&client.batched_get(&ks).unwrap(), len),
            ],
        );
        let kps = |s: f64| n as f64 / s / 1000.0;
        let w = format!("batched_get {n} x {}", size(len));
        self.record(
            Row::new(name, w.clone(), "per-key GET loop (redis-rs)", "kkey/s")
                .values(kps(t[0]), kps(t[2]))
                .target(naive_target)
                .latency(format!("call {:.2} ms", t[2] * 1e3)),
        );
        self.record(
            Row::new(name, w, "one MGET (redis-rs)", "kkey/s")
                .values(kps(t[1]), kps(t[2]))
                .target(mget_target),
        );
        // The server's own ceiling for this value size: redis-benchmark, pipelined.
        if let Some(ops) = redis_benchmark(url, len) {
            self.record(
                Row::new(
                    name,
                    format!("  ceiling: GET {} pipelined x64", size(len)),
                    "redis-benchmark -P 64",
                    "kkey/s",
                )
                .values(ops / 1000.0, kps(t[2])),
            );
        }
    }
}
