//! Many caller threads doing single gets through one client, against a connection per thread; CPU per get.

use crate::prelude::*;

impl Runner {
    /// `threads` callers doing single 4 KiB gets: each with its own redis-rs connection, or sharing one client.
    pub fn threaded_gets(
        &mut self,
        name: &'static str,
        server: &Server,
        threads: usize,
        target: Option<f64>,
    ) -> (f64, f64) {
        let url = &server.url();
        let per_thread = 2000;
        let client = ours(url);
        let ks = keys("threaded", 256);
        store(&client, &ks, &values(256, 4 * KIB));
        let cpu = std::cell::Cell::new([[0.0f64; 2]; 2]); // [baseline, ours] x [client, server] CPU seconds
        let run = |use_ours: bool| -> (f64, Vec<f64>) {
            let cpu_before = (cpu_seconds("self"), cpu_seconds(&server.pid.to_string()));
            let mut conns: Vec<redis::Connection> = if use_ours {
                Vec::new()
            } else {
                (0..threads).map(|_| plain(url)).collect()
            };
            let started = Instant::now();
            let lat: Vec<f64> = std::thread::scope(|s| {
                let mut handles = Vec::new();
                for t in 0..threads {
                    let (client, ks) = (&client, &ks);
                    let mut conn = if use_ours { None } else { Some(conns.pop().unwrap()) };
                    handles.push(s.spawn(move || {
                        let mut lat = Vec::with_capacity(per_thread);
                        for i in 0..per_thread {
                            let k = &ks[(t * 31 + i) % ks.len()];
                            let op = Instant::now();
                            let len = match conn.as_mut() {
                                Some(c) => redis::cmd("GET").arg(k).query::<Vec<u8>>(c).unwrap().len(),
                                None => client.get(k).unwrap().unwrap().len(),
                            };
                            assert_eq!(len, 4 * KIB);
                            lat.push(op.elapsed().as_secs_f64());
                        }
                        lat
                    }));
                }
                handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
            });
            let mut c = cpu.get();
            c[use_ours as usize][0] += cpu_seconds("self") - cpu_before.0;
            c[use_ours as usize][1] += cpu_seconds(&server.pid.to_string()) - cpu_before.1;
            cpu.set(c);
            ((threads * per_thread) as f64 / started.elapsed().as_secs_f64(), lat)
        };
        let (mut base, mut mine, mut lat_ours) = (Vec::new(), Vec::new(), Vec::new());
        run(false);
        run(true);
        // KV_PROFILE_OURS=1 leaves the baseline out, to profile the shared client alone.
        let profile = std::env::var("KV_PROFILE_OURS").is_ok();
        for _ in 0..self.rounds.min(5) {
            base.push(if profile { f64::NAN } else { run(false).0 });
            let (ops, lat) = run(true);
            mine.push(ops);
            lat_ours.extend(lat);
        }
        let (b, o) = (median(base), median(mine));
        let st = client.stats();
        let ops = (self.rounds.min(5) + 1) as f64 * (threads * per_thread) as f64;
        let c = cpu.get();
        println!(
            "        {threads} threads: CPU per get, client/server: own connections {:.1}/{:.1} us, shared client {:.1}/{:.1} us; {:.1} keys per round trip",
            c[0][0] / ops * 1e6,
            c[0][1] / ops * 1e6,
            c[1][0] / ops * 1e6,
            c[1][1] / ops * 1e6,
            st.keys as f64 / st.round_trips as f64
        );
        let latency = format!(
            "p50 {:.0} us p99 {:.0} us",
            percentile(&mut lat_ours, 0.5) * 1e6,
            percentile(&mut lat_ours, 0.99) * 1e6
        );
        if let Some(t) = target {
            self.record(
                Row::new(
                    name,
                    format!("{threads} threads x single 4 KiB get"),
                    "a redis-rs connection per thread",
                    "kop/s",
                )
                .values(b / 1000.0, o / 1000.0)
                .target(t)
                .latency(latency),
            );
        }
        (b, o)
    }
}
