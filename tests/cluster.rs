//! The client against a real 3-primary Cluster (one replica each) of Redis 7 and of Valkey 9.

#[macro_use]
mod support;

use std::collections::{HashMap, HashSet};

use kvcache_redis::{Client, Config, ReadFrom, Slot};
use support::{Cluster, Kind, command_calls, shared_cluster, unique};

fn client(kind: Kind) -> Client {
    Client::open(&shared_cluster(kind).url()).expect("open")
}

fn ttl_of(kind: Kind, key: &[u8]) -> i64 {
    redis::cmd("TTL")
        .arg(key)
        .query(&mut shared_cluster(kind).primary_for(key).admin())
        .unwrap()
}

contract_tests!(
    detects_the_cluster_and_its_primaries,
    slots_agree_with_cluster_keyslot,
    a_batch_over_hundreds_of_slots_is_one_pipeline_per_node,
    database_numbers_are_refused_where_the_cluster_has_none,
    replica_reads,
    an_unlinked_replica_is_not_read,
    nodes_announced_by_host_name_are_reached_by_it
);

fn detects_the_cluster_and_its_primaries(kind: Kind) {
    let c = client(kind);
    assert!(c.is_cluster());
    let mut primaries = c.primaries();
    primaries.sort();
    let mut expected: Vec<String> = shared_cluster(kind).nodes[..3].iter().map(|n| n.addr()).collect();
    expected.sort();
    assert_eq!(primaries, expected);
}

fn slots_agree_with_cluster_keyslot(kind: Kind) {
    slots_agree(shared_cluster(kind));
}

fn a_batch_over_hundreds_of_slots_is_one_pipeline_per_node(kind: Kind) {
    // A cluster of its own: the server-side command counts must see this test's commands only.
    one_pipeline_per_node(&Cluster::start(kind, 3, 0));
}

/// A database other than 0 in a Cluster that has only database 0 (Redis 7; Valkey 9 with the default
/// `cluster-databases 1`): `open` fails with a configuration error that says why, before anything is written.
fn database_numbers_are_refused_where_the_cluster_has_none(kind: Kind) {
    let url = format!("{}/2", shared_cluster(kind).url());
    let err = Client::open(&url).unwrap_err();
    assert!(
        matches!(err, kvcache_redis::Error::Config(ref m) if m.contains("cluster-databases") && m.contains("database 2")),
        "{err}"
    );
    let err = Client::with_config(Config::from_url(&shared_cluster(kind).url()).unwrap().database(1)).unwrap_err();
    assert!(matches!(err, kvcache_redis::Error::Config(_)), "{err}");
    // Database 0 keeps working, said or not.
    let c = Client::open(&format!("{}/0", shared_cluster(kind).url())).unwrap();
    c.put("cluster-db0-works", &b"yes"[..]).unwrap();
    assert_eq!(c.get("cluster-db0-works").unwrap().as_deref(), Some(&b"yes"[..]));
}

fn slots_agree(cluster: &Cluster) {
    let mut admin = cluster.nodes[0].admin();
    let mut keys: Vec<Vec<u8>> = [
        &b"foo{}{bar}"[..],
        b"foo{{bar}}zap",
        b"foo{bar}{zap}",
        b"{}",
        b"{",
        b"}{",
        b"",
        b"{user1000}.following",
    ]
    .iter()
    .map(|k| k.to_vec())
    .collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..300 {
        let len = i % 40;
        let key: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Braces often, so that hash tags are exercised.
                match x % 11 {
                    0 => b'{',
                    1 => b'}',
                    _ => (x >> 8) as u8,
                }
            })
            .collect();
        keys.push(key);
    }
    for key in keys {
        let server: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query(&mut admin)
            .unwrap();
        assert_eq!(Slot::of(&key).get(), server, "key {key:?}");
    }
}

/// 2000 keys over hundreds of slots: no CROSSSLOT, order kept, and (one worker, bounds above 2000) exactly one
/// round trip per primary, each carrying one MGET (or GET, for a slot with one key) per slot.
fn one_pipeline_per_node(cluster: &Cluster) {
    let config = Config::from_url(&cluster.url())
        .unwrap()
        .workers(1)
        .batch_max_keys(4096)
        .value_size_hint(64);
    let client = Client::with_config(config).unwrap();
    let p = unique("spread");
    let keys: Vec<String> = (0..2000).map(|i| format!("{p}{i}")).collect();
    let values: Vec<Vec<u8>> = (0..2000).map(|i| format!("value-{i}").into_bytes()).collect();
    let put = client.batched_put(&keys, values.clone()).unwrap();
    assert!(put.iter().all(Result::is_ok));

    let mut slots_per_node: HashMap<String, HashSet<u16>> = HashMap::new();
    for k in &keys {
        let node = cluster.primary_for(k.as_bytes()).addr();
        slots_per_node
            .entry(node)
            .or_default()
            .insert(Slot::of(k.as_bytes()).get());
    }
    let total_slots: usize = slots_per_node.values().map(HashSet::len).sum();
    assert!(total_slots > 300, "only {total_slots} slots");

    let primaries = &cluster.nodes[..3];
    let before: Vec<(u64, u64)> = primaries
        .iter()
        .map(|n| (command_calls(n, "mget"), command_calls(n, "get")))
        .collect();
    let stats_before = client.stats();
    let got = client.batched_get(&keys).unwrap();
    for (i, (g, v)) in got.into_iter().zip(&values).enumerate() {
        assert_eq!(g.unwrap().as_deref(), Some(&v[..]), "key {i}");
    }
    let stats_after = client.stats();
    let per_node: Vec<usize> = primaries.iter().map(|n| slots_per_node[&n.addr()].len()).collect();
    eprintln!(
        "{:?}: 2000 keys over {total_slots} slots -> {} round trips; slots (= commands) per primary {per_node:?}",
        cluster.kind,
        stats_after.round_trips - stats_before.round_trips
    );
    assert_eq!(
        stats_after.round_trips - stats_before.round_trips,
        3,
        "one round trip per primary"
    );
    for (n, (mget0, get0)) in primaries.iter().zip(before) {
        let commands = command_calls(n, "mget") - mget0 + command_calls(n, "get") - get0;
        assert_eq!(
            commands as usize,
            slots_per_node[&n.addr()].len(),
            "{}: one command per slot",
            n.addr()
        );
        let rt = |s: &kvcache_redis::Stats| s.node(&n.addr()).map_or(0, |x| x.round_trips);
        assert_eq!(rt(&stats_after) - rt(&stats_before), 1, "{}: one round trip", n.addr());
    }
}

/// Reads from Cluster replicas: `read_from=replica` reads every value back from the replicas alone (each replica
/// said `READONLY` and served some), `spread` from primaries and replicas both; writes stay on the primaries.
fn replica_reads(kind: Kind) {
    let cluster = Cluster::start(kind, 3, 1);
    cluster.wait_synced();
    let writer = Client::open(&cluster.url()).unwrap();
    let (keys, values) = support::store_values(&writer, "replica-read", 300, 2000);
    for (read_from, name) in [(ReadFrom::Replica, "replica"), (ReadFrom::Spread, "spread")] {
        let config: Config = cluster.url().parse().unwrap();
        let client = Client::with_config(config.read_from(read_from)).unwrap();
        let before = support::reads_served_each(&cluster.nodes);
        support::read_until_all_hit(&client, &keys, &values, name);
        for k in &keys[..30] {
            assert!(client.get(k).unwrap().is_some(), "{name}: {k} missing");
        }
        let served = support::reads_served_since(&cluster.nodes, &before);
        println!("{kind:?} read_from={name}: reads per node (primaries, then replicas) {served:?}");
        let (primaries, replicas) = served.split_at(cluster.primaries);
        assert!(
            replicas.iter().all(|&r| r > 0),
            "{name}: a replica served nothing: {served:?}"
        );
        match read_from {
            ReadFrom::Replica => assert!(primaries.iter().all(|&r| r == 0), "{name}: {served:?}"),
            _ => assert!(primaries.iter().all(|&r| r > 0), "{name}: {served:?}"),
        }
        // Writes through a replica-reading client still go to the primaries.
        client.put(&keys[0], values[0].clone()).unwrap();
    }
    for n in &cluster.nodes[cluster.primaries..] {
        assert!(
            command_calls(n, "readonly") > 0,
            "replica {} never said READONLY",
            n.addr()
        );
        // (A replica counts the SETs it replicates; a write sent to it would be refused with READONLY.)
        let errors: String = redis::cmd("INFO").arg("errorstats").query(&mut n.admin()).unwrap();
        assert!(
            !errors.contains("errorstat_READONLY"),
            "a write reached replica {}: {errors}",
            n.addr()
        );
    }
}

/// A Cluster replica whose link to its primary is down (here: it cannot authenticate to it, so it keeps its stale
/// data and keeps retrying) is not read from: its reads go to the shard's primary, the other replicas still serve.
fn an_unlinked_replica_is_not_read(kind: Kind) {
    let cluster = Cluster::start(kind, 3, 1);
    cluster.wait_synced();
    let lagging = &cluster.nodes[cluster.primaries];
    redis::cmd("CONFIG")
        .arg(&["SET", "masterauth", "not-the-password"])
        .exec(&mut lagging.admin())
        .unwrap();
    redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "master"])
        .exec(&mut lagging.admin())
        .unwrap();
    let link_down = || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut lagging.admin())
            .unwrap();
        info.contains("master_link_status:down")
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !link_down() {
        assert!(std::time::Instant::now() < until, "the replica's link never went down");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let config: Config = cluster.url().parse().unwrap();
    let client = Client::with_config(config.read_from(ReadFrom::Replica)).unwrap();
    let (keys, values) = support::store_values(&client, "unlinked", 300, 1000);
    let before = support::reads_served_each(&cluster.nodes);
    // Written after the link went down: the unlinked replica does not have them, so reading it would miss.
    support::read_until_all_hit(&client, &keys, &values, "an unlinked replica");
    for _ in 0..5 {
        let got = client.batched_get(&keys).unwrap();
        assert!(got.iter().all(|g| matches!(g, Ok(Some(_)))), "a read missed");
    }
    let served = support::reads_served_since(&cluster.nodes, &before);
    println!("{kind:?}: reads per node (primaries, then replicas; the first replica unlinked) {served:?}");
    assert_eq!(
        served[cluster.primaries], 0,
        "the unlinked replica was read: {served:?}"
    );
    assert!(served[0] > 0, "its primary served its reads: {served:?}");
    assert!(served[cluster.primaries + 1..].iter().all(|&r| r > 0), "{served:?}");
}

/// Nodes that announce a host name (`cluster-announce-hostname` with `cluster-preferred-endpoint-type hostname`)
/// are reached by that name; a node that announces none is shown as `?` (unknown endpoint) and reached at the
/// address the client used for the node that answered. Reads, writes and replica reads work across all of them.
fn nodes_announced_by_host_name_are_reached_by_it(kind: Kind) {
    // Node 2 (a primary) announces no host name: the others show it as `?`.
    let cluster = Cluster::start_placed(kind, 3, 1, &["--cluster-preferred-endpoint-type", "hostname"], |i| {
        support::server::Options {
            extra: if i == 2 {
                Vec::new()
            } else {
                vec!["--cluster-announce-hostname".into(), "localhost".into()]
            },
            ..Default::default()
        }
    });
    cluster.wait_synced();
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut cluster.nodes[0].admin())
        .unwrap();
    let shown = format!("{slots:?}");
    assert!(
        shown.contains("localhost") && shown.contains("\"?\""),
        "the test needs host names and an unknown endpoint: {shown}"
    );
    let client = Client::open(&cluster.url()).unwrap();
    let mut primaries = client.primaries();
    primaries.sort();
    let mut expected: Vec<String> = (0..3)
        .map(|i| match i {
            2 => format!("127.0.0.1:{}", cluster.nodes[i].port),
            _ => format!("localhost:{}", cluster.nodes[i].port),
        })
        .collect();
    expected.sort();
    assert_eq!(primaries, expected, "nodes by the names they announce");
    let (keys, values) = support::store_values(&client, "hostnames", 300, 1000);
    let got = client.batched_get(&keys).unwrap();
    for (g, v) in got.into_iter().zip(&values) {
        assert_eq!(g.unwrap().as_deref(), Some(&v[..]));
    }
    for node in &cluster.nodes[..3] {
        assert!(
            command_calls(node, "mget") + command_calls(node, "get") > 0,
            "{} served reads",
            node.port
        );
    }
    let replicas = Client::with_config(Config::from_url(&cluster.url()).unwrap().read_from(ReadFrom::Replica)).unwrap();
    support::read_until_all_hit(&replicas, &keys, &values, "replica reads by host name");
}
