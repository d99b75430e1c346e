//! The comparison runner: starts its own servers, runs every workload with kvcache-redis and with the baselines
//! alternately in the same run, and prints one table (workload, baseline, ours, ratio, latencies). With `--write`
//! it also rewrites the results part of BENCHMARKS.md and the data behind its plot.
//!
//! `scripts/bench.sh [--quick] [--write]` (or `cargo bench --bench compare -- [--quick] [--write]`).

#[path = "../tests/support/server.rs"]
mod server;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvcache_redis::{Client, Config};
use redis::IntoConnectionInfo;
use server::{Cluster, Kind, Server};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// One line of the table.
struct Row {
    server: &'static str,
    workload: String,
    baseline: String,
    unit: &'static str,
    base: f64,
    ours: f64,
    /// Target for ours / base, if the issue sets one.
    target: Option<f64>,
    latency: String,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.ours / self.base
    }
}

struct Runner {
    rounds: usize,
    rows: Vec<Row>,
    /// (server, value size, series, GiB/s) for the plot.
    sizes: Vec<(&'static str, usize, &'static str, f64)>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs each closure once per round, rotating which goes first, and returns the median seconds of each.
fn alternate(rounds: usize, fns: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    for f in fns.iter_mut() {
        f(); // warm-up, same for everyone
    }
    let mut times = vec![Vec::new(); fns.len()];
    for r in 0..rounds {
        for i in 0..fns.len() {
            let j = (i + r) % fns.len();
            let t = Instant::now();
            fns[j]();
            times[j].push(t.elapsed().as_secs_f64());
        }
    }
    times.into_iter().map(median).collect()
}

fn plain(url: &str) -> redis::Connection {
    let info = url
        .into_connection_info()
        .unwrap()
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    redis::Client::open(info).unwrap().get_connection().unwrap()
}

fn ours(url: &str) -> Client {
    let mut config = Config::from_url(url).unwrap();
    // Experiment knobs (never set by the runner itself).
    if let Some(n) = std::env::var("KV_WORKERS").ok().and_then(|v| v.parse().ok()) {
        config = config.workers(n);
    }
    if let Some(n) = std::env::var("KV_BATCH_BYTES").ok().and_then(|v| v.parse().ok()) {
        config = config.batch_max_bytes(n);
    }
    if let Some(n) = std::env::var("KV_BATCH_KEYS").ok().and_then(|v| v.parse().ok()) {
        config = config.batch_max_keys(n);
    }
    if let Some(n) = std::env::var("KV_MGET_MAX_VALUE").ok().and_then(|v| v.parse().ok()) {
        config = config.mget_max_value_size(n);
    }
    Client::with_config(config).unwrap()
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}:{i}")).collect()
}

fn values(n: usize, len: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(vec![(i % 251) as u8; len])).collect()
}

fn store(client: &Client, keys: &[String], values: &[Bytes]) {
    let r = client.batched_put(keys, values.iter().cloned()).unwrap();
    assert!(r.iter().all(Result::is_ok));
}

fn check_all_hit(got: &[kvcache_redis::Result<Option<Bytes>>], len: usize) {
    assert!(
        got.iter().all(|r| matches!(r, Ok(Some(v)) if v.len() == len)),
        "a read came back wrong"
    );
}

/// Reads one GET reply straight into `buf` (reused), the way a minimal client would: the ceiling.
fn raw_get(stream: &mut TcpStream, key: &str, buf: &mut Vec<u8>) -> usize {
    write!(stream, "*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).unwrap();
    let mut head = Vec::with_capacity(16);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let len: usize = std::str::from_utf8(&head[1..head.len() - 2]).unwrap().parse().unwrap();
    if buf.len() < len + 2 {
        buf.resize(len + 2, 0);
    }
    stream.read_exact(&mut buf[..len + 2]).unwrap();
    len
}

/// User + system CPU seconds of a process (`self` or a PID), from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn gib(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / (1u64 << 30) as f64
}

impl Runner {
    /// Prints and records one table row (all of a row's columns, hence the arguments).
    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        server: &'static str,
        workload: String,
        baseline: &str,
        unit: &'static str,
        base: f64,
        ours: f64,
        target: Option<f64>,
        latency: String,
    ) {
        let row = Row {
            server,
            workload,
            baseline: baseline.to_string(),
            unit,
            base,
            ours,
            target,
            latency,
        };
        let verdict = match row.target {
            Some(t) if row.ratio() >= t => format!("met (>= {t}x)"),
            Some(t) => format!("MISSED (< {t}x)"),
            None => String::new(),
        };
        println!(
            "{:<7} {:<44} {:<34} {:>10.2} {:>10.2} {:<6} {:>6.2}x {:<16} {}",
            row.server,
            row.workload,
            row.baseline,
            row.base,
            row.ours,
            row.unit,
            row.ratio(),
            verdict,
            row.latency
        );
        self.rows.push(row);
    }

    /// batched_get of n small values: naive loop, one MGET, ours.
    fn small_gets(&mut self, name: &'static str, url: &str, n: usize, len: usize, naive_target: f64, mget_target: f64) {
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
        self.row(
            name,
            w.clone(),
            "per-key GET loop (redis-rs)",
            "kkey/s",
            kps(t[0]),
            kps(t[2]),
            Some(naive_target),
            format!("call {:.2} ms", t[2] * 1e3),
        );
        self.row(
            name,
            w,
            "one MGET (redis-rs)",
            "kkey/s",
            kps(t[1]),
            kps(t[2]),
            Some(mget_target),
            String::new(),
        );
        // The server's own ceiling for this value size: redis-benchmark, pipelined.
        if let Some(ops) = redis_benchmark(url, len) {
            self.row(
                name,
                format!("  ceiling: GET {} pipelined x64", size(len)),
                "redis-benchmark -P 64",
                "kkey/s",
                ops / 1000.0,
                kps(t[2]),
                None,
                String::new(),
            );
        }
    }

    /// batched_get of n large values: naive loop, one giant MGET, ours, and the raw in-place reader.
    fn large_gets(&mut self, name: &'static str, url: &str, n: usize, len: usize) {
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
        self.row(
            name,
            w.clone(),
            "per-key GET loop (redis-rs)",
            "GiB/s",
            gib(total, t[0]),
            gib(total, t[2]),
            Some(1.0),
            format!("call {:.1} ms", t[2] * 1e3),
        );
        self.row(
            name,
            w.clone(),
            "one giant MGET (redis-rs)",
            "GiB/s",
            gib(total, t[1]),
            gib(total, t[2]),
            Some(2.0),
            String::new(),
        );
        self.row(
            name,
            w,
            "ceiling: raw reader, reused buffer",
            "GiB/s",
            gib(total, t[3]),
            gib(total, t[2]),
            None,
            String::new(),
        );
    }

    /// batched_put of n large values: naive SET loop, one giant pipeline of SETs, ours.
    fn large_puts(&mut self, name: &'static str, url: &str, n: usize, len: usize) {
        let client = ours(url);
        let ks = keys(&format!("put{len}"), n);
        let vs = values(n, len);
        let (mut conn, mut pipe_conn) = (plain(url), plain(url));
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
            ],
        );
        let total = n * len;
        let w = format!("batched_put {n} x {}", size(len));
        self.row(
            name,
            w.clone(),
            "per-key SET loop (redis-rs)",
            "GiB/s",
            gib(total, t[0]),
            gib(total, t[2]),
            Some(1.0),
            format!("call {:.1} ms", t[2] * 1e3),
        );
        self.row(
            name,
            w,
            "one giant SET pipeline (redis-rs)",
            "GiB/s",
            gib(total, t[1]),
            gib(total, t[2]),
            Some(1.0),
            String::new(),
        );
    }

    /// `threads` callers doing single 4 KiB gets: each with its own redis-rs connection, or sharing one client.
    fn threaded_gets(
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
            self.row(
                name,
                format!("{threads} threads x single 4 KiB get"),
                "a redis-rs connection per thread",
                "kop/s",
                b / 1000.0,
                o / 1000.0,
                Some(t),
                latency,
            );
        }
        (b, o)
    }

    /// PEEK latency, unloaded and while other threads keep 32 MiB PUTs queued.
    fn peek_under_put_flood(&mut self, name: &'static str, url: &str) {
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
        self.row(
            name,
            "PEEK p99 under 32 MiB PUT flood (x10 budget)".into(),
            "10 x unloaded PEEK p99",
            "ms",
            idle99 * 10.0 * 1e3,
            loaded99 * 1e3,
            None,
            latency,
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

    /// The framed layout's price: the same 8 x 32 MiB chunks through the framed layout (header + CRC-32 checked
    /// on every read) and through the raw layout (no header, no check), alternately.
    fn chunk_layouts(&mut self, name: &'static str, url: &str) {
        use kvcache_redis::{ChunkKey, ChunkStore, Dtype, Layout};
        let len = 32 * MIB;
        let keys: Vec<ChunkKey> = (0..8)
            .map(|i| ChunkKey::new("meta-llama/Llama-3-8B", 1, 0, &format!("{i:x}"), Dtype::Bfloat16).unwrap())
            .collect();
        let framed = ChunkStore::new(ours(url), Layout::Framed).with_namespace("framed:");
        let raw = ChunkStore::new(ours(url), Layout::Raw { size: len }).with_namespace("raw:");
        let payloads = values(8, len);
        // get_into: 8 caller-owned 32 MiB slabs, reused call after call (as an engine's pinned buffers would be).
        let slabs = std::cell::RefCell::new(Some((0..8).map(|_| vec![0u8; len]).collect::<Vec<_>>()));
        let mut raw_conn = TcpStream::connect(url.trim_start_matches("redis://")).unwrap();
        raw_conn.set_nodelay(true).unwrap();
        let mut scratch = Vec::new();
        let t = alternate(
            self.rounds,
            &mut [
                &mut || {
                    assert!(
                        raw.batched_put(&keys, payloads.clone(), None)
                            .unwrap()
                            .iter()
                            .all(Result::is_ok)
                    )
                },
                &mut || {
                    assert!(
                        framed
                            .batched_put(&keys, payloads.clone(), None)
                            .unwrap()
                            .iter()
                            .all(Result::is_ok)
                    )
                },
                &mut || assert!(raw.batched_get(&keys).unwrap().iter().all(|r| matches!(r, Ok(Some(_))))),
                &mut || {
                    assert!(
                        framed
                            .batched_get(&keys)
                            .unwrap()
                            .iter()
                            .all(|r| matches!(r, Ok(Some(_))))
                    )
                },
                &mut || {
                    let bufs = slabs.borrow_mut().take().unwrap();
                    let out = framed.batched_get_into(&keys, bufs);
                    assert!(out.iter().all(|f| matches!(f.result, Ok(Some(n)) if n == len)));
                    *slabs.borrow_mut() = Some(out.into_iter().map(|f| f.buf.unwrap()).collect());
                },
                &mut || {
                    for k in &keys {
                        assert_eq!(raw_get(&mut raw_conn, &raw.store_key(k), &mut scratch), len);
                    }
                },
            ],
        );
        let total = 8 * len;
        self.row(
            name,
            "chunk put 8 x 32 MiB, framed".into(),
            "raw layout (no header)",
            "GiB/s",
            gib(total, t[0]),
            gib(total, t[1]),
            None,
            String::new(),
        );
        self.row(
            name,
            "chunk get_into 8 x 32 MiB, framed, caller slabs".into(),
            "ceiling: raw reader, reused buffer",
            "GiB/s",
            gib(total, t[5]),
            gib(total, t[4]),
            Some(0.8),
            String::new(),
        );
        self.row(
            name,
            "chunk get 8 x 32 MiB, framed (CRC checked)".into(),
            "raw layout (no check)",
            "GiB/s",
            gib(total, t[2]),
            gib(total, t[3]),
            None,
            String::new(),
        );
    }

    /// Peak memory of batched_get 8 x 32 MiB, measured in a fresh child process.
    fn peak_memory(&mut self, name: &'static str, url: &str) {
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
        self.row(
            name,
            "peak memory, batched_get 8 x 32 MiB".into(),
            "per-key GET loop (redis-rs)",
            "x bytes",
            b,
            o,
            None,
            format!("target ours <= 1.5x ({})", if o <= 1.5 { "met" } else { "MISSED" }),
        );
    }

    /// Throughput against value size, for the plot and the growth table.
    fn size_sweep(&mut self, name: &'static str, url: &str) {
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
    fn growth(&mut self, name: &'static str, server: &Server) {
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

    fn cluster(&mut self, name: &'static str, kind: Kind) {
        for primaries in [1, 2, 3] {
            let cluster = Cluster::start(kind, primaries, 0);
            let url = cluster.url();
            let client = ours(&url);
            let n = 1000;
            let ks = keys("cl", n);
            store(&client, &ks, &values(n, 4 * KIB));
            let nodes: Vec<String> = cluster.nodes.iter().map(|s| s.url()).collect();
            let cluster_client = redis::cluster::ClusterClientBuilder::new(nodes)
                .tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
                .build()
                .unwrap();
            let (mut cc, mut cp) = (
                cluster_client.get_connection().unwrap(),
                cluster_client.get_connection().unwrap(),
            );
            let t = alternate(
                self.rounds,
                &mut [
                    &mut || {
                        for k in &ks {
                            let v: Vec<u8> = redis::cmd("GET").arg(k).query(&mut cc).unwrap();
                            assert_eq!(v.len(), 4 * KIB);
                        }
                    },
                    &mut || {
                        let mut p = redis::cluster::cluster_pipe();
                        for k in &ks {
                            p.cmd("GET").arg(k);
                        }
                        let v: Vec<Vec<u8>> = p.query(&mut cp).unwrap();
                        assert!(v.iter().all(|v| v.len() == 4 * KIB));
                    },
                    &mut || check_all_hit(&client.batched_get(&ks).unwrap(), 4 * KIB),
                ],
            );
            let kps = |s: f64| n as f64 / s / 1000.0;
            if primaries == 3 {
                let w = "cluster(3) batched_get 1000 x 4 KiB".to_string();
                self.row(
                    name,
                    w.clone(),
                    "cluster per-key GET loop (redis-rs)",
                    "kkey/s",
                    kps(t[0]),
                    kps(t[2]),
                    Some(10.0),
                    format!("call {:.2} ms", t[2] * 1e3),
                );
                self.row(
                    name,
                    w,
                    "sync cluster pipeline of GETs (redis-rs)",
                    "kkey/s",
                    kps(t[1]),
                    kps(t[2]),
                    Some(1.0),
                    String::new(),
                );
            }
            println!(
                "{name:<7} growth cluster {primaries} primaries, 1000 x 4 KiB: loop {:>6.0}  pipeline {:>6.0}  ours {:>6.0} kkey/s",
                kps(t[0]),
                kps(t[1]),
                kps(t[2])
            );
        }
    }
}

fn size(len: usize) -> String {
    match len {
        l if l >= MIB && l % MIB == 0 => format!("{} MiB", l / MIB),
        l if l >= KIB && l % KIB == 0 => format!("{} KiB", l / KIB),
        l => format!("{l} B"),
    }
}

/// `redis-benchmark -P 64` GET throughput for values of `len` bytes, if redis-benchmark is installed.
fn redis_benchmark(url: &str, len: usize) -> Option<f64> {
    let addr = url.trim_start_matches("redis://");
    let (host, port) = addr.split_once(':')?;
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-h",
            host,
            "-p",
            port,
            "-t",
            "set,get",
            "-n",
            "200000",
            "-P",
            "64",
            "-d",
            &len.to_string(),
            "-q",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Lines look like "GET: 1234567.00 requests per second, p50=..."; the progress output uses \r.
    text.split(['\r', '\n'])
        .rev()
        .find_map(|l| l.trim().strip_prefix("GET: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Child mode: one batched_get of the 8 x 32 MiB values, printing (peak RSS - RSS before) / bytes returned.
fn memory_probe(which: &str, url: &str) {
    let status = |field: &str| -> f64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() * 1024.0
    };
    let ks = keys("mem", 8);
    let client = ours(url);
    let mut conn = plain(url);
    client.ping().unwrap();
    let _ = std::fs::write("/proc/self/clear_refs", "5"); // resets the peak to the current RSS
    let before = status("VmRSS:");
    let returned: usize = match which {
        "ours" => client
            .batched_get(&ks)
            .unwrap()
            .iter()
            .map(|r| r.as_ref().unwrap().as_ref().unwrap().len())
            .sum(),
        _ => ks
            .iter()
            .map(|k| redis::cmd("GET").arg(k).query::<Vec<u8>>(&mut conn).unwrap().len())
            .sum(),
    };
    let peak = status("VmHWM:");
    println!("{}", (peak - before) / returned as f64);
}

fn markdown(rows: &[Row], machine: &str) -> String {
    let mut s = String::new();
    writeln!(s, "Machine: {machine}\n").unwrap();
    writeln!(
        s,
        "| server | workload | baseline | baseline | ours | unit | ours / baseline | target | latency (ours) |"
    )
    .unwrap();
    writeln!(s, "|---|---|---|---:|---:|---|---:|---|---|").unwrap();
    for r in rows {
        let target = match r.target {
            Some(t) if r.ratio() >= t => format!(">= {t}x: met"),
            Some(t) => format!(">= {t}x: **missed**"),
            None => String::new(),
        };
        writeln!(
            s,
            "| {} | {} | {} | {:.2} | {:.2} | {} | {:.2}x | {} | {} |",
            r.server,
            r.workload.trim(),
            r.baseline,
            r.base,
            r.ours,
            r.unit,
            r.ratio(),
            target,
            r.latency
        )
        .unwrap();
    }
    s
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let version = |k: Kind| -> String {
        let out = std::process::Command::new(k.binary())
            .arg("--version")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find(|w| w.starts_with("v="))
            .unwrap_or("?")
            .trim_start_matches("v=")
            .to_string()
    };
    format!(
        "{cores} cores ({cpu}), loopback; Redis {}, Valkey {}",
        version(Kind::Redis),
        version(Kind::Valkey)
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--memory-probe") {
        return memory_probe(&args[1], &args[2]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let write = args.iter().any(|a| a == "--write");
    let only: Option<&str> = args
        .iter()
        .find(|a| !a.starts_with("--") && *a != "compare")
        .map(String::as_str);
    let mut r = Runner {
        rounds: if quick { 3 } else { 9 },
        rows: Vec::new(),
        sizes: Vec::new(),
    };
    let started = Instant::now();
    println!(
        "{:<7} {:<44} {:<34} {:>10} {:>10} {:<6} {:>7} {:<16} latency",
        "server", "workload", "baseline", "baseline", "ours", "unit", "ratio", "target"
    );
    for (kind, name) in [(Kind::Redis, "Redis"), (Kind::Valkey, "Valkey")] {
        let server = Server::standalone(kind);
        let url = server.url();
        let want = |w: &str| only.is_none_or(|o| o == w);
        if want("small") {
            r.small_gets(name, &url, 1000, 4 * KIB, 10.0, 0.9);
            r.small_gets(name, &url, 1000, 64, 50.0, 0.8);
        }
        if want("large") {
            r.large_gets(name, &url, 64, MIB);
            r.large_gets(name, &url, 8, 32 * MIB);
        }
        if want("put") {
            r.large_puts(name, &url, 64, MIB);
            r.large_puts(name, &url, 8, 32 * MIB);
        }
        if want("threads") {
            r.threaded_gets(name, &server, 16, Some(2.0));
        }
        if want("peek") {
            r.peek_under_put_flood(name, &url);
        }
        if want("chunks") {
            r.chunk_layouts(name, &url);
        }
        if want("memory") {
            r.peak_memory(name, &url);
        }
        if want("sweep") {
            r.size_sweep(name, &url);
        }
        if want("growth") {
            r.growth(name, &server);
        }
        drop(server);
        if want("cluster") {
            r.cluster(name, kind);
        }
    }
    println!("ran in {:.0} s", started.elapsed().as_secs_f64());
    if write {
        write_results(&r, &machine());
    }
}

fn write_results(r: &Runner, machine: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("server,value_bytes,series,gib_per_s\n");
    for (server, len, series, g) in &r.sizes {
        writeln!(csv, "{server},{len},{series},{g:.4}").unwrap();
    }
    std::fs::write(dir.join("sizes.csv"), csv).unwrap();
    let table = markdown(&r.rows, machine);
    std::fs::write(dir.join("table.md"), &table).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let (start, end) = ("<!-- results:start -->", "<!-- results:end -->");
    if let (Some(a), Some(b)) = (doc.find(start), doc.find(end)) {
        let new = format!("{}{start}\n{table}{}", &doc[..a], &doc[b..]);
        std::fs::write(&path, new).unwrap();
        println!("updated BENCHMARKS.md and benches/results/");
    } else {
        println!("BENCHMARKS.md has no results markers; wrote benches/results/ only");
    }
}
