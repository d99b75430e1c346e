//! The comparison runner: starts its own servers, runs every workload with kvcache-redis and with the baselines
//! alternately in the same run, and prints one table (workload, baseline, ours, ratio, latencies). With `--write`
//! it also rewrites the results part of BENCHMARKS.md and the data behind its plot.
//!
//! `scripts/bench.sh [--quick] [--write]` (or `cargo bench --bench compare -- [--quick] [--write]`).
//!
//! Files: `runner` (the table's rows, alternation, medians, the markdown), `support` (baseline connections, keys
//! and values, the raw reader, CPU and memory probes), and one file per workload group.

#[path = "../../tests/support/sentinel.rs"]
#[allow(dead_code)]
mod sentinel;
#[path = "../../tests/support/server.rs"]
mod server;
#[path = "../../tests/support/tls.rs"]
#[allow(dead_code)]
mod tls;

mod chunks;
mod cluster;
mod large;
mod memory;
mod peek;
mod replicas;
mod runner;
mod small;
mod support;
mod sweep;
mod threads;
mod timing;

use std::fmt::Write as _;
use std::time::Instant;

use runner::{Runner, machine, markdown};
use server::{Kind, Server};
use support::memory_probe;

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;

/// What every workload file uses.
mod prelude {
    pub use std::io::{Read, Write};
    pub use std::net::TcpStream;
    pub use std::time::{Duration, Instant};

    pub use bytes::Bytes;
    pub use kvcache_redis::{Client, Config};
    pub use redis::IntoConnectionInfo;

    pub use crate::runner::{Row, Runner};
    pub use crate::server::{Cluster, Kind, Server};
    pub use crate::support::*;
    pub use crate::timing::{alternate, median, percentile};
    pub use crate::{KIB, MIB};
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--memory-probe") {
        return memory_probe(&args[1], &args[2]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let write = args.iter().any(|a| a == "--write");
    // Words name the groups to run (all when none).
    let groups: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--") && *a != "compare")
        .map(String::as_str)
        .collect();
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
        let want = |w: &str| groups.is_empty() || groups.contains(&w);
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
        if want("replicas") {
            r.replica_reads(name, kind);
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
