//! Priorities: how long a `Peek` waits during a flood of 32 MiB puts.

use crate::prelude::*;

impl Runner {
    /// PEEK latency, unloaded and while other threads keep 32 MiB PUTs queued.
    pub fn peek_under_put_flood(&mut self, name: &'static str, url: &str) {
        let client = ours(url);
        client.put("peek-probe", b"x".to_vec()).unwrap();
        // The same probe on a dedicated plain connection, alternating with ours: the floor that the server and
        // the OS set during the flood, whatever the client.
        let plain_conn = std::cell::RefCell::new(plain(url));
        let sample = |n: usize| -> (Vec<f64>, Vec<f64>) {
            let (mut mine, mut floor) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                let t = Instant::now();
                assert!(client.exists("peek-probe").unwrap());
                mine.push(t.elapsed().as_secs_f64());
                std::thread::sleep(Duration::from_millis(1));
                let t = Instant::now();
                let found: bool = redis::cmd("EXISTS")
                    .arg("peek-probe")
                    .query(&mut *plain_conn.borrow_mut())
                    .unwrap();
                assert!(found);
                floor.push(t.elapsed().as_secs_f64());
                std::thread::sleep(Duration::from_millis(1));
            }
            (mine, floor)
        };
        let (mut idle, _) = sample(500);
        let chunk = Bytes::from(vec![3u8; 32 * MIB]);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (loaded, mut puts) = std::thread::scope(|s| {
            let writers: Vec<_> = (0..4)
                .map(|w| {
                    let (client, chunk, stop) = (&client, chunk.clone(), &stop);
                    s.spawn(move || {
                        let mut lat = Vec::new();
                        let mut i = 0;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            let t = Instant::now();
                            client.put(format!("flood:{w}:{}", i % 4), chunk.clone()).unwrap();
                            lat.push(t.elapsed().as_secs_f64());
                            i += 1;
                        }
                        lat
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(200));
            let loaded = sample(500);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let puts: Vec<f64> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
            (loaded, puts)
        });
        let (mut loaded, mut floor) = loaded;
        let (idle99, loaded99, put50) = (
            percentile(&mut idle, 0.99),
            percentile(&mut loaded, 0.99),
            percentile(&mut puts, 0.5),
        );
        let latency = format!(
            "PEEK p50 {:.2} ms p99 {:.2} ms; PUT p50 {:.1} ms; plain-connection EXISTS in the same flood: p50 {:.2} ms p99 {:.2} ms",
            percentile(&mut loaded, 0.5) * 1e3,
            loaded99 * 1e3,
            put50 * 1e3,
            percentile(&mut floor, 0.5) * 1e3,
            percentile(&mut floor, 0.99) * 1e3
        );
        // Ratios as "higher is better": unloaded p99 * 10 / loaded p99 >= 1 meets the first target.
        self.record(
            Row::new(
                name,
                "PEEK p99 under 32 MiB PUT flood (x10 budget)",
                "10 x unloaded PEEK p99",
                "ms",
            )
            .values(idle99 * 10.0 * 1e3, loaded99 * 1e3)
            .latency(latency),
        );
        self.rows.last_mut().unwrap().target = None;
        let within = idle99 * 10.0 / loaded99;
        let below = put50 / 10.0 / loaded99;
        println!(
            "        PEEK p99 budget use: {:.2} of 10x unloaded ({}), {:.2} of PUT p50/10 ({})",
            1.0 / within,
            if within >= 1.0 { "met" } else { "MISSED" },
            1.0 / below,
            if below >= 1.0 { "met" } else { "MISSED" }
        );
        self.rows.push(Row {
            server: name,
            workload: "  PEEK p99 / (10 x unloaded p99)".into(),
            baseline: "target <= 1".into(),
            unit: "",
            base: 1.0,
            ours: 1.0 / within,
            target: None,
            latency: if within >= 1.0 { "met".into() } else { "MISSED".into() },
        });
        self.rows.push(Row {
            server: name,
            workload: "  PEEK p99 / (PUT p50 / 10)".into(),
            baseline: "target < 1".into(),
            unit: "",
            base: 1.0,
            ours: 1.0 / below,
            target: None,
            latency: if below >= 1.0 { "met".into() } else { "MISSED".into() },
        });
    }
}
