//! The nemesis run (`scripts/chaos.sh`): a real 3+3 Cluster or a Sentinel set under a checked load on every
//! operation, with a seeded schedule of faults (`support::nemesis`), one at a time and two overlapping. At the end a
//! checker goes over what happened:
//! - every value read was one written for its key (`support::load`: never another key's, never a mix of two
//!   writes; `support::chunk_load`: a chunk's payload and metadata are its own, never torn between its two keys);
//! - no call outlived its deadline plus the grace (`HANG_SLACK`);
//! - after each fault, how long until every shard answered again (probes, `support::prober`), per fault kind;
//! - acknowledged writes later read as missing or older, each attributed to a documented window (an unreplicated
//!   write lost when a replica took over, whether a fault asked for the takeover or the servers made it themselves:
//!   `support::takeovers` sees them all) or flagged;
//! - errors callers saw, by kind and by the fault they fell in;
//! - the process's RSS and thread count at the start and the end.
//!
//! Run by `scripts/chaos.sh`, which sets `KVCACHE_CHAOS_MINUTES`, `KVCACHE_CHAOS_SEED`, `KVCACHE_CHAOS_TOPOLOGY`
//! (`cluster` or `sentinel`) and `KVCACHE_CHAOS_SERVER` (`redis` or `valkey`).

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config};
use support::chunk_load::ChunkLoad;
use support::load::{ERROR_BUCKET, Load, LoadOptions, rss_bytes};
use support::nemesis::{Deployment, FaultKind, FaultRecord, Nemesis, Topology, describe, schedule};
use support::prober::{Prober, longest_outage, recovery};
use support::takeovers::Takeover;
use support::{Kind, unique};

/// Every call's deadline.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How far past its deadline a call may return before it counts as hung: the client's reply grace (100 ms) plus
/// scheduling on a loaded two-core machine running six servers and thirty threads.
const HANG_SLACK: Duration = Duration::from_secs(1);
/// How far around a takeover an acknowledged write may be lost: before it, the replication lag of an asynchronous
/// replica; after it, the old primary may still take writes until the client has followed the switch (Sentinel
/// announces it; a Cluster's old primary hears of it by gossip). Generously.
const LAG: Duration = Duration::from_millis(1500);

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn threads_now() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|t| t.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Why a write acknowledged at `acked` may have been lost, if a fault or a takeover explains it.
fn attribute(faults: &[FaultRecord], takeovers: &[Takeover], acked: Duration) -> Option<String> {
    let by_fault = faults.iter().find_map(|f| {
        let replaced = f.promoted.is_some() && f.hit_primary;
        let window = |to: Duration| f.start.saturating_sub(LAG) <= acked && acked <= to + LAG;
        if f.kind == FaultKind::KillPrimary && f.promoted.is_none() && acked <= f.end {
            Some("a primary killed and restarted empty before a replica took over".to_string())
        } else if replaced && window(f.promoted.unwrap_or(f.end)) {
            Some(format!(
                "unreplicated write lost when a replica took over ({})",
                f.kind.name()
            ))
        } else {
            None
        }
    });
    by_fault.or_else(|| {
        takeovers
            .iter()
            .find(|t| t.at.saturating_sub(LAG) <= acked && acked <= t.at + LAG)
            .map(|t| {
                format!(
                    "unreplicated write lost when a replica took over ({})",
                    takeover_cause(faults, t)
                )
            })
    })
}

/// What a takeover followed: the fault that asked for it (its promotion seen within 2 s of it), else a takeover the
/// servers made themselves, with the faults under way then.
fn takeover_cause(faults: &[FaultRecord], t: &Takeover) -> String {
    let asked = faults
        .iter()
        .find(|f| f.hit_primary && f.promoted.is_some_and(|p| p.abs_diff(t.at) <= Duration::from_secs(2)));
    match asked {
        Some(f) => f.kind.name().to_string(),
        None => format!("one no fault asked for, during {}", faults_at(faults, t.at)),
    }
}

/// The faults an error at `at` fell in: those that began before it and ended less than 2 s before it.
fn faults_at(faults: &[FaultRecord], at: Duration) -> String {
    let mut kinds: Vec<&str> = faults
        .iter()
        .filter(|f| f.start.saturating_sub(Duration::from_millis(200)) <= at && at <= f.end + Duration::from_secs(2))
        .map(|f| f.kind.name())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    if kinds.is_empty() {
        "(no fault)".into()
    } else {
        kinds.join(" + ")
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[test]
#[ignore = "a nemesis run of minutes: scripts/chaos.sh"]
fn nemesis() {
    let seed: u64 = env("KVCACHE_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    });
    println!("seed {seed}");
    let minutes: f64 = env("KVCACHE_CHAOS_MINUTES").unwrap_or(2.0);
    let topology = match std::env::var("KVCACHE_CHAOS_TOPOLOGY").as_deref() {
        Ok("sentinel") => Topology::Sentinel,
        Ok("cluster") => Topology::Cluster,
        _ if seed % 2 == 1 => Topology::Sentinel,
        _ => Topology::Cluster,
    };
    let kind = match std::env::var("KVCACHE_CHAOS_SERVER").as_deref() {
        Ok("redis") => Kind::Redis,
        Ok("valkey") => Kind::Valkey,
        _ if (seed / 2) % 2 == 1 => Kind::Redis,
        _ => Kind::Valkey,
    };
    println!("{minutes} minutes, {topology:?} of {kind:?}");

    let dep = Deployment::start(kind, topology);
    let partitionable = dep.partitionable();
    let steps = schedule(seed, topology, kind, partitionable, 10_000);
    let config = |query: &str| {
        Config::from_url(&dep.url(query))
            .expect("chaos URL")
            .request_timeout(TIMEOUT)
    };
    let client = Arc::new(Client::with_config(config("")).expect("open"));
    let replicas = Client::with_config(config("&read_from=replica")).expect("open replicas");
    let probe_client = Client::with_config(config("")).expect("open probes");
    let probe_keys = dep.probe_keys();

    let hang_bound = TIMEOUT + HANG_SLACK;
    let mut opts = LoadOptions::new(&unique("chaos"));
    opts.threads = 5;
    opts.keys_per_thread = 40;
    opts.sizes = vec![200, 4 << 10, 32 << 10, 128 << 10];
    opts.slow = TIMEOUT;
    // Nothing here takes them: kept, they would grow the RSS this run watches.
    opts.record_latencies = false;
    let load = Load::start(client.clone(), opts, hang_bound);
    let chunks = ChunkLoad::start(&client, &replicas, &unique("chaos-chunks"), load.started, hang_bound);
    let prober = Prober::start(&probe_client, probe_keys, load.started, Duration::from_millis(500));
    // The faults' clock is the load's.
    let watch = dep.watch_takeovers(load.started);
    let nemesis = Nemesis::new(dep, load.started);
    let anchor = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        - load.started.elapsed();
    println!(
        "the run's clock starts at {:.3} (Unix time, for the servers' logs)",
        anchor.as_secs_f64()
    );

    std::thread::sleep(Duration::from_secs(5));
    let (rss_start, threads_start) = (rss_bytes(), threads_now());
    let until = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let faults = nemesis.run(&steps, until);
    let settled = nemesis.settle(Duration::from_secs(60));
    let takeovers = watch.finish();
    if let Ok(dir) = std::env::var("KVCACHE_CHAOS_LOGS") {
        nemesis.dep.lock().save_logs(std::path::Path::new(&dir));
        println!("server logs saved in {dir}");
    }
    std::thread::sleep(Duration::from_secs(3));
    let (rss_end, threads_end) = (rss_bytes(), threads_now());
    let end = load.now();
    let r = load.finish();
    let (per_layout, c) = chunks.finish();
    let probes = prober.finish();

    // What happened.
    let done: Vec<&FaultRecord> = faults.iter().filter(|f| !f.note.starts_with("skipped")).collect();
    println!(
        "\n== seed {seed}: {topology:?} of {kind:?}, {:.1} minutes",
        end.as_secs_f64() / 60.0
    );
    let mut by_kind: BTreeMap<FaultKind, Vec<&FaultRecord>> = BTreeMap::new();
    for f in &done {
        by_kind.entry(f.kind).or_default().push(f);
    }
    let overlapped = done.iter().filter(|f| f.overlapped).count();
    println!(
        "faults: {} of {} kinds ({overlapped} overlapping another), {} skipped (no free target)",
        done.len(),
        by_kind.len(),
        faults.len() - done.len()
    );
    let unasked: Vec<String> = takeovers
        .iter()
        .map(|t| (t, takeover_cause(&faults, t)))
        .filter(|(_, cause)| cause.starts_with("one no fault"))
        .map(|(t, cause)| format!("{} at {:.1} s, {cause}", t.primary, t.at.as_secs_f64()))
        .collect();
    println!(
        "takeovers seen: {}, of which {} no fault asked for{}",
        takeovers.len(),
        unasked.len(),
        if unasked.is_empty() {
            String::new()
        } else {
            format!(": {}", unasked.join("; "))
        }
    );
    let mut never_recovered = Vec::new();
    println!("fault kind             n   recovery median / worst   longest outage median / worst");
    for (k, fs) in &by_kind {
        let mut rec = Vec::new();
        let mut out = Vec::new();
        for f in fs {
            let from = f.promoted.unwrap_or(f.end).min(f.end);
            match recovery(&probes, from) {
                Some(d) => {
                    rec.push(d);
                    out.push(longest_outage(&probes, f.start, from + d, end));
                }
                None => never_recovered.push(describe(f)),
            }
        }
        let worst = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
        println!(
            "{:<22} {:>3}   {:>7} ms / {:>5} ms          {:>7} ms / {:>5} ms",
            k.name(),
            fs.len(),
            median(&mut rec.clone()).as_millis(),
            worst(&rec).as_millis(),
            median(&mut out.clone()).as_millis(),
            worst(&out).as_millis()
        );
    }
    println!(
        "calls: {} (load) + {} (chunks: {} read, {} written, {} from replicas, {} replica misses)",
        r.calls, c.calls, c.chunks_read, c.chunks_written, c.replica_reads, c.replica_misses
    );
    println!(
        "wrong {} + {} (chunks), torn {}, hung {} + {}, slowest call {:?} / {:?}",
        r.wrong, c.wrong, c.torn, r.hung, c.hung, r.max_call, c.max_call
    );
    let mut errors: BTreeMap<(String, &str), u64> = BTreeMap::new();
    let mut unexplained: Vec<String> = Vec::new();
    for ((bucket, kind), n) in r.error_log.iter().chain(&c.error_log) {
        let at = ERROR_BUCKET * *bucket;
        let fault = faults_at(&faults, at);
        if fault == "(no fault)" && unexplained.len() < 12 {
            unexplained.push(format!("{:.1} s {kind} x{n}", at.as_secs_f64()));
        }
        *errors.entry((fault, *kind)).or_default() += n;
    }
    println!("errors by fault and kind ({} + {} in all):", r.errors(), c.errors);
    for ((fault, kind), n) in &errors {
        println!("  {fault:<40} {kind:<20} {n}");
    }
    if !unexplained.is_empty() {
        println!("  errors outside every fault (first few): {}", unexplained.join(", "));
    }
    if !c.samples.is_empty() {
        println!("  chunk samples: {:?}", c.samples);
    }
    let losses: Vec<Duration> = r.losses.iter().chain(&c.losses).copied().collect();
    let mut attributed: BTreeMap<String, u64> = BTreeMap::new();
    let mut flagged = Vec::new();
    for at in &losses {
        match attribute(&faults, &takeovers, *at) {
            Some(why) => *attributed.entry(why).or_default() += 1,
            None => flagged.push(*at),
        }
    }
    println!(
        "acknowledged writes lost: {} (stale {}, missing {}, chunks {}); flagged {}",
        losses.len(),
        r.stale,
        r.lost,
        c.lost,
        flagged.len()
    );
    for (why, n) in &attributed {
        println!("  {n}: {why}");
    }
    if !flagged.is_empty() {
        println!("  first stale reads: {:#?}", r.stale_samples);
    }
    for (name, l) in &per_layout {
        println!(
            "  chunks {name:<13} reads {:>7}  written {:>6}  errors {:>5}  lost {}",
            l.chunks_read, l.chunks_written, l.errors, l.lost
        );
    }
    let stats = client.stats();
    println!(
        "the load's client: {} keys answered, {} of them by the direct lanes",
        stats.keys, stats.direct_keys
    );
    println!(
        "RSS {} MiB at the start, {} MiB at the end; threads {threads_start} -> {threads_end}",
        rss_start >> 20,
        rss_end >> 20
    );

    assert!(
        settled.is_ok(),
        "the deployment never became healthy again: {settled:?}"
    );
    assert_eq!(
        r.wrong + c.wrong,
        0,
        "wrong values: {:?} {:?}",
        r.wrong_samples,
        c.samples
    );
    assert_eq!(c.torn, 0, "torn chunks: {:?}", c.samples);
    assert_eq!(
        r.hung + c.hung,
        0,
        "calls over {hang_bound:?}: slowest {:?} / {:?}",
        r.max_call,
        c.max_call
    );
    assert!(
        r.untyped.is_empty() && c.untyped.is_empty(),
        "untyped errors: {:?} {:?}",
        r.untyped,
        c.untyped
    );
    assert!(
        never_recovered.is_empty(),
        "shards that never answered again after: {never_recovered:?}"
    );
    assert!(
        flagged.is_empty(),
        "acknowledged writes lost outside any fault's window, acknowledged at {flagged:?}"
    );
    assert!(
        threads_end <= threads_start + 8,
        "threads grew: {threads_start} -> {threads_end}"
    );
    assert!(
        rss_end <= rss_start + (256 << 20),
        "RSS grew from {} MiB to {} MiB",
        rss_start >> 20,
        rss_end >> 20
    );
}
