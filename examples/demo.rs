//! The main job: store and load a batch of KV-cache-sized chunks, check every byte, and say how fast it went.
//!
//! `cargo run --release --example demo -- [URL] [--chunks N] [--chunk-mib M] [--valkey]`
//!
//! Without a URL it starts a throwaway local server (Redis, or Valkey with `--valkey`) on a free port and stops
//! it afterwards. With a URL it works under a key namespace of its own and removes its keys when done.

#[path = "../tests/support/server.rs"]
mod server;

use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config};

struct Args {
    url: Option<String>,
    chunks: usize,
    chunk_mib: usize,
    valkey: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: None,
        chunks: 32,
        chunk_mib: 4,
        valkey: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .ok_or(format!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--chunks" => args.chunks = number("--chunks")?,
            "--chunk-mib" => args.chunk_mib = number("--chunk-mib")?,
            "--valkey" => args.valkey = true,
            "-h" | "--help" => {
                return Err("usage: demo [URL] [--chunks N] [--chunk-mib M] [--valkey]".into());
            }
            url if !url.starts_with('-') && args.url.is_none() => args.url = Some(url.to_string()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn rate(bytes: usize, d: Duration) -> String {
    format!(
        "{:>7.1} ms  {:>5.2} GiB/s",
        d.as_secs_f64() * 1e3,
        bytes as f64 / d.as_secs_f64() / (1u64 << 30) as f64
    )
}

/// A chunk's bytes: deterministic per index, so reads can be checked without keeping a copy.
fn chunk(i: usize, len: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), kvcache_redis::Error> {
    let (url, _server) = match &args.url {
        Some(url) => (url.clone(), None),
        None => {
            let kind = if args.valkey {
                server::Kind::Valkey
            } else {
                server::Kind::Redis
            };
            let s = server::Server::standalone(kind);
            println!(
                "started a throwaway {kind:?} server ({}) on {}",
                s.kind.binary().display(),
                s.addr()
            );
            (s.url(), Some(s))
        }
    };
    let started = Instant::now();
    let client = Client::with_config(Config::from_url(&url)?)?;
    let mode = if client.is_cluster() {
        format!("cluster, {} primaries", client.primaries().len())
    } else {
        "standalone".to_string()
    };
    println!("connected in {:.1} ms ({mode})", started.elapsed().as_secs_f64() * 1e3);

    let (n, len) = (args.chunks, args.chunk_mib << 20);
    let total = n * len;
    let ns = format!("kvcache-demo:{}:", std::process::id());
    let keys: Vec<String> = (0..n).map(|i| format!("{ns}chunk-{i}")).collect();
    let values: Vec<Vec<u8>> = (0..n).map(|i| chunk(i, len)).collect();
    println!("{n} chunks of {} MiB ({} MiB in all)", args.chunk_mib, total >> 20);

    let t = Instant::now();
    let put = client.batched_put(&keys, values)?;
    let failed = put.iter().filter(|r| r.is_err()).count();
    println!(
        "  batched_put               {}  ({} failed)",
        rate(total, t.elapsed()),
        failed
    );

    let t = Instant::now();
    let hits = client.batched_contains(&keys)?;
    println!(
        "  batched_contains          {:>7.1} ms  prefix {hits}/{n}",
        t.elapsed().as_secs_f64() * 1e3
    );

    let t = Instant::now();
    let got = client.batched_get(&keys)?;
    let took = t.elapsed();
    let good = got
        .iter()
        .enumerate()
        .filter(|(i, r)| matches!(r, Ok(Some(v)) if v[..] == chunk(*i, len)[..]))
        .count();
    println!(
        "  batched_get               {}  ({good}/{n} verified byte for byte)",
        rate(total, took)
    );

    let t = Instant::now();
    let pending = client.batched_get_non_blocking(&keys);
    let submitted = t.elapsed();
    let prefix = pending.wait()?;
    println!(
        "  batched_get_non_blocking  {}  (returned in {:.3} ms, prefix {}/{n})",
        rate(total, t.elapsed()),
        submitted.as_secs_f64() * 1e3,
        prefix.len()
    );

    let missing = format!("{ns}missing");
    let mixed = [&keys[0], &missing, &keys[n - 1]];
    let got = client.batched_get(&mixed)?;
    let shape: Vec<&str> = got
        .iter()
        .map(|r| match r {
            Ok(Some(_)) => "hit",
            Ok(None) => "miss",
            Err(_) => "error",
        })
        .collect();
    println!("  positional get of [first, missing, last]: {shape:?}");

    for k in &keys {
        client.remove(k)?;
    }
    let stats = client.stats();
    println!(
        "  cleaned up {n} keys; {} round trips, {} connections, {} errors",
        stats.round_trips, stats.connects, stats.key_errors
    );
    client.close()?;
    let ok = failed == 0 && hits == n && good == n && prefix.len() == n && shape == ["hit", "miss", "hit"];
    println!("{}", if ok { "all checks passed" } else { "SOME CHECKS FAILED" });
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
