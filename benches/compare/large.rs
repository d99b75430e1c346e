//! Large values: batched gets and puts of 1 MiB and 32 MiB against a loop, one giant `MGET` or pipeline, and the
//! raw in-place reader.

use crate::prelude::*;

impl Runner {
    /// batched_get of n large values: naive loop, one giant MGET, ours, and the raw in-place reader.
    pub fn large_gets(&mut self, name: &'static str, url: &str, n: usize, len: usize) {
        let client = ours(url);
        let ks = keys(&format!("large{len}"), n);
        store(&client, &ks, &values(n, len));
        let (mut conn, mut mget) = (plain(url), plain(url));
        let addr = url.trim_start_matches("redis://").to_string();
        let mut raw = TcpStream::connect(&addr).unwrap();
        raw.set_nodelay(true).unwrap();
        let mut buf = Vec::new();
        let t = alternate(
            self.rounds,
            &mut [
                &mut || {
                    for k in &ks {
                        let v: Vec<u8> = redis::cmd("GET").arg(k).query(&mut conn).unwrap();
                        assert_eq!(v.len(), len);
                    }
                },
                &mut || {
                    let v: Vec<Vec<u8>> = redis::cmd("MGET").arg(&ks).query(&mut mget).unwrap();
                    assert!(v.iter().all(|v| v.len() == len));
                },
                &mut || check_all_hit(&client.batched_get(&ks).unwrap(), len),
                &mut || {
                    for k in &ks {
                        assert_eq!(raw_get(&mut raw, k, &mut buf), len);
                    }
                },
            ],
        );
        let total = n * len;
        let w = format!("batched_get {n} x {}", size(len));
        self.record(
            Row::new(name, w.clone(), "per-key GET loop (redis-rs)", "GiB/s")
                .values(gib(total, t[0]), gib(total, t[2]))
                .target(1.0)
                .latency(format!("call {:.1} ms", t[2] * 1e3)),
        );
        self.record(
            Row::new(name, w.clone(), "one giant MGET (redis-rs)", "GiB/s")
                .values(gib(total, t[1]), gib(total, t[2]))
                .target(2.0),
        );
        self.record(
            Row::new(name, w, "ceiling: raw reader, reused buffer", "GiB/s").values(gib(total, t[3]), gib(total, t[2])),
        );
    }

    /// batched_put of n large values: naive SET loop, one giant pipeline of SETs, ours.
    pub fn large_puts(&mut self, name: &'static str, url: &str, n: usize, len: usize) {
        let client = ours(url);
        let ks = keys(&format!("put{len}"), n);
        let vs = values(n, len);
        let (mut conn, mut pipe_conn) = (plain(url), plain(url));
        let addr = url.trim_start_matches("redis://");
        let t = alternate(
            self.rounds,
            &mut [
                &mut || {
                    for (k, v) in ks.iter().zip(&vs) {
                        redis::cmd("SET").arg(k).arg(&v[..]).exec(&mut conn).unwrap();
                    }
                },
                &mut || {
                    let mut p = redis::pipe();
                    for (k, v) in ks.iter().zip(&vs) {
                        p.cmd("SET").arg(k).arg(&v[..]).ignore();
                    }
                    p.exec(&mut pipe_conn).unwrap();
                },
                &mut || {
                    let r = client.batched_put(&ks, vs.iter().cloned()).unwrap();
                    assert!(r.iter().all(Result::is_ok));
                },
                &mut || raw_sets(addr, &ks, &vs, 1),
                &mut || raw_sets(addr, &ks, &vs, 2),
                &mut || raw_sets(addr, &ks, &vs, 4),
                &mut || raw_sets(addr, &ks, &vs, 8),
            ],
        );
        let total = n * len;
        let w = format!("batched_put {n} x {}", size(len));
        // The ceilings: what the server takes in over one plain socket, and over several at once (the best of 2, 4
        // and 8, named).
        let (conns, many) = [(2, t[4]), (4, t[5]), (8, t[6])]
            .into_iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("three");
        self.record(
            Row::new(name, w.clone(), "ceiling: raw SETs, one socket", "GiB/s")
                .values(gib(total, t[3]), gib(total, t[2])),
        );
        self.record(
            Row::new(
                name,
                w.clone(),
                &format!("ceiling: raw SETs, {conns} sockets at once"),
                "GiB/s",
            )
            .values(gib(total, many), gib(total, t[2])),
        );
        self.record(
            Row::new(name, w.clone(), "per-key SET loop (redis-rs)", "GiB/s")
                .values(gib(total, t[0]), gib(total, t[2]))
                .target(1.0)
                .latency(format!("call {:.1} ms", t[2] * 1e3)),
        );
        self.record(
            Row::new(name, w, "one giant SET pipeline (redis-rs)", "GiB/s")
                .values(gib(total, t[1]), gib(total, t[2]))
                .target(1.0),
        );
    }
}
