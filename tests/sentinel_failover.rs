//! Sentinel-managed failovers under the checked load of `support::load` (a primary, two replicas, three
//! Sentinels with quorum 2 and `down-after-milliseconds` 1000): a manual `SENTINEL FAILOVER`, the primary killed,
//! the primary frozen and woken after it was replaced, the primary cut off by a real partition (a network
//! namespace; skipped loudly where namespaces are not permitted) and joined again, a Sentinel down, every Sentinel
//! down, replicas that die or freeze while reads are spread over them, and a manual failover over TLS. "The switch" is when the first Sentinel names the new primary.
//! Each test prints one row of the table in the README; the tests run one at a time.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, ReadFrom};
use support::load::{Load, LoadOptions, Report};
use support::sentinel::{SentinelOptions, SentinelSet, Switches};
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

fn row(kind: Kind, scenario: &str, r: &Report, fault: Duration, switches: &[Duration], client: &Client) {
    row_labelled(&format!("{kind:?}"), scenario, r, fault, switches, client);
}

fn row_labelled(label: &str, scenario: &str, r: &Report, fault: Duration, switches: &[Duration], client: &Client) {
    let switch = switches.first().copied();
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
        "ROW | {label} | {scenario} | switch {} after the fault | errors {} | wrong {} / stale {} / lost {} | from the \
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
    if switches.len() > 1 {
        println!(
            "  the Sentinels failed over again: new primaries named at {:?} after the first",
            switches[1..].iter().map(|t| *t - switches[0]).collect::<Vec<_>>()
        );
    }
}

/// No wrong bytes, no hung call, typed errors, a real load; and no write lost that was acknowledged more than the
/// bound after the last switch (writes acknowledged by a replaced primary before the client learned of its
/// replacement may be lost: counted; a failover can be followed by another).
fn assert_sound(what: &str, r: &Report, switches: &[Duration]) {
    assert_eq!(r.wrong, 0, "{what}: wrong values {:?}", r.wrong_samples);
    assert_eq!(r.hung, 0, "{what}: calls over {HANG_BOUND:?} (max {:?})", r.max_call);
    assert!(r.untyped.is_empty(), "{what}: untyped errors {:?}", r.untyped);
    assert!(
        r.key_ops > 500,
        "{what}: too little load to mean anything: {}",
        r.key_ops
    );
    if let (Some(&first), Some(&last)) = (switches.first(), switches.last()) {
        let between = r
            .losses
            .iter()
            .filter(|at| **at >= first && **at < last + RECOVERY_BOUND)
            .count();
        let late: Vec<&Duration> = r.losses.iter().filter(|at| **at >= last + RECOVERY_BOUND).collect();
        let latest = r
            .losses
            .iter()
            .max()
            .map(|at| at.as_millis() as i128 - last.as_millis() as i128);
        println!(
            "  stale or lost reads: {} (of writes acknowledged from the switch to {RECOVERY_BOUND:?} after the last: \
             {between}; latest acknowledged {latest:?} ms from the last switch)",
            r.losses.len()
        );
        assert!(
            late.is_empty(),
            "{what}: writes acknowledged after the switch were lost: {late:?}"
        );
    }
}

/// Calls succeed within the bound of the first switch, and fail no later than the bound after the last.
fn assert_followed(what: &str, r: &Report, switches: &[Duration]) {
    let (switch, last_switch) = (switches[0], *switches.last().expect("a switch"));
    let g = &r.groups[0];
    let first = g.first_ok_after(switch);
    assert!(
        first.is_some_and(|t| t <= switch + RECOVERY_BOUND),
        "{what}: first success {:?} after the switch",
        first.map(|t| t - switch)
    );
    if let Some(last) = g.last_error {
        assert!(
            last <= last_switch + RECOVERY_BOUND,
            "{what}: an error {:?} after the switch",
            last.saturating_sub(last_switch)
        );
    }
}

fn times(switches: Vec<(String, Duration)>) -> Vec<Duration> {
    switches.into_iter().map(|(_, t)| t).collect()
}

/// `SENTINEL FAILOVER`: the client follows at once; errors, if any, only within the switch.
fn manual_failover(kind: Kind) {
    let _serial = serial();
    let s = set(kind);
    let client = client(&s, ReadFrom::Primary);
    failover_on(
        &s,
        client,
        load_opts(&unique("sfail"), false),
        &format!("{kind:?}"),
        "SENTINEL FAILOVER",
    );
}

/// The same over TLS everywhere (Redis 7: clients, replication and Sentinels' links), with reads spread over the
/// primary and the replicas, so every kind of connection the client makes is a TLS one.
#[test]
fn redis7_tls_failover_with_spread_reads() {
    let _serial = serial();
    let s = SentinelSet::start(
        Kind::Redis,
        SentinelOptions {
            replicas: 2,
            sentinels: 3,
            tls: true,
            ..SentinelOptions::default()
        },
    );
    let ca = support::tls::Certs::get().path("ca.crt");
    let config: Config = s
        .url("rediss+sentinel", &format!("?tls_ca={}", ca.display()))
        .parse()
        .unwrap();
    let client = Arc::new(Client::with_config(config.read_from(ReadFrom::Spread)).unwrap());
    assert_eq!(client.primaries(), vec![s.known_addr(0)]);
    failover_on(
        &s,
        client,
        load_opts(&unique("stls"), true),
        "Redis over TLS, spread reads",
        "SENTINEL FAILOVER",
    );
}

/// A `SENTINEL FAILOVER` under load on `s` (asked of its last Sentinel), followed by `client`; the row is
/// `label`'s, for `scenario`.
fn failover_on(s: &SentinelSet, client: Arc<Client>, opts: LoadOptions, label: &str, scenario: &str) {
    let load = Load::start(client.clone(), opts, HANG_BOUND);
    let watch = Switches::watch(s, s.known_addr(0), load.started);
    std::thread::sleep(Duration::from_millis(800));
    let fault = load.now();
    redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(&s.service)
        .exec(&mut s.sentinels.last().expect("a Sentinel").admin())
        .unwrap();
    watch.first();
    std::thread::sleep(Duration::from_millis(3000));
    let r = load.finish();
    let switches = watch.finish();
    let last = switches.last().expect("a switch").0.clone();
    let switches = times(switches);
    row_labelled(label, scenario, &r, fault, &switches, &client);
    assert_sound(scenario, &r, &switches);
    assert_followed(scenario, &r, &switches);
    println!(
        "  last named {last}; now {:?}; client {:?}",
        s.primary_seen(),
        client.primaries()
    );
    assert_eq!(client.primaries(), vec![last]);
}

/// The primary killed: its calls fail until the Sentinels promote a replica, then succeed within the bound.
fn killed_primary(kind: Kind) {
    let _serial = serial();
    let mut s = set(kind);
    let client = client(&s, ReadFrom::Primary);
    let load = Load::start(client.clone(), load_opts(&unique("skill"), false), HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let watch = Switches::watch(&s, s.known_addr(0), load.started);
    let fault = load.now();
    s.nodes[0].kill();
    watch.first();
    std::thread::sleep(Duration::from_millis(3000));
    let r = load.finish();
    let switches = times(watch.finish());
    row(kind, "primary killed (SIGKILL)", &r, fault, &switches, &client);
    assert_sound("killed primary", &r, &switches);
    assert_followed("killed primary", &r, &switches);
}

/// The primary frozen, replaced, then woken: the client follows the switch, and sends no write to the old primary,
/// which says it is the primary, and takes writes, until the Sentinels turn it into a replica (seconds later).
fn frozen_primary_woken_after(kind: Kind) {
    let _serial = serial();
    let s = set(kind);
    let client = client(&s, ReadFrom::Primary);
    let load = Load::start(client.clone(), load_opts(&unique("sfrozen"), false), HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let watch = Switches::watch(&s, s.known_addr(0), load.started);
    let fault = load.now();
    s.nodes[0].freeze();
    watch.first();
    s.nodes[0].thaw();
    // What was sent to it before the switch runs as it wakes; nothing sent later may.
    std::thread::sleep(Duration::from_millis(300));
    let (as_primary, watched) = writes_while_primary(&s.nodes[0], Duration::from_millis(2700));
    let r = load.finish();
    let switches = times(watch.finish());
    row(
        kind,
        "primary frozen (SIGSTOP), replaced, then woken",
        &r,
        fault,
        &switches,
        &client,
    );
    println!(
        "  SETs the woken old primary ran while it still said it was the primary: {as_primary} (watched {watched:?})"
    );
    assert_sound("frozen primary", &r, &switches);
    assert_followed("frozen primary", &r, &switches);
    assert_eq!(as_primary, 0, "writes reached the old primary after the switch");
    assert!(
        watched > Duration::from_millis(500),
        "the old primary was converted too soon to tell: {watched:?}"
    );
}

/// The primary cut off by a real partition (its network namespace's link goes down: established connections go
/// silent, new connects hang), replaced, and joined again after: the client follows the switch within the bound,
/// and sends nothing to the old primary once it is back.
fn partitioned_primary(kind: Kind) {
    let _serial = serial();
    let Some(ns) = support::netns::Netns::create("partitioned_primary") else {
        return;
    };
    let s = SentinelSet::start(
        kind,
        SentinelOptions {
            replicas: 2,
            sentinels: 3,
            partitionable: Some(support::sentinel::Placement {
                netns: ns.name.clone(),
                ns_ip: ns.ns_ip.clone(),
                host_ip: ns.host_ip.clone(),
            }),
            ..SentinelOptions::default()
        },
    );
    let client = client(&s, ReadFrom::Primary);
    assert_eq!(client.primaries(), vec![s.known_addr(0)]);
    let load = Load::start(client.clone(), load_opts(&unique("spart"), false), HANG_BOUND);
    let watch = Switches::watch(&s, s.known_addr(0), load.started);
    std::thread::sleep(Duration::from_millis(800));
    let fault = load.now();
    ns.cut();
    watch.first();
    std::thread::sleep(Duration::from_millis(1000));
    ns.heal();
    let (as_primary, watched) = writes_while_primary(&s.nodes[0], Duration::from_millis(2000));
    let r = load.finish();
    let switches = times(watch.finish());
    row(
        kind,
        "primary partitioned (netns link down), replaced, link back 1 s later",
        &r,
        fault,
        &switches,
        &client,
    );
    println!(
        "  SETs the old primary ran after the link came back while it still said it was the primary: {as_primary} \
         (watched {watched:?})"
    );
    assert_sound("partitioned primary", &r, &switches);
    assert_followed("partitioned primary", &r, &switches);
    assert_eq!(as_primary, 0, "writes reached the old primary after the switch");
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
    s.sentinels[0].kill();
    let scenario = "one Sentinel killed, then SENTINEL FAILOVER";
    failover_on(
        &s,
        client,
        load_opts(&unique("sone"), false),
        &format!("{kind:?}"),
        scenario,
    );
}

/// One Sentinel frozen (it accepts connections and answers nothing) before the client opens: the client opens
/// from the others at once and follows the next failover as fast as with every Sentinel up.
fn one_sentinel_frozen(kind: Kind) {
    let _serial = serial();
    let s = set(kind);
    s.sentinels[0].freeze();
    let t = Instant::now();
    let client = client(&s, ReadFrom::Primary);
    let opened = t.elapsed();
    println!("  opened in {opened:?} with the first Sentinel frozen");
    assert!(opened < Duration::from_secs(2), "opening took {opened:?}");
    let scenario = "one Sentinel frozen, then SENTINEL FAILOVER";
    failover_on(
        &s,
        client,
        load_opts(&unique("sfrz"), false),
        &format!("{kind:?}"),
        scenario,
    );
    s.sentinels[0].thaw();
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
    row(kind, "every Sentinel killed, primary healthy", &r, fault, &[], &client);
    assert_sound("every Sentinel down", &r, &[]);
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
    row(kind, scenario, &r, fault, &[], &client);
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
    partitioned_primary,
    manual_failover,
    killed_primary,
    frozen_primary_woken_after,
    one_sentinel_down,
    one_sentinel_frozen,
    every_sentinel_down,
    replica_killed_under_spread_reads,
    replica_frozen_under_spread_reads
);
