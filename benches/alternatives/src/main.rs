//! kvcache-redis side by side with what a Rust service would pick instead, driven from plain threads as our users'
//! code is: redis-rs's blocking connections, redis-rs's async `MultiplexedConnection` (which pipelines concurrent
//! requests by itself) and fred (automatic pipelining), both on one shared tokio runtime (2 worker threads) through
//! `Handle::block_on`. Every workload runs each client alternately (rotating which goes first), on the same keys and
//! values, checking every value read; medians of the rounds. Each baseline is reported at its best setting of the
//! ones tried (named in its column).
//!
//! `scripts/bench.sh alternatives` (or `cargo run --release --manifest-path benches/alternatives/Cargo.toml`);
//! `--quick` runs fewer rounds; `--write` rewrites the table in BENCHMARKS.md.

#[path = "../../../tests/support/server.rs"]
mod server;
// Shared with the comparison runner, which also uses its percentiles.
#[allow(dead_code)]
#[path = "../../compare/timing.rs"]
mod timing;

mod clients;
mod workloads;

use std::fmt::Write as _;

use server::{Cluster, Kind, Server};

/// One row: the workload, its unit, and each client's median (higher is better), with the setting it was best at.
pub struct Row {
    pub server: &'static str,
    pub workload: String,
    pub unit: &'static str,
    pub ours: f64,
    /// (client, setting, median) per alternative.
    pub others: Vec<(&'static str, String, f64)>,
    /// This crate with `direct_reads` off (every call through the workers), where a row measures it too.
    pub workers_only: Option<f64>,
}

impl Row {
    fn best_other(&self) -> f64 {
        self.others.iter().map(|(_, _, v)| *v).fold(f64::NAN, f64::max)
    }

    fn print(&self) {
        let others: Vec<String> = self
            .others
            .iter()
            .map(|(c, s, v)| format!("{c} {v:.2} ({s})"))
            .collect();
        let workers_only = self.workers_only.map_or(String::new(), |w| {
            format!(" | direct_reads off {w:.2}, on / off {:.2}x", self.ours / w)
        });
        println!(
            "{:<7} {:<40} ours {:>9.2} {:<6} | {} | ours / best {:.2}x{workers_only}",
            self.server,
            self.workload,
            self.ours,
            self.unit,
            others.join(" | "),
            self.ours / self.best_other()
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds = if args.iter().any(|a| a == "--quick") { 3 } else { 7 };
    let write = args.iter().any(|a| a == "--write");
    // Group names run those groups alone: `threads`, `batched`, `cluster`.
    let groups: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let want = |group: &str| groups.is_empty() || groups.contains(&group);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    for (kind, name) in [(Kind::Redis, "Redis"), (Kind::Valkey, "Valkey")] {
        let server = Server::standalone(kind);
        let w = workloads::Standalone::new(&rt, &server.url(), rounds);
        let runs: [(&str, &dyn Fn() -> Row); 5] = [
            ("threads", &|| w.threads(name, 16, 64)),
            ("threads", &|| w.threads(name, 16, 4 << 10)),
            ("batched", &|| w.batched_get(name, 1000, 4 << 10)),
            ("batched", &|| w.batched_get(name, 8, 32 << 20)),
            ("batched", &|| w.batched_put(name, 8, 32 << 20)),
        ];
        for (_, run) in runs.iter().filter(|(group, _)| want(group)) {
            let row = run();
            row.print();
            rows.push(row);
        }
        drop(w);
        drop(server);
        if !want("cluster") {
            continue;
        }
        let cluster = Cluster::start(kind, 3, 0);
        let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
        let row = workloads::cluster_gets(&rt, name, &cluster.url(), &nodes, rounds);
        row.print();
        rows.push(row);
    }
    if write && groups.is_empty() {
        write_table(&rows);
    }
}

/// The markdown table, into BENCHMARKS.md between its `alternatives` markers.
fn write_table(rows: &[Row]) {
    let mut t = String::from(
        "| server | workload | unit | this crate | redis-rs sync | redis-rs multiplexed | fred | this crate / best alternative |\n\
         |---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let cell = |client: &str| {
            r.others
                .iter()
                .find(|(c, ..)| *c == client)
                .map_or("-".to_string(), |(_, s, v)| format!("{v:.2} ({s})"))
        };
        writeln!(
            t,
            "| {} | {} | {} | {:.2} | {} | {} | {} | {:.2}x |",
            r.server,
            r.workload,
            r.unit,
            r.ours,
            cell("redis-rs sync"),
            cell("redis-rs multiplexed"),
            cell("fred"),
            r.ours / r.best_other()
        )
        .unwrap();
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../BENCHMARKS.md");
    let doc = std::fs::read_to_string(&path).expect("BENCHMARKS.md");
    let (start, end) = ("<!-- alternatives:start -->", "<!-- alternatives:end -->");
    match (doc.find(start), doc.find(end)) {
        (Some(a), Some(b)) => {
            let new = format!("{}{start}\n{t}{}", &doc[..a], &doc[b..]);
            std::fs::write(&path, new).expect("write BENCHMARKS.md");
            println!("updated BENCHMARKS.md");
        }
        _ => println!("BENCHMARKS.md has no alternatives markers:\n{t}"),
    }
}
