//! The optional replica wait (`Config::wait_for_replicas`): puts confirmed by replicas, and puts that are not
//! confirmed in time failing with `NotReplicated` (while staying readable), on real primaries and replicas.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, Error};
use support::server::{Options, free_port};
use support::{Cluster, Kind, Server, unique, value};

/// A primary with one replica, the link up.
fn primary_and_replica(kind: Kind) -> (Server, Server) {
    let primary = Server::standalone(kind);
    let replica = Server::start(
        kind,
        free_port(),
        Options {
            cluster: false,
            extra: vec!["--replicaof".into(), "127.0.0.1".into(), primary.port.to_string()],
            ..Options::default()
        },
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica.admin())
            .unwrap();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(Instant::now() < deadline, "replica never linked: {info}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (primary, replica)
}

fn client(url: &str, replicas: usize, wait: Duration) -> Client {
    let config = Config::from_url(url)
        .unwrap()
        .request_timeout(Duration::from_secs(2))
        .wait_for_replicas(replicas, wait);
    Client::with_config(config).unwrap()
}

fn get_on(server: &Server, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query(&mut server.admin()).unwrap()
}

fn confirmed_puts_are_on_the_replica(kind: Kind) {
    let (primary, replica) = primary_and_replica(kind);
    let c = client(&primary.url(), 1, Duration::from_millis(500));
    let p = unique("wait");
    let keys: Vec<String> = (0..20).map(|i| format!("{p}{i}")).collect();
    let values: Vec<Vec<u8>> = (0..20).map(|i| value(&p, i, 1 + i * 5000)).collect();
    let put = c.batched_put(&keys, values.clone()).unwrap();
    assert!(put.iter().all(Result::is_ok), "{put:?}");
    // Confirmed by the replica: it holds every value now, with no waiting on our side.
    for (k, v) in keys.iter().zip(&values) {
        assert_eq!(get_on(&replica, k).as_deref(), Some(&v[..]), "{k} not on the replica");
    }
    // Gets in the same pipeline as puts are answered as usual.
    c.put(&keys[0], b"again".to_vec()).unwrap();
    assert_eq!(c.get(&keys[0]).unwrap().as_deref(), Some(&b"again"[..]));
    assert!(c.stats().node(&primary.addr()).unwrap().commands >= 2);
}

fn unconfirmed_puts_fail_in_time_and_stay_readable(kind: Kind) {
    let (primary, replica) = primary_and_replica(kind);
    // Two replicas asked for, one exists: the wait runs out.
    let c = client(&primary.url(), 2, Duration::from_millis(200));
    let p = unique("unconfirmed");
    let started = Instant::now();
    let put = c
        .batched_put(&[format!("{p}a"), format!("{p}b")], [b"1".to_vec(), b"2".to_vec()])
        .unwrap();
    let took = started.elapsed();
    for r in &put {
        assert!(
            matches!(
                r,
                Err(Error::NotReplicated {
                    acked: 1,
                    wanted: 2,
                    ..
                })
            ),
            "{put:?}"
        );
    }
    assert!(
        took >= Duration::from_millis(180) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    // Not rolled back: the primary serves the value.
    assert_eq!(c.get(format!("{p}a")).unwrap().as_deref(), Some(&b"1"[..]));
    // A frozen replica confirms nothing.
    let c = client(&primary.url(), 1, Duration::from_millis(200));
    replica.freeze();
    let err = c.put(format!("{p}c"), b"3".to_vec()).unwrap_err();
    replica.thaw();
    assert!(
        matches!(
            err,
            Error::NotReplicated {
                acked: 0,
                wanted: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("stored the write"), "{err}");
    // Once it is back, puts are confirmed again, on the same connection.
    c.put(format!("{p}d"), b"4".to_vec()).unwrap();
}

fn cluster_puts_wait_for_their_own_replica(kind: Kind) {
    let cluster = Cluster::start(kind, 3, 1);
    let c = client(&cluster.url(), 1, Duration::from_millis(800));
    let p = unique("cwait");
    let keys: Vec<String> = (0..60).map(|i| format!("{p}{i}")).collect();
    let put = c.batched_put(&keys, (0..60).map(|i| value(&p, i, 3000))).unwrap();
    assert!(put.iter().all(Result::is_ok), "{put:?}");
    for (i, k) in keys.iter().enumerate() {
        let primary = cluster.primary_for(k.as_bytes()).port;
        let replica = &cluster.nodes[cluster.replica_of(primary)];
        let mut admin = replica.admin();
        redis::cmd("READONLY").exec(&mut admin).unwrap();
        let got: Option<Vec<u8>> = redis::cmd("GET").arg(k).query(&mut admin).unwrap();
        assert_eq!(got, Some(value(&p, i, 3000)), "{k} not on its shard's replica");
        if i >= 8 {
            break; // a sample is enough; each lookup costs admin round trips
        }
    }
}

fn a_wait_longer_than_the_request_timeout_is_refused(_kind: Kind) {
    let config = Config::from_url("redis://127.0.0.1:1")
        .unwrap()
        .request_timeout(Duration::from_secs(1))
        .wait_for_replicas(1, Duration::from_secs(1));
    let err = Client::with_config(config).unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("shorter than the request timeout")),
        "{err:?}"
    );
    let config: Config = "redis://127.0.0.1:1?wait_replicas=1&wait_timeout_ms=50"
        .parse()
        .unwrap();
    assert!(
        format!("{config:?}").contains("wait_replicas: Some((1, 50ms))"),
        "{config:?}"
    );
    assert!("redis://127.0.0.1:1?wait_timeout_ms=50".parse::<Config>().is_err());
}

/// With replica waits on, one worker coalescing puts for two shards: a frozen replica delays (and fails) only the
/// puts of its own primary, not the other shard's, which go out and come back while the first `WAIT` waits.
fn a_slow_replica_delays_only_its_own_nodes_puts(kind: Kind) {
    let cluster = Cluster::start(kind, 3, 1);
    cluster.wait_synced();
    let config = Config::from_url(&cluster.url())
        .unwrap()
        .workers(1)
        .request_timeout(Duration::from_secs(3))
        .wait_for_replicas(1, Duration::from_millis(400));
    let client = Client::with_config(config).unwrap();
    let p = unique("slowreplica");
    let keys: Vec<String> = (0..400).map(|i| format!("{p}{i}")).collect();
    let port_of = |k: &String| cluster.primary_for(k.as_bytes()).port;
    let slow_port = port_of(&keys[0]);
    let (slow, fast): (Vec<String>, Vec<String>) = keys.into_iter().partition(|k| port_of(k) == slow_port);
    let frozen = &cluster.nodes[cluster.replica_of(slow_port)];
    frozen.freeze();
    let (slow_results, fast_times) = std::thread::scope(|s| {
        let slow_thread = s.spawn(|| {
            slow[..3]
                .iter()
                .map(|k| {
                    let t = Instant::now();
                    (client.put(k, b"v".to_vec()), t.elapsed())
                })
                .collect::<Vec<_>>()
        });
        // Once the slow shard's first put is out, the other shard's puts join the same worker.
        std::thread::sleep(Duration::from_millis(50));
        let mut times = Vec::new();
        for k in fast.iter().take(40) {
            let t = Instant::now();
            client.put(k, b"v".to_vec()).unwrap();
            times.push(t.elapsed());
        }
        (slow_thread.join().unwrap(), times)
    });
    frozen.thaw();
    let slowest_fast = fast_times.iter().max().unwrap();
    println!("{kind:?}: other shard's puts: slowest {slowest_fast:?}; frozen replica's shard: {slow_results:?}");
    for (r, took) in &slow_results {
        assert!(matches!(r, Err(Error::NotReplicated { acked: 0, .. })), "{r:?}");
        assert!(*took >= Duration::from_millis(380), "{took:?}");
    }
    assert!(
        *slowest_fast < Duration::from_millis(200),
        "a put to a healthy shard waited {slowest_fast:?} behind another shard's WAIT"
    );
}

per_kind!(
    a_slow_replica_delays_only_its_own_nodes_puts,
    confirmed_puts_are_on_the_replica,
    unconfirmed_puts_fail_in_time_and_stay_readable,
    cluster_puts_wait_for_their_own_replica,
    a_wait_longer_than_the_request_timeout_is_refused
);
