//! Sentinel-managed failovers under the checked load of `support::load` (a primary, two replicas, three
//! Sentinels with quorum 2 and `down-after-milliseconds` 1000): a manual `SENTINEL FAILOVER`, the primary killed,
//! the primary frozen and woken after it was replaced, a Sentinel down, every Sentinel down, and replicas that die
//! or freeze while reads are spread over them. "The switch" is when the first Sentinel names the new primary.
//! Each test prints one row of the table in the README; the tests run one at a time.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, ReadFrom};
use support::load::{Load, LoadOptions, Report};
use support::sentinel::{SentinelOptions, SentinelSet};
use support::{Kind, serial, unique};

const HANG_BOUND: Duration = Duration::from_secs(7);
/// The availability bound the tests assert (the goal is 1 s; this is the margin a noisy 2-core machine needs).
const RECOVERY_BOUND: Duration = Duration::from_secs(2);

fn set(kind: Kind) -> SentinelSet {
    SentinelSet::start(
        kind,
        SentinelOptions {
            replicas: 2,
            sentinels: 3,
            ..SentinelOptions::default()
        },
    )
}

fn load_opts(prefix: &str, content_addressed: bool) -> LoadOptions {
    let mut opts = LoadOptions::new(prefix);
    opts.keys_per_thread = 200;
    opts.sizes = vec![2 << 10, 4 << 10, 6 << 10];
    opts.track_oks = true;
    opts.content_addressed = content_addressed;
    opts
}

fn client(s: &SentinelSet, read_from: ReadFrom) -> Arc<Client> {
    let config: Config = s.url("redis+sentinel", "").parse().unwrap();
    Arc::new(Client::with_config(config.read_from(read_from)).unwrap())
}

/// Waits until any Sentinel names a primary other than `old`; returns it and when, on the load's clock.
fn wait_switch(s: &SentinelSet, load: &Load, old: &str) -> (String, Duration) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(new) = s.primary_seen().into_iter().flatten().find(|p| p != old) {
            return (new, load.now());
        }
        assert!(Instant::now() < until, "no Sentinel ever named a new primary");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn row(kind: Kind, scenario: &str, r: &Report, fault: Duration, switch: Option<Duration>, client: &Client) {
    let g = &r.groups[0];
    let ms = |d: Duration| format!("{} ms", d.as_millis());
    let (first_ok, last_error) = match switch {
        Some(sw) => (
            g.first_ok_after(sw)
                .map_or("never".into(), |t| ms(t.saturating_sub(sw))),
            match g.last_error {
                Some(e) if e > sw => ms(e - sw),
                Some(_) => "none after it".into(),
                None => "no error".into(),
            },
        ),
        None => (
            "-".into(),
            if g.errors == 0 {
                "no error".into()
            } else {
                format!("{} errors", g.errors)
            },
        ),
    };
    let s = client.stats();
    println!(
        "ROW | {kind:?} | {scenario} | switch {} after the fault | errors {} | wrong {} / stale {} / lost {} | from the \
         switch: first success {first_ok}, last error {last_error} | slowest call {} ms | {} calls | refreshes {}, \
         rerouted {}, retries {}",
        switch.map_or("-".into(), |sw| ms(sw.saturating_sub(fault))),
        g.errors,
        r.wrong,
        r.stale,
        r.lost,
        r.max_call.as_millis(),
        r.calls,
        s.refreshes,
        s.rerouted,
        s.retries
    );
    println!(
        "  errors: first {:?}, last {:?}; {:?}",
        g.first_error, g.last_error, g.samples
    );
}

/// No wrong bytes, no hung call, typed errors, a real load; and no write lost that was acknowledged more than the
/// bound after the switch (writes acknowledged by the old primary in between may be lost: counted).
fn assert_sound(what: &str, r: &Report, switch: Option<Duration>) {
    assert_eq!(r.wrong, 0, "{what}: wrong values {:?}", r.wrong_samples);
    assert_eq!(r.hung, 0, "{what}: calls over {HANG_BOUND:?} (max {:?})", r.max_call);
    assert!(r.untyped.is_empty(), "{what}: untyped errors {:?}", r.untyped);
    assert!(
        r.key_ops > 500,
        "{what}: too little load to mean anything: {}",
        r.key_ops
    );
    if let Some(sw) = switch {
        let between = r
            .losses
            .iter()
            .filter(|at| **at >= sw && **at < sw + RECOVERY_BOUND)
            .count();
        let late: Vec<&Duration> = r.losses.iter().filter(|at| **at >= sw + RECOVERY_BOUND).collect();
        let latest = r
            .losses
            .iter()
            .max()
            .map(|at| at.as_millis() as i128 - sw.as_millis() as i128);
        println!(
            "  stale or lost reads: {} (of writes acknowledged within {RECOVERY_BOUND:?} after the switch: {between}; \
             latest acknowledged {latest:?} ms from the switch)",
            r.losses.len()
        );
        assert!(
            late.is_empty(),
            "{what}: writes acknowledged after the switch were lost: {late:?}"
        );
    }
}

fn assert_followed(what: &str, r: &Report, switch: Duration) {
    let g = &r.groups[0];
    let first = g.first_ok_after(switch);
    assert!(
        first.is_some_and(|t| t <= switch + RECOVERY_BOUND),
        "{what}: first success {:?} after the switch",
        first.map(|t| t - switch)
    );
    if let Some(last) = g.last_error {
        assert!(
            last <= switch + RECOVERY_BOUND,
            "{what}: an error {:?} after the switch",
            last.saturating_sub(switch)
        );
    }
}

/// `SENTINEL FAILOVER`: the client follows at once; errors, if any, only within the switch.
fn manual_failover(kind: Kind) {
    let _serial = serial();
    let s = set(kind);
    let client = client(&s, ReadFrom::Primary);
    let load = Load::start(client.clone(), load_opts(&unique("sfail"), false), HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let fault = load.now();
    redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(&s.service)
        .exec(&mut s.sentinels[0].admin())
        .unwrap();
    let (new, switch) = wait_switch(&s, &load, &s.nodes[0].addr());
    std::thread::sleep(Duration::from_millis(3000));
    let r = load.finish();
    row(kind, "SENTINEL FAILOVER", &r, fault, Some(switch), &client);
    assert_sound("manual failover", &r, Some(switch));
    assert_followed("manual failover", &r, switch);
    let now: Vec<Option<String>> = s.primary_seen();
    println!("  first named {new}; now {now:?}; client {:?}", client.primaries());
    for n in &s.nodes {
        let role: redis::Value = redis::cmd("ROLE").query(&mut n.admin()).unwrap();
        println!("  {} {:?}", n.addr(), role);
    }
    assert_eq!(client.primaries(), vec![new]);
}

/// The primary killed: its calls fail until the Sentinels promote a replica, then succeed within the bound.
fn killed_primary(kind: Kind) {
    let _serial = serial();
    let mut s = set(kind);
    let client = client(&s, ReadFrom::Primary);
    let load = Load::start(client.clone(), load_opts(&unique("skill"), false), HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let old = s.nodes[0].addr();
    let fault = load.now();
    s.nodes[0].kill();
    let (_, switch) = wait_switch(&s, &load, &old);
    std::thread::sleep(Duration::from_millis(3000));
    let r = load.finish();
    row(kind, "primary killed (SIGKILL)", &r, fault, Some(switch), &client);
    assert_sound("killed primary", &r, Some(switch));
    assert_followed("killed primary", &r, switch);
}

/// The primary frozen, replaced, then woken: the client follows the switch, and sends no write to the old primary,
/// which says it is the primary, and takes writes, until the Sentinels turn it into a replica (seconds later).
fn frozen_primary_woken_after(kind: Kind) {
    let _serial = serial();
    let s = set(kind);
    let client = client(&s, ReadFrom::Primary);
    let load = Load::start(client.clone(), load_opts(&unique("sfrozen"), false), HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let old = s.nodes[0].addr();
    let fault = load.now();
    s.nodes[0].freeze();
    let (_, switch) = wait_switch(&s, &load, &old);
    s.nodes[0].thaw();
    // What was sent to it before the switch runs as it wakes; nothing sent later may.
    std::thread::sleep(Duration::from_millis(300));
    let (as_primary, watched) = writes_while_primary(&s.nodes[0], Duration::from_millis(2700));
    let r = load.finish();
    row(
        kind,
        "primary frozen (SIGSTOP), replaced, then woken",
        &r,
        fault,
        Some(switch),
        &client,
    );
    println!(
        "  SETs the woken old primary ran while it still said it was the primary: {as_primary} (watched {watched:?})"
    );
    assert_sound("frozen primary", &r, Some(switch));
    assert_followed("frozen primary", &r, switch);
    assert_eq!(as_primary, 0, "writes reached the old primary after the switch");
    assert!(
        watched > Duration::from_millis(500),
        "the old primary was converted too soon to tell: {watched:?}"
    );
}

/// SETs `node` runs while it says it is a primary, over `span` (or until it stops saying so); and how long it did.
fn writes_while_primary(node: &support::Server, span: Duration) -> (u64, Duration) {
    let started = Instant::now();
    let sample = || {
        let info: String = redis::cmd("INFO").arg("all").query(&mut node.admin()).expect("INFO");
        let sets = info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_set:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        (info.contains("role:master"), sets)
    };
    let (mut primary, first) = sample();
    let mut last = first;
    while primary && started.elapsed() < span {
        std::thread::sleep(Duration::from_millis(20));
        let (p, sets) = sample();
        if p {
            last = sets;
        }
        primary = p;
    }
    (last - first, started.elapsed())
}

/// One Sentinel down: the others serve discovery and announce the next failover.
fn one_sentinel_down(kind: Kind) {
    let _serial = serial();
    let mut s = set(kind);
    let client = client(&s, ReadFrom::Primary);
    let load = Load::start(client.clone(), load_opts(&unique("sone"), false), HANG_BOUND);
    std::thread::sleep(Duration::from_millis(500));
    s.sentinels[2].kill();
    let fault = load.now();
    redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(&s.service)
        .exec(&mut s.sentinels[0].admin())
        .unwrap();
    let (_, switch) = wait_switch(&s, &load, &s.nodes[0].addr());
    std::thread::sleep(Duration::from_millis(2500));
    let r = load.finish();
    row(
        kind,
        "one Sentinel killed, then SENTINEL FAILOVER",
        &r,
        fault,
        Some(switch),
        &client,
    );
    assert_sound("one Sentinel down", &r, Some(switch));
    assert_followed("one Sentinel down", &r, switch);
}

/// Every Sentinel down while the primary is healthy: data calls go on untouched.
fn every_sentinel_down(kind: Kind) {
    let _serial = serial();
    let mut s = set(kind);
    let client = client(&s, ReadFrom::Primary);
    let load = Load::start(client.clone(), load_opts(&unique("sall"), false), HANG_BOUND);
    std::thread::sleep(Duration::from_millis(500));
    let fault = load.now();
    for sentinel in &mut s.sentinels {
        sentinel.kill();
    }
    std::thread::sleep(Duration::from_millis(3000));
    let r = load.finish();
    row(kind, "every Sentinel killed, primary healthy", &r, fault, None, &client);
    assert_sound("every Sentinel down", &r, None);
    assert_eq!(
        r.errors(),
        0,
        "data calls failed without Sentinels: {:?}",
        r.groups[0].samples
    );
    assert_eq!((r.stale, r.lost), (0, 0));
}

/// Reads spread over the primary and two replicas, one replica killed or frozen: its reads move to the others at
/// once (content-addressed values: a replica can miss, never be stale).
fn spread_reads_survive_a_replica(kind: Kind, kill: bool) {
    let _serial = serial();
    let mut s = set(kind);
    let client = client(&s, ReadFrom::Spread);
    let load = Load::start(client.clone(), load_opts(&unique("spread"), true), HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let fault = load.now();
    if kill {
        s.nodes[1].kill();
    } else {
        s.nodes[1].freeze();
    }
    std::thread::sleep(Duration::from_millis(3000));
    if !kill {
        s.nodes[1].thaw();
    }
    let r = load.finish();
    let scenario = if kill {
        "read_from=spread, a replica killed"
    } else {
        "read_from=spread, a replica frozen 3 s"
    };
    row(kind, scenario, &r, fault, None, &client);
    assert_eq!(r.wrong, 0, "wrong values {:?}", r.wrong_samples);
    assert_eq!(r.stale, 0, "content-addressed values cannot be stale");
    assert!(r.untyped.is_empty() && r.hung == 0, "{:?}", r.untyped);
    let g = &r.groups[0];
    if let Some(last) = g.last_error {
        assert!(
            last <= fault + RECOVERY_BOUND,
            "reads kept failing {:?} after the fault",
            last - fault
        );
    }
    assert!(g.last_ok > Some(fault + Duration::from_secs(2)), "reads stopped");
    // Reads waiting on a silent replica are resent elsewhere long before a primary would be suspected.
    assert!(
        r.max_call < Duration::from_secs(1),
        "a call waited {:?} on the replica",
        r.max_call
    );
}

fn replica_killed_under_spread_reads(kind: Kind) {
    spread_reads_survive_a_replica(kind, true);
}

fn replica_frozen_under_spread_reads(kind: Kind) {
    spread_reads_survive_a_replica(kind, false);
}

per_kind!(
    manual_failover,
    killed_primary,
    frozen_primary_woken_after,
    one_sentinel_down,
    every_sentinel_down,
    replica_killed_under_spread_reads,
    replica_frozen_under_spread_reads
);
