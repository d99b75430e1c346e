//! Failures that are not deaths: a primary frozen (SIGSTOP: it still accepts connections and answers nothing) or
//! cut off by a real network partition, and replaced by its replica; the same primary woken after it was replaced;
//! replaced and promoted back; replaced under a request timeout shorter than `silence_timeout`; frozen before the
//! client opens (its first seed); a frozen replica; a primary paused briefly, or frozen for less than the node
//! timeout (with reads spread over replicas too); a standalone server partitioned and joined again. Real 3+3
//! Clusters under the checked load of `support::load`, with the client's default settings (a 5 s request
//! timeout). Each test prints one row of the table in the README.
//!
//! The tests of this file run one at a time (they take a lock): two failovers at once on two cores would measure
//! the machine, not the client.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, ReadFrom, Slot};
use support::load::{Load, LoadOptions, Report};
use support::netns::Netns;
use support::server::Options;
use support::{Cluster, Kind, Server, serial, unique};

/// The client's default request timeout plus a margin: a call longer than this counts as hung.
const HANG_BOUND: Duration = Duration::from_secs(7);
/// The availability bound the tests assert (the goal is 1 s; this is the margin a noisy 2-core machine needs).
const RECOVERY_BOUND: Duration = Duration::from_secs(2);
/// With `cluster-require-full-coverage no`, no single-key call on a healthy shard may take longer.
const HEALTHY_BOUND: Duration = Duration::from_millis(250);

/// Four caller threads doing batched and single gets and puts of 2-6 KiB values on 3000 keys anywhere, and one
/// more thread per shard whose keys are all on that shard (they show how each shard fares on its own); groups are
/// the Cluster's shards, in the order of their primaries' ports (returned).
fn sharded(cluster: &Cluster, prefix: &str) -> (LoadOptions, Vec<u16>) {
    let owners = cluster.slot_owners();
    let mut primaries: Vec<u16> = owners.clone();
    primaries.sort_unstable();
    primaries.dedup();
    let mut opts = LoadOptions::new(prefix);
    opts.keys_per_thread = 750;
    opts.sizes = vec![2 << 10, 4 << 10, 6 << 10];
    opts.groups = primaries.len();
    opts.threads = 4 + primaries.len();
    opts.pinned = (0..opts.threads).map(|t| t.checked_sub(4)).collect();
    opts.track_oks = true;
    let ports = primaries.clone();
    opts.group = Some(Arc::new(move |key: &[u8]| {
        let port = owners[Slot::of(key).get() as usize];
        ports.iter().position(|p| *p == port).unwrap()
    }));
    (opts, primaries)
}

/// The first slot `port` serves.
fn first_slot(cluster: &Cluster, port: u16) -> u16 {
    cluster.slot_owners().iter().position(|p| *p == port).unwrap() as u16
}

/// The primary port that `CLUSTER SLOTS` on `node` gives for `slot` (`None` when it does not answer).
fn owner_seen_by(node: &Server, slot: u16) -> Option<u16> {
    let client = redis::Client::open(node.url()).ok()?;
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(300)).ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn).ok()?;
    ranges.iter().find_map(|r| {
        let redis::Value::Array(f) = r else { return None };
        let (redis::Value::Int(a), redis::Value::Int(b), redis::Value::Array(p)) = (&f[0], &f[1], &f[2]) else {
            return None;
        };
        let redis::Value::Int(port) = p[1] else { return None };
        (*a..=*b).contains(&(slot as i64)).then_some(port as u16)
    })
}

/// Waits until every node but the excluded ones shows `new_port` as the owner of `slot` (the promotion, as the
/// issue defines it); returns when, on the load's clock.
fn wait_promoted(cluster: &Cluster, load: &Load, exclude: &[usize], slot: u16, new_port: u16) -> Duration {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let all = cluster
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !exclude.contains(i))
            .all(|(_, n)| owner_seen_by(n, slot) == Some(new_port));
        if all {
            return load.now();
        }
        assert!(Instant::now() < until, "never promoted");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A 3+3 Cluster (extra server arguments `extra`) with its replicas synced; its shards are the load's groups (see
/// `sharded`), and the victim is the primary of shard 1.
struct Stage {
    cluster: Cluster,
    primaries: Vec<u16>,
    /// Node indices of the victim and of its replica.
    victim: usize,
    replica: usize,
    /// A slot of the victim's.
    slot: u16,
}

impl Stage {
    fn start(kind: Kind, extra: &[&str], prefix: &str) -> (Stage, LoadOptions) {
        let cluster = Cluster::start_with(kind, 3, 1, extra);
        cluster.wait_synced();
        let (opts, primaries) = sharded(&cluster, &unique(prefix));
        let victim = cluster.nodes.iter().position(|n| n.port == primaries[1]).unwrap();
        let replica = cluster.replica_of(primaries[1]);
        let slot = first_slot(&cluster, primaries[1]);
        let stage = Stage {
            cluster,
            primaries,
            victim,
            replica,
            slot,
        };
        (stage, opts)
    }

    /// Freezes node `frozen` and waits until every other node shows node `heir` owning the victim's slot; when
    /// each happened, on the load's clock.
    fn freeze_until_promoted(&self, load: &Load, frozen: usize, heir: usize) -> (Duration, Duration) {
        let fault = load.now();
        self.cluster.nodes[frozen].freeze();
        let heir_port = self.cluster.nodes[heir].port;
        (
            fault,
            wait_promoted(&self.cluster, load, &[frozen], self.slot, heir_port),
        )
    }
}

/// One row of the table: what the callers saw.
struct Row<'a> {
    kind: Kind,
    scenario: &'a str,
    report: &'a Report,
    victim_group: Option<usize>,
    /// When the fault began and when the Cluster showed the new primary (load clock).
    fault: Duration,
    promoted: Option<Duration>,
}

impl Row<'_> {
    fn print(&self) {
        let r = self.report;
        let errors: Vec<String> = r
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| format!("{i}:{}", g.errors))
            .collect();
        let ms = |d: Duration| format!("{} ms", d.as_millis());
        let (last_error, first_ok) = match (self.promoted, self.victim_group) {
            (Some(p), Some(v)) => (
                match r.groups[v].last_error {
                    Some(e) if e > p => ms(e - p),
                    Some(_) => "none after it".into(),
                    None => "no error".into(),
                },
                r.groups[v].first_ok_after(p).map_or("never".into(), |t| ms(t - p)),
            ),
            _ => ("-".into(), "-".into()),
        };
        let healthy = r
            .groups
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.victim_group)
            .map(|(_, g)| g.slowest)
            .max()
            .unwrap_or_default();
        println!(
            "ROW | {:?} | {} | fault at {:?} | errors by shard {} | wrong {} / stale {} / lost {} | promotion {} after the fault | \
             from promotion: first success {first_ok}, last error {last_error} | slowest call on healthy shards \
             {} ms | {} calls",
            self.kind,
            self.scenario,
            self.fault,
            errors.join(" "),
            r.wrong,
            r.stale,
            r.lost,
            self.promoted
                .map_or("-".into(), |p| format!("{} ms", (p - self.fault).as_millis())),
            healthy.as_millis(),
            r.calls,
        );
        for (i, g) in r.groups.iter().enumerate() {
            println!(
                "  shard {i}: ok {}, errors {} (first {:?}, last {:?}), last ok {:?}, slowest call {:?} from {:?}; {:?}",
                g.ok, g.errors, g.first_error, g.last_error, g.last_ok, g.slowest, g.slowest_at, g.samples
            );
        }
    }
}

/// What every scenario demands: no wrong bytes, no hung call, every error typed, a real load, and no write lost
/// that was acknowledged after the fault began (none can be acknowledged by a frozen node, and one acknowledged
/// by the old primary after it woke would be lost).
fn assert_sound(what: &str, r: &Report, fault: Duration) {
    assert_eq!(r.wrong, 0, "{what}: wrong values {:?}", r.wrong_samples);
    assert_eq!(r.hung, 0, "{what}: calls over {HANG_BOUND:?} (max {:?})", r.max_call);
    assert!(r.untyped.is_empty(), "{what}: untyped errors {:?}", r.untyped);
    assert!(
        r.key_ops > 1000,
        "{what}: too little load to mean anything: {}",
        r.key_ops
    );
    let late: Vec<&Duration> = r.losses.iter().filter(|at| **at >= fault).collect();
    assert!(
        late.is_empty(),
        "{what}: {} write(s) acknowledged after the fault (at {fault:?}) were lost: {:?}",
        late.len(),
        &late[..late.len().min(5)]
    );
}

/// The victim's shard serves again within the bound after the promotion, and the others saw no error.
fn assert_followed(what: &str, r: &Report, victim: usize, promoted: Duration) {
    assert_shard_followed(what, r, victim, promoted);
    for (i, other) in r.groups.iter().enumerate().filter(|(i, _)| *i != victim) {
        assert_eq!(
            other.errors, 0,
            "{what}: shard {i} is healthy but saw errors: {:?}",
            other.samples
        );
    }
}

/// The victim's shard first serves, and last fails, within the bound after the promotion.
fn assert_shard_followed(what: &str, r: &Report, victim: usize, promoted: Duration) {
    let g = &r.groups[victim];
    let first = g.first_ok_after(promoted);
    assert!(
        first.is_some_and(|t| t <= promoted + RECOVERY_BOUND),
        "{what}: the promoted shard first served {:?} after the promotion",
        first.map(|t| t - promoted)
    );
    if let Some(last) = g.last_error {
        assert!(
            last <= promoted + RECOVERY_BOUND,
            "{what}: an error {:?} after the promotion: {g:?}",
            last - promoted
        );
    }
}

/// A primary frozen and left frozen (or woken once replaced) while its replica is promoted.
fn frozen_primary(kind: Kind, full_coverage: bool, thaw: bool) {
    let _serial = serial();
    let coverage = if full_coverage { "yes" } else { "no" };
    let (stage, opts) = Stage::start(kind, &["--cluster-require-full-coverage", coverage], "frozen");
    let (cluster, victim, replica) = (&stage.cluster, stage.victim, stage.replica);
    let client = Arc::new(Client::open(&cluster.url()).unwrap());
    let load = Load::start(client.clone(), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(1000));
    let (fault, promoted) = stage.freeze_until_promoted(&load, victim, replica);
    println!("promoted at {promoted:?}");
    if thaw {
        cluster.nodes[victim].thaw();
    }
    std::thread::sleep(Duration::from_millis(3000));
    let r = load.finish();
    let scenario = match (thaw, full_coverage) {
        (false, true) => "primary frozen, replica promoted",
        (false, false) => "primary frozen, replica promoted, full coverage not required",
        (true, _) => "primary frozen, replica promoted, old primary woken",
    };
    Row {
        kind,
        scenario,
        report: &r,
        victim_group: Some(1),
        fault,
        promoted: Some(promoted),
    }
    .print();
    println!("  client stats: {:?}", brief(&client));
    assert_sound(scenario, &r, fault);
    assert_followed(scenario, &r, 1, promoted);
    if !full_coverage {
        assert_healthy_fast(scenario, &r, Some(1));
    }
    if thaw {
        // The woken node rejoined as a replica (it answers MOVED for its former slots).
        assert_eq!(
            owner_seen_by(&cluster.nodes[victim], stage.slot),
            Some(cluster.nodes[replica].port)
        );
    }
}

/// No call whose keys were all on a healthy shard took longer than `HEALTHY_BOUND`.
fn assert_healthy_fast(what: &str, r: &Report, victim: Option<usize>) {
    for (i, g) in r.groups.iter().enumerate().filter(|(i, _)| Some(*i) != victim) {
        assert!(
            g.slowest <= HEALTHY_BOUND,
            "{what}: shard {i} is healthy, yet a call on it alone took {:?} (from {:?})",
            g.slowest,
            g.slowest_at
        );
    }
}

fn brief(client: &Client) -> String {
    let s = client.stats();
    format!(
        "silences {}, rerouted {}, refreshes {}, marked down {}, moved {}, retries {}, timeouts {}",
        s.silences, s.rerouted, s.refreshes, s.marked_down, s.moved, s.retries, s.timeouts
    )
}

fn frozen_primary_is_followed(kind: Kind) {
    frozen_primary(kind, true, false);
}

fn frozen_primary_is_followed_without_full_coverage(kind: Kind) {
    frozen_primary(kind, false, false);
}

fn a_woken_old_primary_acknowledges_nothing(kind: Kind) {
    frozen_primary(kind, true, true);
}

/// A frozen replica changes nothing for callers.
fn frozen_replica(kind: Kind) {
    let _serial = serial();
    let (stage, opts) = Stage::start(kind, &[], "replica");
    let (cluster, replica) = (&stage.cluster, stage.replica);
    let client = Arc::new(Client::open(&cluster.url()).unwrap());
    let load = Load::start(client.clone(), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let fault = load.now();
    cluster.nodes[replica].freeze();
    std::thread::sleep(Duration::from_millis(3000));
    cluster.nodes[replica].thaw();
    std::thread::sleep(Duration::from_millis(500));
    let r = load.finish();
    Row {
        kind,
        scenario: "replica frozen",
        report: &r,
        victim_group: None,
        fault,
        promoted: None,
    }
    .print();
    assert_sound("frozen replica", &r, Duration::ZERO);
    assert_eq!(r.errors(), 0, "a frozen replica reached callers");
    assert_healthy_fast("frozen replica", &r, None);
    assert_eq!(client.stats().silences, 0, "{}", brief(&client));
}

/// `DEBUG SLEEP 0.3` on a primary under load (a fork, a slow command): no error, not marked down, not taken for
/// silent, no storm of slot-map refreshes.
fn a_paused_primary_is_not_a_failed_one(kind: Kind) {
    let _serial = serial();
    let (stage, opts) = Stage::start(kind, &[], "pause");
    let (cluster, victim) = (&stage.cluster, stage.victim);
    let client = Arc::new(Client::open(&cluster.url()).unwrap());
    let load = Load::start(client.clone(), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let before = client.stats();
    let fault = load.now();
    for _ in 0..3 {
        redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("0.3")
            .exec(&mut cluster.nodes[victim].admin())
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(500));
    let r = load.finish();
    Row {
        kind,
        scenario: "primary paused 3 x 0.3 s (DEBUG SLEEP)",
        report: &r,
        victim_group: Some(1),
        fault,
        promoted: None,
    }
    .print();
    let after = client.stats();
    println!("  client stats: {}", brief(&client));
    assert_sound("paused primary", &r, Duration::ZERO);
    assert_eq!(r.errors(), 0, "a paused primary reached callers");
    assert_healthy_fast("paused primary", &r, Some(1));
    assert_eq!(after.marked_down, 0, "a paused primary was marked down");
    assert_eq!(after.silences, before.silences, "a 0.3 s pause was taken for a failure");
    assert!(
        after.refreshes - before.refreshes <= 1,
        "{} slot-map refreshes for a pause",
        after.refreshes - before.refreshes
    );
}

/// A primary cut off by a real partition (inside a network namespace whose link goes down: established
/// connections go silent, new connects hang) and replaced; the link comes back after the promotion, delivering
/// whatever the old primary still had to say on the old connections.
fn partitioned_primary_is_followed(kind: Kind) {
    let _serial = serial();
    let Some(ns) = Netns::create("partitioned_primary_is_followed") else {
        return;
    };
    // Node 0 (a primary) lives in the namespace; the others listen on this side's end of the link too, so the
    // partitioned node reaches them (and they it) until the cut.
    let cluster = Cluster::start_placed(kind, 3, 1, &[], |i| Options {
        hosts: if i == 0 {
            vec![ns.ns_ip.clone()]
        } else {
            vec![ns.host_ip.clone(), "127.0.0.1".into()]
        },
        netns: (i == 0).then(|| ns.name.clone()),
        ..Options::default()
    });
    cluster.wait_synced();
    let (opts, primaries) = sharded(&cluster, &unique("partition"));
    let victim_port = cluster.nodes[0].port;
    let victim_group = primaries.iter().position(|p| *p == victim_port).unwrap();
    let url = cluster.nodes[1].url();
    let client = Arc::new(Client::open(&url).unwrap());
    let load = Load::start(client.clone(), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(1000));
    let replica = cluster.replica_of(victim_port);
    let slot = first_slot(&cluster, victim_port);
    // A client opened after the cut has no connection to the partitioned node: its connects hang (a blackholed
    // address). Its calls for that shard fail (typed, in time) until the promotion, then succeed.
    let owners = cluster.slot_owners();
    let key = (0..)
        .map(|i| format!("fresh:{i}"))
        .find(|k| owners[Slot::of(k.as_bytes()).get() as usize] == victim_port)
        .unwrap();
    let fault = load.now();
    ns.cut();
    let started = load.started;
    let fresh = std::thread::spawn(move || {
        let client = Client::open(&url).unwrap();
        let (mut first_ok, mut errors, mut slowest) = (None, 0, Duration::ZERO);
        let until = Instant::now() + Duration::from_secs(12);
        while Instant::now() < until {
            let t = Instant::now();
            match client.put(&key, b"fresh".to_vec()) {
                Ok(()) => {
                    first_ok.get_or_insert(t.duration_since(started));
                }
                Err(e) => {
                    assert!(e.is_io() || e.is_timeout() || e.server_code().is_some(), "{e:?}");
                    errors += 1;
                }
            }
            slowest = slowest.max(t.elapsed());
            if first_ok.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (first_ok, errors, slowest)
    });
    let promoted = wait_promoted(&cluster, &load, &[0], slot, cluster.nodes[replica].port);
    std::thread::sleep(Duration::from_millis(1000));
    ns.heal();
    std::thread::sleep(Duration::from_millis(2500));
    let r = load.finish();
    let (fresh_ok, fresh_errors, fresh_slowest) = fresh.join().unwrap();
    println!(
        "  fresh client: {fresh_errors} error(s) before its first success {:?} after the promotion; slowest call \
         {fresh_slowest:?}",
        fresh_ok.map(|t| t.saturating_sub(promoted))
    );
    assert!(
        fresh_ok.is_some_and(|t| t <= promoted + RECOVERY_BOUND),
        "a client opened after the cut did not follow the promotion: first success {fresh_ok:?}, promoted {promoted:?}"
    );
    assert!(
        fresh_slowest <= Duration::from_secs(6),
        "a fresh client's call took {fresh_slowest:?}"
    );
    let scenario = "primary partitioned (netns link down), replica promoted, link back after";
    Row {
        kind,
        scenario,
        report: &r,
        victim_group: Some(victim_group),
        fault,
        promoted: Some(promoted),
    }
    .print();
    println!("  client stats: {}", brief(&client));
    assert_sound(scenario, &r, fault);
    assert_followed(scenario, &r, victim_group, promoted);
}

/// A standalone server partitioned: its calls fail at their deadline and it is marked down; joined again, it is
/// used again at once (the late replies on the old connections are never taken for answers).
fn partitioned_standalone_comes_back(kind: Kind) {
    let _serial = serial();
    let Some(ns) = Netns::create("partitioned_standalone_comes_back") else {
        return;
    };
    let server = Server::start(
        kind,
        support::server::free_port(),
        Options {
            hosts: vec![ns.ns_ip.clone()],
            netns: Some(ns.name.clone()),
            ..Options::default()
        },
    );
    let config = Config::from_url(&server.url())
        .unwrap()
        .request_timeout(Duration::from_secs(1));
    let client = Arc::new(Client::with_config(config).unwrap());
    let mut opts = LoadOptions::new(&unique("standalone"));
    opts.pause = Duration::from_millis(2);
    let load = Load::start(client.clone(), opts, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(800));
    let fault = load.now();
    ns.cut();
    std::thread::sleep(Duration::from_millis(2500));
    let down = client.stats().nodes_down;
    let healed = load.now();
    ns.heal();
    std::thread::sleep(Duration::from_millis(2000));
    let r = load.finish();
    Row {
        kind,
        scenario: "standalone partitioned 2.5 s, 1 s timeout",
        report: &r,
        victim_group: Some(0),
        fault,
        promoted: None,
    }
    .print();
    let g = &r.groups[0];
    println!(
        "  last error {:?} after the link came back ({:?}); marked down during the cut: {down:?}",
        g.last_error.map(|e| e.saturating_sub(healed)),
        g.last_sample
    );
    assert_eq!(r.wrong, 0, "wrong values {:?}", r.wrong_samples);
    assert_eq!(r.hung, 0, "calls over 3 s (max {:?})", r.max_call);
    assert!(r.untyped.is_empty(), "untyped errors {:?}", r.untyped);
    assert_eq!((r.stale, r.lost), (0, 0), "the server lost nothing");
    assert!(g.errors > 0, "no error while cut off");
    assert_eq!(down, vec![server.addr()], "not marked down while cut off");
    assert!(
        g.last_ok > Some(healed) && g.last_ok > g.last_error,
        "not used again: {g:?}"
    );
    assert!(
        g.last_error.is_none_or(|e| e < healed + Duration::from_millis(1500)),
        "errors long after the link came back: {g:?}"
    );
    assert!(client.stats().nodes_down.is_empty());
}

per_kind!(
    frozen_primary_is_followed,
    frozen_primary_is_followed_without_full_coverage,
    a_woken_old_primary_acknowledges_nothing,
    frozen_replica,
    a_paused_primary_is_not_a_failed_one,
    partitioned_primary_is_followed,
    partitioned_standalone_comes_back,
    a_primary_frozen_briefly_is_waited_for,
    followed_there_and_back,
    frozen_primary_with_a_short_timeout,
    opened_while_a_seed_is_frozen
);

/// A primary frozen for 1.5 s, less than the Cluster's node timeout (no failover): calls on its shard wait and
/// succeed, nothing is marked down, and the other shards never wait for it. A second client reading that shard's
/// keys with reads spread over primaries and replicas moves them to the replica once the primary is found silent:
/// none fails, none waits much longer than `silence_timeout`.
fn a_primary_frozen_briefly_is_waited_for(kind: Kind) {
    let _serial = serial();
    let (stage, opts) = Stage::start(kind, &["--cluster-node-timeout", "5000"], "brief");
    let (cluster, victim) = (&stage.cluster, stage.victim);
    let client = Arc::new(Client::open(&cluster.url()).unwrap());
    let spread = SpreadReads::start(cluster, stage.primaries[1]);
    let load = Load::start(client.clone(), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let fault = load.now();
    cluster.nodes[victim].freeze();
    std::thread::sleep(Duration::from_millis(1500));
    cluster.nodes[victim].thaw();
    std::thread::sleep(Duration::from_millis(1500));
    let r = load.finish();
    let scenario = "primary frozen 1.5 s, no failover";
    Row {
        kind,
        scenario,
        report: &r,
        victim_group: Some(1),
        fault,
        promoted: None,
    }
    .print();
    println!("  client stats: {}", brief(&client));
    let (reads, errors, slowest, spread_stats) = spread.finish();
    println!(
        "  spread reads of that shard (second client): {reads} reads, errors {}, slowest {} ms; {spread_stats}",
        errors.len(),
        slowest.as_millis()
    );
    assert_sound(scenario, &r, Duration::ZERO);
    assert_eq!(r.errors(), 0, "a 1.5 s freeze reached callers");
    assert_eq!(
        (r.stale, r.lost),
        (0, 0),
        "nothing was replaced, so nothing may be lost"
    );
    assert_healthy_fast(scenario, &r, Some(1));
    assert_eq!(client.stats().marked_down, 0);
    assert!(
        errors.is_empty(),
        "spread reads failed: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert!(
        slowest < Duration::from_millis(1200),
        "a spread read waited {slowest:?} for the frozen primary"
    );
}

/// Two threads reading, through a client of their own with `ReadFrom::Spread`, values stored on the shard of
/// primary `port`, each checked; they read until `finish`.
struct SpreadReads {
    client: Arc<Client>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    readers: Vec<std::thread::JoinHandle<(u64, Vec<String>, Duration)>>,
}

impl SpreadReads {
    fn start(cluster: &Cluster, port: u16) -> SpreadReads {
        let config = Config::from_url(&cluster.url())
            .unwrap()
            .read_from(ReadFrom::Spread)
            .wait_for_replicas(1, Duration::from_secs(2));
        let client = Arc::new(Client::with_config(config).unwrap());
        let owners = cluster.slot_owners();
        let (keys, values) = support::store_values(&client, "spread", 600, 4 << 10);
        let (keys, values): (Vec<String>, Vec<Vec<u8>>) = keys
            .into_iter()
            .zip(values)
            .filter(|(k, _)| owners[Slot::of(k.as_bytes()).get() as usize] == port)
            .unzip();
        assert!(keys.len() > 100, "{} keys on the shard", keys.len());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers = (0..2)
            .map(|t| {
                let (client, keys, values, stop) = (client.clone(), keys.clone(), values.clone(), stop.clone());
                std::thread::spawn(move || {
                    let (mut reads, mut errors, mut slowest) = (0u64, Vec::new(), Duration::ZERO);
                    let mut i = t;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let k = i % keys.len();
                        let started = Instant::now();
                        match client.get(&keys[k]) {
                            Ok(Some(v)) => assert_eq!(v, values[k], "wrong value for {}", keys[k]),
                            Ok(None) => errors.push(format!("{} missing", keys[k])),
                            Err(e) => errors.push(e.to_string()),
                        }
                        slowest = slowest.max(started.elapsed());
                        reads += 1;
                        i += 2;
                    }
                    (reads, errors, slowest)
                })
            })
            .collect();
        SpreadReads { client, stop, readers }
    }

    /// Reads done, errors, the slowest read, and the client's counters.
    fn finish(self) -> (u64, Vec<String>, Duration, String) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut reads, mut errors, mut slowest) = (0, Vec::new(), Duration::ZERO);
        for r in self.readers {
            let (n, e, s) = r.join().expect("a reader panicked (wrong value?)");
            (reads, slowest) = (reads + n, slowest.max(s));
            errors.extend(e);
        }
        (reads, errors, slowest, brief(&self.client))
    }
}

/// Followed twice: a primary frozen and replaced, woken (it rejoins as a replica of its successor and resyncs),
/// then the successor frozen in turn and the old primary promoted back. The client follows both promotions.
fn followed_there_and_back(kind: Kind) {
    let _serial = serial();
    let (stage, opts) = Stage::start(kind, &[], "twice");
    let (first, second) = (stage.victim, stage.replica);
    let client = Arc::new(Client::open(&stage.cluster.url()).unwrap());
    let load = Load::start(client.clone(), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let (fault, promoted) = stage.freeze_until_promoted(&load, first, second);
    stage.cluster.nodes[first].thaw();
    std::thread::sleep(Duration::from_millis(500));
    stage.cluster.wait_synced();
    std::thread::sleep(Duration::from_millis(1500));
    let (back_fault, back) = stage.freeze_until_promoted(&load, second, first);
    std::thread::sleep(Duration::from_millis(2500));
    let r = load.finish();
    let scenario = "primary frozen and replaced, then its successor frozen and the old primary promoted back";
    Row {
        kind,
        scenario,
        report: &r,
        victim_group: Some(1),
        fault: back_fault,
        promoted: Some(back),
    }
    .print();
    println!(
        "  first promotion {:?} after its fault, second {:?} after its fault; {}",
        promoted - fault,
        back - back_fault,
        brief(&client)
    );
    assert_sound(scenario, &r, fault);
    assert_followed(scenario, &r, 1, back);
    let first_ok = r.groups[1].first_ok_after(promoted);
    assert!(
        first_ok.is_some_and(|t| t <= promoted + RECOVERY_BOUND),
        "the first promotion was not followed: first success {first_ok:?}, promoted {promoted:?}"
    );
}

/// A short request timeout (300 ms, well under the Cluster's node timeout): calls on the frozen shard fail in
/// time until the promotion, which is followed as fast as with the default.
fn frozen_primary_with_a_short_timeout(kind: Kind) {
    let _serial = serial();
    let (stage, opts) = Stage::start(kind, &[], "short");
    let config = Config::from_url(&stage.cluster.url())
        .unwrap()
        .request_timeout(Duration::from_millis(300));
    let client = Arc::new(Client::with_config(config).unwrap());
    let load = Load::start(client.clone(), opts, Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(800));
    let (fault, promoted) = stage.freeze_until_promoted(&load, stage.victim, stage.replica);
    std::thread::sleep(Duration::from_millis(3000));
    let r = load.finish();
    let scenario = "primary frozen, replica promoted, 300 ms request timeout";
    Row {
        kind,
        scenario,
        report: &r,
        victim_group: Some(1),
        fault,
        promoted: Some(promoted),
    }
    .print();
    println!("  client stats: {}", brief(&client));
    assert_sound(scenario, &r, fault);
    // The healthy shards of Redis 7 answer CLUSTERDOWN for longer than a 300 ms deadline around a failover.
    assert_shard_followed(scenario, &r, 1, promoted);
}

/// A client opened while a primary is frozen, with the frozen node as its first seed: it opens from the other
/// seeds in bounded time, fails that shard's calls (typed, in time) until the promotion, and follows it.
fn opened_while_a_seed_is_frozen(kind: Kind) {
    let _serial = serial();
    let (stage, opts) = Stage::start(kind, &[], "seedfrozen");
    let (cluster, victim, replica) = (&stage.cluster, stage.victim, stage.replica);
    let mut seeds = vec![cluster.nodes[victim].addr()];
    seeds.extend(
        cluster
            .nodes
            .iter()
            .filter(|n| n.port != stage.primaries[1])
            .map(|n| n.addr()),
    );
    let url = format!("redis://{}", seeds.join(","));
    cluster.nodes[victim].freeze();
    let t = Instant::now();
    let client = Arc::new(Client::open(&url).unwrap());
    let opened = t.elapsed();
    let load = Load::start(client.clone(), opts, HANG_BOUND);
    let promoted = wait_promoted(cluster, &load, &[victim], stage.slot, cluster.nodes[replica].port);
    std::thread::sleep(Duration::from_millis(3000));
    let r = load.finish();
    let scenario = "client opened while its first seed (a primary) is frozen; replica promoted";
    Row {
        kind,
        scenario,
        report: &r,
        victim_group: Some(1),
        fault: Duration::ZERO,
        promoted: Some(promoted),
    }
    .print();
    println!("  opened in {opened:?}; client stats: {}", brief(&client));
    assert!(opened < Duration::from_secs(3), "opening took {opened:?}");
    assert_sound(scenario, &r, Duration::ZERO);
    assert_followed(scenario, &r, 1, promoted);
}
