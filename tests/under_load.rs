//! Real faults under load: several caller threads do mixed puts and gets (values checked byte for byte, see
//! `support::load`) while a Cluster fails over, loses a primary to SIGKILL, migrates a slot, or is stopped and
//! restarted as a whole, and while a standalone server restarts. Each test prints what callers saw. The tests run
//! one at a time (`support::serial`).

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, Slot};
use support::load::{Load, LoadOptions, Report};
use support::{Cluster, Kind, Server, serial, unique};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// A call that takes longer than its deadline plus this margin counts as hung.
const HANG_BOUND: Duration = Duration::from_secs(4);

fn client(url: &str) -> Arc<Client> {
    let config = Config::from_url(url).unwrap().request_timeout(REQUEST_TIMEOUT);
    Arc::new(Client::with_config(config).unwrap())
}

/// Load options whose groups are the cluster's shards (by primary, in `primaries` order).
fn sharded(cluster: &Cluster, prefix: &str) -> (LoadOptions, Vec<u16>) {
    let owners = cluster.slot_owners();
    let mut primaries: Vec<u16> = owners.clone();
    primaries.sort_unstable();
    primaries.dedup();
    let ports = primaries.clone();
    let mut opts = LoadOptions::new(prefix);
    opts.groups = ports.len();
    opts.group = Some(Arc::new(move |key: &[u8]| {
        let port = owners[Slot::of(key).get() as usize];
        primaries.iter().position(|p| *p == port).unwrap()
    }));
    (opts, ports)
}

fn wait(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "never {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

fn role(server: &Server) -> String {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut server.admin()).unwrap();
    match &role[0] {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("ROLE: {other:?}"),
    }
}

fn cluster_ok(cluster: &Cluster) -> bool {
    cluster.nodes.iter().filter(|n| n.is_running()).all(|n| {
        let Ok(mut admin) = redis::Client::open(n.url()).and_then(|c| c.get_connection()) else {
            return false;
        };
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut admin).unwrap_or_default();
        info.contains("cluster_state:ok")
    })
}

/// What every test demands: no wrong bytes, no hung call, every error typed.
fn assert_sound(what: &str, r: &Report) {
    println!(
        "{what}: {} calls, {} key ops, {} errors, {} stale, {} lost, max call {:?}",
        r.calls,
        r.key_ops,
        r.errors(),
        r.stale,
        r.lost,
        r.max_call
    );
    for (i, g) in r.groups.iter().enumerate() {
        println!(
            "  group {i}: ok {}, errors {} (first {:?}, last {:?}), last ok {:?}; {:?}",
            g.ok, g.errors, g.first_error, g.last_error, g.last_ok, g.samples
        );
    }
    assert_eq!(r.wrong, 0, "{what}: wrong values {:?}", r.wrong_samples);
    assert_eq!(r.hung, 0, "{what}: calls over {HANG_BOUND:?} (max {:?})", r.max_call);
    assert!(r.untyped.is_empty(), "{what}: untyped errors {:?}", r.untyped);
    assert!(
        r.key_ops > 1000,
        "{what}: too little load to mean anything: {}",
        r.key_ops
    );
}

/// A manual `CLUSTER FAILOVER` under load: no caller sees an error, nothing is lost.
fn manual_failover(kind: Kind) {
    let _serial = serial();
    let cluster = Cluster::start(kind, 3, 1);
    let (opts, primaries) = sharded(&cluster, &unique("failover"));
    let load = Load::start(client(&cluster.url()), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let replica = cluster.replica_of(primaries[0]);
    let at = load.now();
    redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .exec(&mut cluster.nodes[replica].admin())
        .unwrap();
    let took = wait("promoted", Duration::from_secs(10), || {
        role(&cluster.nodes[replica]) == "master"
    });
    let switched = load.now();
    std::thread::sleep(Duration::from_millis(1500));
    let r = load.finish();
    println!("{kind:?}: failover asked at {at:?}, roles switched after {took:?}");
    assert_sound("manual failover", &r);
    assert_eq!(r.errors(), 0, "a manual failover must not reach callers");
    assert_eq!((r.stale, r.lost), (0, 0), "a manual failover loses nothing");
    assert!(
        r.groups[0].last_ok > Some(switched),
        "the failed-over shard serves again"
    );
}

/// SIGKILL of a primary under load: its keys fail with typed errors until its replica is promoted, the other
/// shards are unaffected, and the client recovers by itself.
fn killed_primary(kind: Kind) {
    let _serial = serial();
    let mut cluster = Cluster::start_with(kind, 3, 1, &["--cluster-node-timeout", "1000"]);
    let (opts, primaries) = sharded(&cluster, &unique("killed"));
    let load = Load::start(client(&cluster.url()), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let replica = cluster.replica_of(primaries[1]);
    let victim = cluster.nodes.iter().position(|n| n.port == primaries[1]).unwrap();
    let killed = load.now();
    cluster.nodes[victim].kill();
    let promoted_after = wait("promoted", Duration::from_secs(15), || {
        role(&cluster.nodes[replica]) == "master"
    });
    let promoted = load.now();
    wait("cluster_state:ok", Duration::from_secs(15), || cluster_ok(&cluster));
    std::thread::sleep(Duration::from_millis(2000));
    let r = load.finish();
    assert_sound("killed primary", &r);
    let g = &r.groups[1];
    let recovery = g.last_error.map_or(Duration::ZERO, |e| e.saturating_sub(killed));
    println!(
        "{kind:?}: primary killed at {killed:?}, replica promoted {promoted_after:?} later; last error of its \
         shard {recovery:?} after the kill; {} errors there; {} stale and {} lost values (unreplicated writes)",
        g.errors, r.stale, r.lost
    );
    for (i, other) in r.groups.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(
            other.errors, 0,
            "shard {i} is healthy but saw errors: {:?}",
            other.samples
        );
    }
    assert!(g.last_ok > g.last_error, "the client never recovered: {g:?}");
    assert!(g.last_ok > Some(promoted), "the promoted shard serves again");
}

/// A primary frozen (SIGSTOP: it accepts connections but answers nothing) under load: its keys time out and
/// then fail at once (the node is marked down), the other shards' single-key calls are not held up behind it,
/// and once it is thawed the client uses it again by itself.
fn frozen_primary(kind: Kind) {
    let _serial = serial();
    // No replica, a long node timeout, and no full coverage required: the Cluster itself does not react.
    let cluster = Cluster::start_with(
        kind,
        3,
        0,
        &[
            "--cluster-node-timeout",
            "30000",
            "--cluster-require-full-coverage",
            "no",
        ],
    );
    let (opts, primaries) = sharded(&cluster, &unique("frozen"));
    let config = Config::from_url(&cluster.url())
        .unwrap()
        .request_timeout(Duration::from_secs(1));
    let client = Arc::new(Client::with_config(config).unwrap());
    let load = Load::start(client.clone(), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let victim = cluster.nodes.iter().position(|n| n.port == primaries[1]).unwrap();
    let frozen = load.now();
    cluster.nodes[victim].freeze();
    std::thread::sleep(Duration::from_millis(3000));
    // The operator can see it.
    let stats = client.stats();
    assert_eq!(stats.nodes_down, vec![cluster.nodes[victim].addr()], "{stats:?}");
    assert!(stats.marked_down >= 1);
    cluster.nodes[victim].thaw();
    let thawed = load.now();
    std::thread::sleep(Duration::from_millis(2000));
    let r = load.finish();
    assert!(client.stats().nodes_down.is_empty(), "still down after the thaw");
    assert_sound("frozen primary", &r);
    let g = &r.groups[1];
    println!(
        "{kind:?}: primary frozen at {frozen:?}, thawed at {thawed:?}; its shard: {} errors, last {:?} after the \
         thaw; slow single calls per shard: {:?}",
        g.errors,
        g.last_error.map(|e| e.saturating_sub(thawed)),
        r.groups.iter().map(|g| g.slow).collect::<Vec<_>>()
    );
    assert!(g.errors > 0, "the frozen shard saw no error");
    assert!(
        g.last_ok > Some(thawed) && g.last_ok > g.last_error,
        "never used again after the thaw: {g:?}"
    );
    for (i, other) in r.groups.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(
            other.errors, 0,
            "shard {i} is healthy but saw errors: {:?}",
            other.samples
        );
        // Only calls caught in the first deadline, before the node is marked down, may wait.
        assert!(
            other.slow <= 16,
            "shard {i}: {} single-key calls over 250 ms",
            other.slow
        );
    }
}

/// A slot migrated with MIGRATING / IMPORTING / MIGRATE while its keys are read and written: no error, no miss.
fn slot_migration(kind: Kind) {
    let _serial = serial();
    let cluster = Cluster::start(kind, 3, 0);
    let p = unique("migrate");
    let tag = format!("{{{p}}}");
    let mut opts = LoadOptions::new(&p);
    // Threads 0 and 1 use keys of one slot (the one that moves); threads 2 and 3 use keys everywhere.
    let pinned = tag.clone();
    let prefix = p.clone();
    opts.key = Some(Arc::new(move |t, i| {
        if t < 2 {
            format!("{pinned}t{t}:k{i}")
        } else {
            format!("{prefix}t{t}:k{i}")
        }
    }));
    let slot = Slot::of(tag.as_bytes()).get();
    let load = Load::start(client(&cluster.url()), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(500));
    let ids = cluster.ids();
    let from = cluster
        .nodes
        .iter()
        .position(|n| n.port == cluster.primary_for(tag.as_bytes()).port)
        .unwrap();
    let to = (from + 1) % 3;
    let (mut src, mut dst) = (cluster.nodes[from].admin(), cluster.nodes[to].admin());
    let setslot = |conn: &mut redis::Connection, how: &str, id: &str| {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(how)
            .arg(id)
            .exec(conn)
            .unwrap()
    };
    let started = load.now();
    setslot(&mut dst, "IMPORTING", &ids[from]);
    setslot(&mut src, "MIGRATING", &ids[to]);
    let mut moved = 0;
    loop {
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(4)
            .query(&mut src)
            .unwrap();
        if keys.is_empty() {
            break;
        }
        moved += keys.len();
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(cluster.nodes[to].port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .exec(&mut src)
            .unwrap();
        std::thread::sleep(Duration::from_millis(40));
    }
    setslot(&mut dst, "NODE", &ids[to]);
    setslot(&mut src, "NODE", &ids[to]);
    for (i, n) in cluster.nodes.iter().enumerate() {
        if i != from && i != to {
            setslot(&mut n.admin(), "NODE", &ids[to]);
        }
    }
    let done = load.now();
    std::thread::sleep(Duration::from_millis(1000));
    let r = load.finish();
    println!("{kind:?}: slot {slot} migrated ({moved} keys moved) from {started:?} to {done:?} under load");
    assert_sound("slot migration", &r);
    assert_eq!(
        r.errors(),
        0,
        "a migration must not reach callers: {:?}",
        r.groups[0].samples
    );
    assert_eq!(
        (r.stale, r.lost),
        (0, 0),
        "no miss or stale value for a key that exists"
    );
    assert!(moved > 0, "nothing was migrated");
    let owner = cluster.primary_for(tag.as_bytes()).port;
    assert_eq!(owner, cluster.nodes[to].port);
}

/// Every node of a Cluster stopped, then started again on the same ports: errors while down, then recovery.
fn whole_cluster_restart(kind: Kind) {
    let _serial = serial();
    let mut cluster = Cluster::start(kind, 3, 0);
    let mut opts = LoadOptions::new(&unique("restart"));
    opts.pause = Duration::from_millis(2);
    let load = Load::start(client(&cluster.url()), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let stopped = load.now();
    for n in &mut cluster.nodes {
        n.stop();
    }
    std::thread::sleep(Duration::from_millis(1000));
    let restarted = load.now();
    for n in &mut cluster.nodes {
        n.restart();
    }
    wait("cluster_state:ok", Duration::from_secs(20), || cluster_ok(&cluster));
    std::thread::sleep(Duration::from_millis(2500));
    let r = load.finish();
    assert_sound("whole cluster restart", &r);
    let g = &r.groups[0];
    println!(
        "{kind:?}: cluster stopped at {stopped:?}, restarted at {restarted:?}; {} errors, the last {:?} after the \
         restart; {} misses for keys lost with the servers' memory",
        g.errors,
        g.last_error.map(|e| e.saturating_sub(restarted)),
        r.lost
    );
    assert!(g.errors > 0, "no error seen while the cluster was down");
    assert!(g.first_error >= Some(stopped), "errors before the stop: {g:?}");
    assert!(g.last_ok > g.last_error, "the client never recovered: {g:?}");
}

/// A standalone server restarted under load: errors while down, then recovery.
fn standalone_restart(kind: Kind) {
    let _serial = serial();
    let mut server = Server::standalone(kind);
    let mut opts = LoadOptions::new(&unique("restart"));
    opts.pause = Duration::from_millis(2);
    let load = Load::start(client(&server.url()), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let stopped = load.now();
    server.stop();
    std::thread::sleep(Duration::from_millis(700));
    let restarted = load.now();
    server.restart();
    std::thread::sleep(Duration::from_millis(1500));
    let r = load.finish();
    assert_sound("standalone restart", &r);
    let g = &r.groups[0];
    println!(
        "{kind:?}: server stopped at {stopped:?}, restarted at {restarted:?}; {} errors, the last {:?} after the \
         restart; {} misses for keys lost with its memory",
        g.errors,
        g.last_error.map(|e| e.saturating_sub(restarted)),
        r.lost
    );
    assert!(g.errors > 0, "no error seen while the server was down");
    assert!(g.last_ok > g.last_error, "the client never recovered: {g:?}");
}

per_kind!(
    frozen_primary,
    manual_failover,
    killed_primary,
    slot_migration,
    whole_cluster_restart,
    standalone_restart
);
