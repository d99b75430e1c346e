//! Peak memory of large reads, measured in fresh child processes.

use crate::prelude::*;

impl Runner {
    /// Peak memory of batched_get 8 x 32 MiB, measured in a fresh child process.
    pub fn peak_memory(&mut self, name: &'static str, url: &str) {
        let client = ours(url);
        let ks = keys("mem", 8);
        store(&client, &ks, &values(8, 32 * MIB));
        let probe = |which: &str| -> f64 {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--memory-probe", which, url])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(f64::NAN)
        };
        let (mut base, mut mine) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            base.push(probe("naive"));
            mine.push(probe("ours"));
        }
        let (b, o) = (median(base), median(mine));
        self.record(
            Row::new(
                name,
                "peak memory, batched_get 8 x 32 MiB",
                "per-key GET loop (redis-rs)",
                "x bytes",
            )
            .values(b, o)
            .latency(format!(
                "target ours <= 1.5x ({})",
                if o <= 1.5 { "met" } else { "MISSED" }
            )),
        );
    }
}
