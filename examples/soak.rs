//! A long soak: several threads mix batched and single puts and gets of values from 100 B to 300 KiB (every
//! value read is checked byte for byte against what was written), a fault is injected midway, and once per
//! second it prints throughput, latency p50/p99, errors so far and resident memory.
//!
//! `cargo run --release --example soak -- [URL] [--secs N] [--threads N] [--fault restart|clients|none] [--valkey]`
//!
//! Without a URL it starts a throwaway local server (Redis, or Valkey with `--valkey`), and the fault is a
//! restart of that server. With a URL the fault is `CLIENT KILL TYPE normal` (every client connection of the
//! server is cut; needs the right to run it), and the keys live under a namespace of their own.
//! Exits non-zero if a value read back was wrong or a call hung.

#[allow(dead_code)]
#[path = "../tests/support/load.rs"]
mod load;
#[path = "../tests/support/server.rs"]
mod server;
#[allow(dead_code)]
#[path = "../tests/support/soak.rs"]
mod soak;

use std::sync::Arc;
use std::time::Duration;

use kvcache_redis::{Client, Config};

struct Args {
    url: Option<String>,
    secs: u64,
    threads: usize,
    fault: String,
    valkey: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: None,
        secs: 60,
        threads: 4,
        fault: String::new(),
        valkey: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .ok_or(format!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--secs" => args.secs = number("--secs")?,
            "--threads" => args.threads = number("--threads")? as usize,
            "--fault" => args.fault = it.next().ok_or("--fault needs restart, clients or none")?,
            "--valkey" => args.valkey = true,
            "-h" | "--help" => {
                return Err(
                    "usage: soak [URL] [--secs N] [--threads N] [--fault restart|clients|none] [--valkey]".into(),
                );
            }
            url if !url.starts_with('-') && args.url.is_none() => args.url = Some(url.to_string()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.fault.is_empty() {
        args.fault = if args.url.is_some() { "clients" } else { "restart" }.into();
    }
    match args.fault.as_str() {
        "restart" if args.url.is_some() => Err("--fault restart needs the throwaway local server (no URL)".into()),
        "restart" | "clients" | "none" => Ok(args),
        other => Err(format!("unknown fault {other:?}")),
    }
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let mut local = args.url.is_none().then(|| {
        let kind = if args.valkey {
            server::Kind::Valkey
        } else {
            server::Kind::Redis
        };
        let s = server::Server::standalone(kind);
        println!("started a throwaway {kind:?} server at {}", s.addr());
        s
    });
    let url = args.url.clone().unwrap_or_else(|| local.as_ref().unwrap().url());
    let config = Config::from_url(&url).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let timeout = Duration::from_secs(2);
    let client = Arc::new(
        Client::with_config(config.request_timeout(timeout)).unwrap_or_else(|e| {
            eprintln!("cannot connect: {e}");
            std::process::exit(1)
        }),
    );
    let prefix = format!("kvcache-soak:{}:", std::process::id());
    let mut opts = load::LoadOptions::new(&prefix);
    opts.threads = args.threads;
    let duration = Duration::from_secs(args.secs);
    let fault_at = (args.fault != "none").then_some(duration / 2);
    println!(
        "soak: {} threads for {:?}, fault {:?} at {:?}",
        args.threads, duration, args.fault, fault_at
    );
    println!("{}", soak::Tick::HEADER);
    let fault_kind = args.fault.clone();
    let fault_url = url.clone();
    let soak = soak::run(
        client.clone(),
        opts,
        soak::Plan {
            duration,
            tick: Duration::from_secs(1),
            fault_at,
            hang_bound: timeout * 2,
        },
        || {
            println!("-- injecting fault: {fault_kind}");
            match fault_kind.as_str() {
                "restart" => {
                    let s = local.as_mut().expect("local server");
                    s.stop();
                    std::thread::sleep(Duration::from_millis(500));
                    s.restart();
                }
                "clients" => {
                    let killed = redis::Client::open(fault_url.as_str())
                        .and_then(|c| c.get_connection())
                        .and_then(|mut c| {
                            redis::cmd("CLIENT")
                                .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
                                .query::<i64>(&mut c)
                        });
                    match killed {
                        Ok(n) => println!("-- {n} client connections cut"),
                        Err(e) => println!("-- CLIENT KILL failed: {e}"),
                    }
                }
                _ => {}
            }
        },
        |t| println!("{}", t.row()),
    );
    let r = &soak.report;
    println!(
        "done: {} calls, {} key ops, {:.1} GiB moved; {} errors (the last at {:?}), {} wrong, {} hung, \
         {} stale, {} lost; slowest call {:?}; RSS growth after warm-up {} MiB",
        r.calls,
        r.key_ops,
        r.bytes as f64 / (1u64 << 30) as f64,
        r.errors(),
        r.last_error(),
        r.wrong,
        r.hung,
        r.stale,
        r.lost,
        r.max_call,
        soak.rss_growth_after(Duration::from_secs(5).min(duration / 4)) >> 20
    );
    let stats = client.stats();
    println!(
        "client stats: {} keys, {} hits, {} misses, {} key errors, {} reconnects, {} io retries, {} timeouts",
        stats.keys, stats.hits, stats.misses, stats.key_errors, stats.connects, stats.io_retries, stats.timeouts
    );
    for s in r.groups.iter().flat_map(|g| &g.samples).take(3) {
        println!("  error sample: {s}");
    }
    for s in &r.wrong_samples {
        println!("  WRONG: {s}");
    }
    // Remove this run's keys when running against someone else's server.
    if args.url.is_some() {
        let keys_per_thread = load::LoadOptions::new("").keys_per_thread;
        let keys: Vec<String> = (0..args.threads)
            .flat_map(|t| (0..keys_per_thread).map(move |i| (t, i)))
            .map(|(t, i)| format!("{prefix}t{t}:k{i}"))
            .collect();
        let _ = client.batched_remove(&keys);
    }
    drop(local);
    if r.wrong > 0 || r.hung > 0 {
        std::process::exit(1);
    }
}
