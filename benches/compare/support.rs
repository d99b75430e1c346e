//! What the workloads share: baseline connections (TCP_NODELAY, as ours), our client, keys and values, the raw
//! in-place reader (the ceiling for large values), `redis-benchmark`, CPU and peak-memory probes.

use crate::prelude::*;

pub fn plain(url: &str) -> redis::Connection {
    let info = url
        .into_connection_info()
        .unwrap()
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    redis::Client::open(info).unwrap().get_connection().unwrap()
}

pub fn ours(url: &str) -> Client {
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
    if let Some(n) = std::env::var("KV_WRITE_BYTES").ok().and_then(|v| v.parse().ok()) {
        config = config.write_bytes_in_flight(n);
    }
    Client::with_config(config).unwrap()
}

pub fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}:{i}")).collect()
}

pub fn values(n: usize, len: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(vec![(i % 251) as u8; len])).collect()
}

pub fn store(client: &Client, keys: &[String], values: &[Bytes]) {
    let r = client.batched_put(keys, values.iter().cloned()).unwrap();
    assert!(r.iter().all(Result::is_ok));
}

pub fn check_all_hit(got: &[kvcache_redis::Result<Option<Bytes>>], len: usize) {
    assert!(
        got.iter().all(|r| matches!(r, Ok(Some(v)) if v.len() == len)),
        "a read came back wrong"
    );
}

/// Reads one GET reply straight into `buf` (reused), the way a minimal client would: the ceiling.
/// The write ceiling: `SET`s of `values` under `keys` over `conns` plain sockets at once (key `i` on connection
/// `i % conns`, each connection a thread of its own), header, value and CRLF written straight from the values.
pub fn raw_sets(addr: &str, keys: &[String], values: &[Bytes], conns: usize) {
    std::thread::scope(|scope| {
        for c in 0..conns {
            scope.spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut sent = 0;
                for i in (c..keys.len()).step_by(conns) {
                    let (k, v) = (&keys[i], &values[i]);
                    let head = format!("*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n", k.len(), v.len());
                    s.write_all(head.as_bytes()).unwrap();
                    s.write_all(v).unwrap();
                    s.write_all(b"\r\n").unwrap();
                    sent += 1;
                }
                let mut ok = vec![0u8; 5 * sent];
                s.read_exact(&mut ok).unwrap();
                assert!(ok.chunks(5).all(|r| r == b"+OK\r\n"), "raw SET refused");
            });
        }
    });
}

pub fn raw_get(stream: &mut TcpStream, key: &str, buf: &mut Vec<u8>) -> usize {
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
pub fn cpu_seconds(pid: &str) -> f64 {
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

pub fn gib(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / (1u64 << 30) as f64
}

pub fn size(len: usize) -> String {
    match len {
        l if l >= MIB && l % MIB == 0 => format!("{} MiB", l / MIB),
        l if l >= KIB && l % KIB == 0 => format!("{} KiB", l / KIB),
        l => format!("{l} B"),
    }
}

/// `redis-benchmark -P 64` GET throughput for values of `len` bytes, if redis-benchmark is installed.
pub fn redis_benchmark(url: &str, len: usize) -> Option<f64> {
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
pub fn memory_probe(which: &str, url: &str) {
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
