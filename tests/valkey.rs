//! Valkey 8 and 9's own features, on real Valkey 9 Clusters: numbered databases in cluster mode (through a primary
//! kill and an atomic slot migration), reads kept in the client's availability zone (and where they go when the
//! zone's replicas are frozen or killed), atomic slot migration (`CLUSTER MIGRATESLOTS`) under the checked load;
//! and the client naming itself to every server (`CLIENT SETINFO`, which Redis 7.0 refuses harmlessly). Each test
//! prints the figures of its row in the README. The tests that move slots or kill nodes run one at a time.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, ReadFrom, Slot};
use support::load::{Load, LoadOptions, quantile};
use support::server::Options;
use support::{Cluster, Kind, Server, reads_served, serial, unique};

/// A call longer than the 2 s request timeout plus this counts as hung.
const HANG_BOUND: Duration = Duration::from_secs(4);

fn config(url: &str) -> Config {
    Config::from_url(url).unwrap().request_timeout(Duration::from_secs(2))
}

/// The value key `i` holds in database `db` after write round `round`: says all three.
fn db_value(db: u32, i: usize, round: usize) -> Vec<u8> {
    let mut v = format!("db{db}:key{i}:round{round}:").into_bytes();
    v.resize(600 + i % 300, b'0' + (db as u8));
    v
}

/// What database `db` of the node owning `key` holds, asked with a plain connection (`SELECT`, then `GET`).
fn stored_in(cluster: &Cluster, db: u32, key: &str) -> Option<Vec<u8>> {
    let mut admin = cluster.primary_for(key.as_bytes()).admin();
    redis::cmd("SELECT").arg(db).exec(&mut admin).unwrap();
    redis::cmd("GET").arg(key).query(&mut admin).unwrap()
}

/// Reads every key through `client` and checks each value is database `db`'s of round `round` exactly.
fn assert_holds(client: &Client, keys: &[String], db: u32, round: usize, what: &str) {
    let got = client.batched_get(keys).unwrap();
    for (i, g) in got.into_iter().enumerate() {
        let g = g.unwrap_or_else(|e| panic!("{what}: key {i}: {e}"));
        assert_eq!(
            g.as_deref(),
            Some(&db_value(db, i, round)[..]),
            "{what}: key {i} of database {db}"
        );
    }
}

/// Writes round `round` to database `db` until every put is acknowledged (a failover in progress refuses some
/// for a while); reads meanwhile must hold round `round - 1` or `round` of this database, never anything else.
fn write_round_through_faults(client: &Client, keys: &[String], db: u32, round: usize, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    let mut errors = 0;
    let mut pending: Vec<usize> = (0..keys.len()).collect();
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "database {db}: {} put(s) never acknowledged",
            pending.len()
        );
        let batch: Vec<&String> = pending.iter().map(|&i| &keys[i]).collect();
        let put = client
            .batched_put(&batch, pending.iter().map(|&i| db_value(db, i, round)))
            .unwrap();
        let mut still = Vec::new();
        for (&i, r) in pending.iter().zip(put) {
            if r.is_err() {
                errors += 1;
                still.push(i);
            }
        }
        for (i, g) in client.batched_get(keys).unwrap().into_iter().enumerate() {
            if let Ok(Some(v)) = g {
                assert!(
                    v[..] == db_value(db, i, round)[..] || v[..] == db_value(db, i, round - 1)[..],
                    "database {db}, key {i}: read {:?}",
                    String::from_utf8_lossy(&v[..v.len().min(40)])
                );
            }
        }
        pending = still;
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    errors
}

/// The slot migrations node `admin` knows (`CLUSTER GETSLOTMIGRATIONS`), each as its fields.
fn slot_migrations(admin: &mut redis::Connection) -> Vec<std::collections::HashMap<String, String>> {
    let jobs: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("GETSLOTMIGRATIONS").query(admin).unwrap();
    jobs.iter()
        .map(|job| {
            job.chunks(2)
                .filter_map(|kv| match kv {
                    [redis::Value::BulkString(k), v] => {
                        let v = match v {
                            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                            redis::Value::Int(i) => i.to_string(),
                            other => format!("{other:?}"),
                        };
                        Some((String::from_utf8_lossy(k).into_owned(), v))
                    }
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// `CLUSTER MIGRATESLOTS` of `slots` from node `from` to node `to`, waited for until the source reports it done
/// and every node shows the new owner. Returns how long it took.
fn migrate_slots(cluster: &Cluster, from: usize, to: usize, slots: (u16, u16)) -> Duration {
    let started = Instant::now();
    let target: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut cluster.nodes[to].admin())
        .unwrap();
    let mut admin = cluster.nodes[from].admin();
    let exports = |admin: &mut redis::Connection| {
        slot_migrations(admin)
            .into_iter()
            .filter(|j| j.get("operation").map(String::as_str) == Some("EXPORT"))
            .collect::<Vec<_>>()
    };
    let earlier = exports(&mut admin).len();
    redis::cmd("CLUSTER")
        .arg("MIGRATESLOTS")
        .arg("SLOTSRANGE")
        .arg(slots.0)
        .arg(slots.1)
        .arg("NODE")
        .arg(&target)
        .exec(&mut admin)
        .unwrap_or_else(|e| panic!("MIGRATESLOTS {slots:?} to node {to}: {e}"));
    loop {
        let jobs = exports(&mut admin);
        let state = jobs.get(earlier).and_then(|j| j.get("state")).cloned();
        match state.as_deref() {
            Some("success") => break,
            Some("failed") | Some("cancelled") => panic!("slot migration {slots:?} ended {state:?}: {jobs:?}"),
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "slot migration {slots:?} never finished: {jobs:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every node agrees on the new owner before the test goes on.
    wait_owned(cluster, to, slots);
    started.elapsed()
}

/// The slot range node `i` was given when the Cluster was formed (see `Cluster::start`).
fn range_of(primaries: usize, i: usize) -> (u16, u16) {
    let per = 16384 / primaries;
    let start = i * per;
    let end = if i + 1 == primaries { 16383 } else { start + per - 1 };
    (start as u16, end as u16)
}

/// Databases 0 and 2 of one Valkey 9 Cluster hold different values under the same keys, and never mix: each
/// client reads its own database's values, the servers hold them where they should, replicas are read in the
/// right database, and it stays so through a primary killed and replaced and a whole shard migrated atomically.
#[test]
fn cluster_databases_never_mix_through_a_failover_and_a_migration() {
    let _serial = serial();
    let mut cluster = Cluster::start_with(
        Kind::Valkey,
        3,
        1,
        &["--cluster-databases", "4", "--cluster-node-timeout", "1000"],
    );
    cluster.wait_synced();
    let url = cluster.url();
    let db0 = Client::with_config(config(&url)).unwrap();
    let db2 = Client::with_config(config(&format!("{url}/2"))).unwrap();
    assert_eq!(config(&format!("{url}/2")).selected_database(), 2);
    let p = unique("dbs");
    let keys: Vec<String> = (0..600).map(|i| format!("{p}{i}")).collect();
    for (client, db) in [(&db0, 0), (&db2, 2)] {
        let put = client
            .batched_put(&keys, (0..keys.len()).map(|i| db_value(db, i, 0)))
            .unwrap();
        assert!(put.iter().all(Result::is_ok), "{put:?}");
    }
    assert_holds(&db0, &keys, 0, 0, "written");
    assert_holds(&db2, &keys, 2, 0, "written");
    for i in [0, 299, 599] {
        assert_eq!(
            stored_in(&cluster, 2, &keys[i]),
            Some(db_value(2, i, 0)),
            "key {i} in database 2"
        );
        assert_eq!(
            stored_in(&cluster, 0, &keys[i]),
            Some(db_value(0, i, 0)),
            "key {i} in database 0"
        );
        assert_eq!(stored_in(&cluster, 1, &keys[i]), None, "key {i} in database 1");
    }
    // Replicas are read in the selected database too.
    let replica_reads = Client::with_config(config(&format!("{url}/2")).read_from(ReadFrom::Replica)).unwrap();
    let before: Vec<u64> = cluster.nodes[3..].iter().map(reads_served).collect();
    let values: Vec<Vec<u8>> = (0..keys.len()).map(|i| db_value(2, i, 0)).collect();
    support::read_until_all_hit(&replica_reads, &keys, &values, "database 2 read from replicas");
    let after: Vec<u64> = cluster.nodes[3..].iter().map(reads_served).collect();
    assert!(
        after.iter().zip(&before).all(|(a, b)| a > b),
        "every replica served reads"
    );
    drop(replica_reads);

    // A primary killed (node 1: the test's own admin connections go through node 0): its replica is promoted;
    // the client follows in both databases.
    let victim = 1;
    let range = range_of(3, victim);
    let killed_at = Instant::now();
    cluster.nodes[victim].kill();
    let errors0 = write_round_through_faults(&db0, &keys, 0, 1, Duration::from_secs(30));
    let errors2 = write_round_through_faults(&db2, &keys, 2, 1, Duration::from_secs(30));
    let recovered = killed_at.elapsed();
    assert_holds(&db0, &keys, 0, 1, "after the failover");
    assert_holds(&db2, &keys, 2, 1, "after the failover");

    // The promoted replica's whole shard migrated atomically to another primary, every database with it.
    let owner = cluster.slot_owners()[range.0 as usize];
    let promoted = cluster.nodes.iter().position(|n| n.port == owner).unwrap();
    assert_ne!(promoted, victim);
    let (first, last) = range;
    let to = 2;
    let took = migrate_slots(&cluster, promoted, to, (first, last));
    assert_holds(&db0, &keys, 0, 1, "after the migration");
    assert_holds(&db2, &keys, 2, 1, "after the migration");
    for i in [0, 299, 599] {
        assert_eq!(
            stored_in(&cluster, 2, &keys[i]),
            Some(db_value(2, i, 1)),
            "key {i} in database 2"
        );
    }
    let put = db2
        .batched_put(&keys, (0..keys.len()).map(|i| db_value(2, i, 2)))
        .unwrap();
    assert!(put.iter().all(Result::is_ok), "{put:?}");
    assert_holds(&db2, &keys, 2, 2, "written after the migration");
    assert_holds(&db0, &keys, 0, 1, "database 0 untouched by database 2's writes");
    println!(
        "databases 0 and 2: 600 keys each; primary killed, both databases served again after {recovered:?} ({errors0} \
         and {errors2} puts refused meanwhile); slots {first}-{last} migrated in {took:?}; no value of one \
         database ever read in the other"
    );
}

/// The zone of node `i` of a 3-primary, 2-replica Cluster: primary 0 and the first replica of each shard in
/// az-a; the other primaries and the second replicas in az-b.
fn zone_of(i: usize) -> &'static str {
    match i {
        0 | 3..=5 => "az-a",
        _ => "az-b",
    }
}

/// Reads served by node `i` of `nodes` while `read` runs, for the nodes in `watch` (a frozen one cannot be asked).
fn served_during(cluster: &Cluster, watch: &[usize], read: impl FnOnce()) -> Vec<u64> {
    served_during_set(&cluster.nodes, watch, read)
}

/// Bytes node `i` has sent to its clients so far (`INFO stats`).
fn bytes_sent(server: &Server) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(&mut server.admin()).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads each key `rounds` times, batched and single, checking every value.
fn read_rounds(client: &Client, keys: &[String], values: &[Vec<u8>], rounds: usize) {
    for _ in 0..rounds {
        for (g, v) in client.batched_get(keys).unwrap().into_iter().zip(values) {
            assert_eq!(g.unwrap().as_deref(), Some(&v[..]));
        }
        for (k, v) in keys.iter().zip(values).step_by(7) {
            assert_eq!(client.get(k).unwrap().as_deref(), Some(&v[..]));
        }
    }
}

/// Reads until `ok` holds of the reads served meanwhile by the `watch` nodes (the client has settled on where
/// reads go after a fault), at most 10 s; returns the last counts, after printing how long it took.
fn settle(
    cluster: &Cluster,
    client: &Client,
    keys: &[String],
    values: &[Vec<u8>],
    watch: &[usize],
    ok: impl Fn(&[u64]) -> bool,
    what: &str,
) -> Vec<u64> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    loop {
        let served = served_during(cluster, watch, || read_rounds(client, keys, values, 3));
        if ok(&served) {
            println!("{what}: settled after {:?}", started.elapsed());
            return served;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: reads never settled; last served {served:?} by nodes {watch:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Nodes in two zones under read load: the client's zone serves its reads while it has replicas; with one
/// shard's home replica frozen, that shard's reads go to its other-zone replica (`AzAffinity`) or to its primary
/// in the home zone (`AzAffinityReplicasAndPrimary`); with both its replicas gone, to the primary; and back home
/// once the home replica answers again. Every value is checked.
#[test]
fn reads_stay_in_the_clients_zone_while_it_can() {
    let _serial = serial();
    let mut cluster = Cluster::start_placed(Kind::Valkey, 3, 2, &["--cluster-databases", "4"], |i| Options {
        extra: vec!["--availability-zone".into(), zone_of(i).into()],
        ..Options::default()
    });
    cluster.wait_synced();
    let url = cluster.url();
    let writer = Client::open(&url).unwrap();
    let (keys, values) = support::store_values(&writer, "zones", 300, 2 << 10);
    let az = |policy| {
        Client::with_config(
            config(&url)
                .read_from(policy)
                .client_az("az-a")
                .silence_timeout(Duration::from_millis(300)),
        )
        .unwrap()
    };
    let affinity = az(ReadFrom::AzAffinity);
    let with_primary = az(ReadFrom::AzAffinityReplicasAndPrimary);
    support::read_until_all_hit(&affinity, &keys, &values, "zone reads");
    support::read_until_all_hit(&with_primary, &keys, &values, "zone reads");

    // Everything healthy: only the three az-a replicas (nodes 3, 4, 5) serve reads, for both policies.
    let all: Vec<usize> = (0..9).collect();
    let sent_before: Vec<u64> = cluster.nodes.iter().map(bytes_sent).collect();
    for client in [&affinity, &with_primary] {
        let served = served_during(&cluster, &all, || read_rounds(client, &keys, &values, 5));
        for (i, n) in served.iter().enumerate() {
            assert_eq!(
                *n > 0,
                (3..=5).contains(&i),
                "node {i} ({}) served {n} reads: {served:?}",
                zone_of(i)
            );
        }
    }
    let sent: Vec<u64> = cluster
        .nodes
        .iter()
        .zip(&sent_before)
        .map(|(n, b)| bytes_sent(n) - b)
        .collect();
    println!("healthy: bytes sent per node (0-2 primaries, 3-5 az-a replicas, 6-8 az-b replicas): {sent:?}");

    // The CLI names the database it works in and each node's zone.
    let db3 = Client::open(&format!("{url}/3")).unwrap();
    let put = db3.batched_put(&keys[..5], values[..5].to_vec()).unwrap();
    assert!(put.iter().all(Result::is_ok), "{put:?}");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvcache-redis"))
            .args(args)
            .env_remove("KVCACHE_URL")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let db3_url = format!("{url}/3");
    let text = cli(&["check", &db3_url, "--read-from", "az-affinity", "--client-az", "az-a"]);
    assert!(text.contains("database 3"), "{text}");
    assert!(text.contains("(zone az-a)") && text.contains("(zone az-b)"), "{text}");
    let text = cli(&["inspect", &db3_url]);
    assert!(
        text.contains("database 3") && text.contains("scanned   5 string keys"),
        "{text}"
    );

    // Shard 0's home replica (node 3) frozen: shard 0's reads leave it.
    cluster.nodes[3].freeze();
    let watch: Vec<usize> = (0..9).filter(|&i| i != 3).collect();
    let at = |i: usize| watch.iter().position(|&w| w == i).unwrap();
    let served = settle(
        &cluster,
        &affinity,
        &keys,
        &values,
        &watch,
        |s| s[at(6)] > 0 && s[at(0)] == 0,
        "az_affinity, home replica frozen",
    );
    assert!(
        served[at(4)] > 0 && served[at(5)] > 0,
        "the other shards stay home: {served:?}"
    );
    assert!(
        served[at(7)] == 0 && served[at(8)] == 0,
        "only shard 0 leaves home: {served:?}"
    );
    println!("az_affinity, shard 0's home replica frozen: reads per node (node 3 left out) {served:?}");
    let served = settle(
        &cluster,
        &with_primary,
        &keys,
        &values,
        &watch,
        |s| s[at(0)] > 0 && s[at(6)] == 0,
        "az_affinity_replicas_and_primary, home replica frozen",
    );
    println!("az_affinity_replicas_and_primary, shard 0's home replica frozen: reads per node {served:?}");

    // Shard 0's other replica killed too: its reads go to the primary, for both policies.
    cluster.nodes[6].kill();
    let watch: Vec<usize> = (0..9).filter(|&i| i != 3 && i != 6).collect();
    let at = |i: usize| watch.iter().position(|&w| w == i).unwrap();
    let served = settle(
        &cluster,
        &affinity,
        &keys,
        &values,
        &watch,
        |s| s[at(0)] > 0,
        "az_affinity, no replica left in shard 0",
    );
    assert!(
        served[at(4)] > 0 && served[at(5)] > 0,
        "the other shards stay home: {served:?}"
    );
    println!("az_affinity, shard 0 without replicas: reads per node (nodes 3, 6 left out) {served:?}");

    // The home replica thawed: reads come home again.
    cluster.nodes[3].thaw();
    let watch: Vec<usize> = (0..9).filter(|&i| i != 6).collect();
    let at = |i: usize| watch.iter().position(|&w| w == i).unwrap();
    let served = settle(
        &cluster,
        &affinity,
        &keys,
        &values,
        &watch,
        |s| s[at(3)] > 0 && s[at(0)] == 0,
        "az_affinity, home replica back",
    );
    println!("az_affinity, home replica back: reads per node (node 6 left out) {served:?}");
}

/// How a test moves slots.
#[derive(Clone, Copy, Debug)]
enum Move {
    /// `CLUSTER MIGRATESLOTS` (Valkey 9).
    Atomic,
    /// `redis-cli --cluster reshard`: `MIGRATING` / `IMPORTING`, `MIGRATE` key by key, `ASK` meanwhile.
    Reshard,
}

/// All slots of one primary moved to another with `CLUSTER MIGRATESLOTS` and back, under the checked load (mixed
/// puts and gets, batched and single, every value checked): no error, no wrong, stale or lost value; prints how
/// long callers waited around each hand-over.
#[test]
fn atomic_slot_migration_under_load_costs_callers_nothing() {
    shard_moved_away_and_back_under_load(Kind::Valkey, Move::Atomic);
}

/// The same with the older `redis-cli --cluster reshard` (500 slots), on both servers.
fn a_reshard_under_load_costs_callers_nothing(kind: Kind) {
    shard_moved_away_and_back_under_load(kind, Move::Reshard);
}

/// `redis-cli --cluster reshard` of `slots` from node `from` to node `to`, waited for until every node shows the
/// new owner. Returns how long it took.
fn reshard(cluster: &Cluster, from: usize, to: usize, slots: (u16, u16)) -> Duration {
    let started = Instant::now();
    let id = |i: usize| -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut cluster.nodes[i].admin())
            .unwrap()
    };
    let out = std::process::Command::new("redis-cli")
        .args(["--cluster", "reshard", &cluster.nodes[from].addr()])
        .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
        .args(["--cluster-slots", &(slots.1 - slots.0 + 1).to_string(), "--cluster-yes"])
        .args(["--cluster-pipeline", "50"])
        .output()
        .expect("redis-cli (Debian's redis-tools)");
    assert!(
        out.status.success(),
        "reshard: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_owned(cluster, to, slots);
    started.elapsed()
}

/// Waits (10 s at most) until every node shows node `to` owning the first and last of `slots`.
fn wait_owned(cluster: &Cluster, to: usize, slots: (u16, u16)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = cluster.nodes.iter().filter(|n| n.is_running()).all(|n| {
            let slots_seen: Vec<redis::Value> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query(&mut n.admin())
                .unwrap_or_default();
            let owner_of = |slot: u16| {
                slots_seen.iter().find_map(|r| match r {
                    redis::Value::Array(f) => match (&f[0], &f[1], &f[2]) {
                        (redis::Value::Int(a), redis::Value::Int(b), redis::Value::Array(p))
                            if (*a..=*b).contains(&(slot as i64)) =>
                        {
                            match p[1] {
                                redis::Value::Int(port) => Some(port as u16),
                                _ => None,
                            }
                        }
                        _ => None,
                    },
                    _ => None,
                })
            };
            owner_of(slots.0) == Some(cluster.nodes[to].port) && owner_of(slots.1) == Some(cluster.nodes[to].port)
        });
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes never all showed {slots:?} on node {to}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn shard_moved_away_and_back_under_load(kind: Kind, how: Move) {
    let _serial = serial();
    // A primary that gives away its last slot would otherwise turn into a replica of the node that took them.
    let cluster = Cluster::start_with(kind, 3, 1, &["--cluster-allow-replica-migration", "no"]);
    cluster.wait_synced();
    let owners = cluster.slot_owners();
    let mut primaries: Vec<u16> = owners.clone();
    primaries.sort_unstable();
    primaries.dedup();
    let mut opts = LoadOptions::new(&unique("moved"));
    opts.keys_per_thread = 400;
    opts.sizes = vec![100, 4 << 10, 64 << 10];
    opts.groups = 3;
    opts.threads = 6;
    let ports = primaries.clone();
    opts.group = Some(Arc::new(move |key: &[u8]| {
        let port = owners[Slot::of(key).get() as usize];
        ports.iter().position(|p| *p == port).unwrap()
    }));
    let client = Arc::new(Client::with_config(config(&cluster.url())).unwrap());
    let load = Load::start(client.clone(), opts, HANG_BOUND);
    std::thread::sleep(Duration::from_millis(800));
    let quiet = load.take_latencies();
    let (from, to) = (0, 1);
    // The whole shard moved atomically; 500 of its slots (its lowest: those `redis-cli` picks) by a reshard, which
    // moves keys one slot at a time (tens of seconds for a whole shard).
    let range = match how {
        Move::Atomic => range_of(3, from),
        Move::Reshard => (range_of(3, from).0, range_of(3, from).0 + 499),
    };
    let out_at = load.now();
    let move_slots = |from, to| match how {
        Move::Atomic => migrate_slots(&cluster, from, to, range),
        Move::Reshard => reshard(&cluster, from, to, range),
    };
    let out = move_slots(from, to);
    let during_out = load.take_latencies();
    std::thread::sleep(Duration::from_millis(500));
    let _between = load.take_latencies();
    let back_at = load.now();
    let back = move_slots(to, from);
    let during_back = load.take_latencies();
    std::thread::sleep(Duration::from_millis(800));
    let r = load.finish();
    let describe = |mut l: Vec<u32>| {
        l.sort_unstable();
        format!(
            "{} calls, p50 {} us, p99 {} us, max {} us",
            l.len(),
            quantile(&l, 0.5),
            quantile(&l, 0.99),
            l.last().copied().unwrap_or(0)
        )
    };
    println!(
        "{kind:?}, {how:?} of slots {}-{} away at {out_at:?} ({out:?}) and back at \
         {back_at:?} ({back:?}) under load: {} calls, {} key ops, {} errors, {} wrong, {} stale, {} lost, slowest \
         call {:?}",
        range.0,
        range.1,
        r.calls,
        r.key_ops,
        r.errors(),
        r.wrong,
        r.stale,
        r.lost,
        r.max_call
    );
    println!("  before: {}", describe(quiet));
    println!("  migrating away: {}", describe(during_out));
    println!("  migrating back: {}", describe(during_back));
    for (i, g) in r.groups.iter().enumerate() {
        println!(
            "  shard {i}: ok {}, errors {}, slowest {:?} at {:?}; {:?}",
            g.ok, g.errors, g.slowest, g.slowest_at, g.samples
        );
    }
    assert_eq!(r.wrong, 0, "wrong values {:?}", r.wrong_samples);
    assert_eq!(r.hung, 0, "calls over {HANG_BOUND:?} (max {:?})", r.max_call);
    assert!(r.untyped.is_empty(), "untyped errors {:?}", r.untyped);
    assert!(r.key_ops > 1000, "too little load to mean anything: {}", r.key_ops);
    assert_eq!(
        r.errors(),
        0,
        "a {how:?} must not reach callers: {:?}",
        r.groups[0].samples
    );
    assert_eq!(
        (r.stale, r.lost),
        (0, 0),
        "no stale or missing value for a key that exists"
    );
    assert_eq!(cluster.slot_owners()[range.0 as usize], cluster.nodes[from].port);
}

/// Every connection names the library and its version (`CLIENT SETINFO`, in the handshake's one round trip) and,
/// when asked, the client (`CLIENT SETNAME`); operators see them in `CLIENT LIST`. Redis 7.0 refuses `SETINFO`:
/// the connection works anyway, and the name is still set.
fn the_client_names_itself(kind: Kind) {
    let server = support::shared_standalone(kind);
    let client = Client::with_config(config(&server.url()).client_name("kv-worker-7")).unwrap();
    client.put("setinfo-check", &b"v"[..]).unwrap();
    assert_eq!(client.get("setinfo-check").unwrap().as_deref(), Some(&b"v"[..]));
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut server.admin()).unwrap();
    let ours: Vec<&str> = list.lines().filter(|l| l.contains(" name=kv-worker-7 ")).collect();
    assert!(!ours.is_empty(), "no connection named kv-worker-7 in:\n{list}");
    if kind == Kind::Valkey {
        let version = format!("lib-ver={}", env!("CARGO_PKG_VERSION"));
        assert!(
            ours.iter()
                .all(|l| l.contains("lib-name=kvcache-redis") && l.contains(&version)),
            "{ours:?}"
        );
    }
    // Unnamed clients still say which library they are.
    let plain = Client::open(&server.url()).unwrap();
    plain.put("setinfo-check-2", &b"v"[..]).unwrap();
    if kind == Kind::Valkey {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut server.admin()).unwrap();
        let libs = list.lines().filter(|l| l.contains("lib-name=kvcache-redis")).count();
        assert!(libs > ours.len(), "{list}");
    }
}

per_kind!(the_client_names_itself, a_reshard_under_load_costs_callers_nothing);

/// Zone reads under Sentinel: each data node's zone set at runtime (`CONFIG SET availability-zone`), read by the
/// client from the node itself; the replica in the client's zone serves the reads, and with it gone the primary in
/// that zone (`az_affinity_replicas_and_primary`) before the other zone's replica.
#[test]
fn sentinel_zone_reads_stay_home() {
    use support::sentinel::{SentinelOptions, SentinelSet};
    let mut set = SentinelSet::start(
        Kind::Valkey,
        SentinelOptions {
            replicas: 2,
            sentinels: 3,
            ..SentinelOptions::default()
        },
    );
    set.wait_synced();
    // Primary and replica 2 in az-a, replica 1 in az-b.
    for (node, zone) in set.nodes.iter().zip(["az-a", "az-b", "az-a"]) {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("availability-zone")
            .arg(zone)
            .exec(&mut node.admin())
            .unwrap();
    }
    let writer = Client::open(&set.url("redis+sentinel", "")).unwrap();
    let (keys, values) = support::store_values(&writer, "sentinel-zones", 200, 1000);
    let url = set.url("redis+sentinel", "?client_az=az-a&read_from=");
    let open = |policy: &str| Client::open(&format!("{url}{policy}")).unwrap();
    let affinity = open("az_affinity");
    support::read_until_all_hit(&affinity, &keys, &values, "sentinel zone reads");
    let all = [0, 1, 2];
    let served = served_during_set(&set.nodes, &all, || read_rounds(&affinity, &keys, &values, 3));
    assert!(
        served[2] > 0 && served[0] == 0 && served[1] == 0,
        "only the az-a replica: {served:?}"
    );
    // The az-a replica killed: the zone's primary next for the second policy, the az-b replica for the first.
    set.nodes[2].kill();
    let with_primary = open("az_affinity_replicas_and_primary");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let served = served_during_set(&set.nodes, &[0, 1], || read_rounds(&with_primary, &keys, &values, 3));
        let affinity_served = served_during_set(&set.nodes, &[0, 1], || read_rounds(&affinity, &keys, &values, 3));
        if served == [served[0].max(1), 0] && affinity_served == [0, affinity_served[1].max(1)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reads never settled: with_primary {served:?}, affinity {affinity_served:?} (primary, az-b replica)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads served by each of `nodes[i]` for `i` in `watch` while `read` runs.
fn served_during_set(nodes: &[Server], watch: &[usize], read: impl FnOnce()) -> Vec<u64> {
    let before: Vec<u64> = watch.iter().map(|&i| reads_served(&nodes[i])).collect();
    read();
    watch
        .iter()
        .zip(before)
        .map(|(&i, b)| reads_served(&nodes[i]) - b)
        .collect()
}
