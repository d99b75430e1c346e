//! Faults against real servers: a frozen server (timeouts, poisoned connections), a stopped and restarted one,
//! per-key server errors, a dead Cluster primary (partial failure), and real MOVED / ASK redirects.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, Error, Slot};
use support::{Cluster, Kind, Server, store_values, unique, value};

fn timeout_discards_the_poisoned_connection(kind: Kind) {
    let server = Server::standalone(kind);
    let config = Config::from_url(&server.url())
        .unwrap()
        .workers(1)
        .request_timeout(Duration::from_millis(300));
    let client = Client::with_config(config).unwrap();
    client.put("a", b"value-a".to_vec()).unwrap();
    client.put("b", b"value-b".to_vec()).unwrap();
    server.freeze();
    let started = Instant::now();
    let err = client.get("a").unwrap_err();
    let took = started.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    server.thaw();
    // The late reply to "a" is still on the old connection; it must never be taken as the answer for "b".
    assert_eq!(client.get("b").unwrap().as_deref(), Some(&b"value-b"[..]));
    assert_eq!(client.get("a").unwrap().as_deref(), Some(&b"value-a"[..]));
    let stats = client.stats();
    assert!(stats.timeouts >= 1 && stats.connects >= 2, "{stats:?}");
}

/// A caller's interrupt check (what a binding runs for Ctrl-C) ends a wait on a frozen server long before the
/// deadline; buffers lent for the call come back untouched, and the client answers again once the server does.
fn an_interrupt_ends_the_wait_and_the_client_stays_usable(kind: Kind) {
    let server = Server::standalone(kind);
    let client = Client::open(&server.url()).unwrap();
    client.put("k", vec![7u8; 100_000]).unwrap();
    server.freeze();
    let interrupt_after = |d: Duration| -> kvcache_redis::Interrupt {
        let start = Instant::now();
        std::sync::Arc::new(move || start.elapsed() >= d)
    };
    let started = Instant::now();
    let call = client.call().timeout(Duration::from_secs(10));
    let err = call
        .interruptible(interrupt_after(Duration::from_millis(150)))
        .get("k")
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::Interrupted), "{err:?}");
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    let call = client.call().timeout(Duration::from_secs(10));
    let got = call
        .interruptible(interrupt_after(Duration::from_millis(100)))
        .batched_get_into(&["k", "k"], vec![vec![1u8; 100_000], vec![1u8; 10]]);
    for r in &got {
        assert!(matches!(r.result, Err(Error::Interrupted)), "{:?}", r.result);
        let buf = r.buf.as_ref().expect("handed back");
        assert!(buf.iter().all(|&b| b == 1), "nothing written");
    }
    // An interrupt that never fires changes nothing.
    server.thaw();
    let never: kvcache_redis::Interrupt = std::sync::Arc::new(|| false);
    let value = client.call().interruptible(never).get("k").unwrap();
    assert_eq!(value.as_deref(), Some(&vec![7u8; 100_000][..]));
}

fn stopped_server_fails_fast_and_recovers(kind: Kind) {
    let mut server = Server::standalone(kind);
    let config = Config::from_url(&server.url()).unwrap().workers(2);
    let client = Client::with_config(config).unwrap();
    client.put("k", b"v".to_vec()).unwrap();
    server.stop();
    let started = Instant::now();
    let err = client.get("k").unwrap_err();
    assert!(err.is_io(), "{err:?}");
    let per_key = client.batched_get(&["k", "l"]).unwrap();
    assert!(
        per_key.iter().all(|r| matches!(r, Err(Error::Io { .. }))),
        "{per_key:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "failing took {:?}",
        started.elapsed()
    );
    server.restart();
    // The data is gone (no persistence), but the client reconnects by itself.
    assert_eq!(client.get("k").unwrap(), None);
    client.put("k", b"again".to_vec()).unwrap();
    assert_eq!(client.get("k").unwrap().as_deref(), Some(&b"again"[..]));
}

fn a_key_error_fails_only_that_key(kind: Kind) {
    let server = Server::standalone(kind);
    // A user that may only touch keys under "ok:": any other key is refused with NOPERM, per key.
    redis::cmd("ACL")
        .arg(&["SETUSER", "limited", "on", ">limited-pw", "~ok:*", "+@all"])
        .exec(&mut server.admin())
        .unwrap();
    let client = Client::open(&format!("redis://limited:limited-pw@127.0.0.1:{}", server.port)).unwrap();
    let keys = ["ok:a", "forbidden", "ok:c"];
    let put = client
        .batched_put(&keys, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()])
        .unwrap();
    assert!(put[0].is_ok() && put[2].is_ok(), "{put:?}");
    assert_eq!(put[1].as_ref().unwrap_err().server_code(), Some("NOPERM"), "{put:?}");
    let got = client.batched_get(&keys).unwrap();
    assert_eq!(got[0].as_ref().unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(
        got[1].as_ref().unwrap_err().server_code(),
        Some("NOPERM"),
        "{:?}",
        got[1]
    );
    assert_eq!(got[2].as_ref().unwrap().as_deref(), Some(&b"3"[..]));
    // A get-prefix stops at the failed key, keeping what came before, and counts the failure.
    let before = client.stats().prefix_failures;
    assert_eq!(client.batched_get_non_blocking(&keys).wait().unwrap().len(), 1);
    assert_eq!(client.stats().prefix_failures, before + 1);
    let err = client
        .batched_get_non_blocking(&["forbidden", "ok:a"])
        .wait()
        .unwrap_err();
    assert_eq!(err.server_code(), Some("NOPERM"));
    // A key of another type reads as a miss, alone or in a batch (as MGET answers).
    redis::cmd("LPUSH")
        .arg("ok:list")
        .arg("x")
        .exec(&mut server.admin())
        .unwrap();
    assert_eq!(client.get("ok:list").unwrap(), None);
    let got = client.batched_get(&["ok:a", "ok:list"]).unwrap();
    assert_eq!(got[1].as_ref().unwrap(), &None);
    assert_eq!(
        client.get("ok:c").unwrap().as_deref(),
        Some(&b"3"[..]),
        "the client still works"
    );
}

fn dead_primary_fails_only_its_keys(kind: Kind) {
    let mut cluster = Cluster::start_with(kind, 3, 0, &["--cluster-require-full-coverage", "no"]);
    let client = Client::open(&cluster.url()).unwrap();
    let (keys, values) = store_values(&client, "dead", 60, 2000);
    let victim = cluster.primary_for(keys[0].as_bytes()).port;
    let on_victim: Vec<bool> = keys
        .iter()
        .map(|k| cluster.primary_for(k.as_bytes()).port == victim)
        .collect();
    let idx = cluster.nodes.iter().position(|n| n.port == victim).unwrap();
    cluster.nodes[idx].kill();

    let started = Instant::now();
    let got = client.batched_get(&keys).unwrap();
    for (i, r) in got.iter().enumerate() {
        if on_victim[i] {
            assert!(r.is_err(), "key {i} on the dead node: {r:?}");
        } else {
            assert_eq!(
                r.as_ref().unwrap().as_deref(),
                Some(&values[i][..]),
                "key {i} on a live node"
            );
        }
    }
    // Prefix calls stop at the first key of the dead node, counting the failure.
    let live: Vec<&String> = keys
        .iter()
        .zip(&on_victim)
        .filter(|(_, d)| !**d)
        .map(|(k, _)| k)
        .take(3)
        .collect();
    let dead = keys.iter().zip(&on_victim).find(|(_, d)| **d).map(|(k, _)| k).unwrap();
    let order = [live[0], live[1], dead, live[2]];
    let before = client.stats().prefix_failures;
    assert_eq!(client.batched_contains(&order).unwrap(), 2);
    assert_eq!(client.batched_get_non_blocking(&order).wait().unwrap().len(), 2);
    assert_eq!(client.stats().prefix_failures, before + 2);
    assert!(
        client.batched_contains(&[dead, live[0]]).is_err(),
        "nothing answered: the call fails"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // Writes to live nodes still land.
    client.put(live[0], b"still-here".to_vec()).unwrap();
    assert_eq!(client.get(live[0]).unwrap().as_deref(), Some(&b"still-here"[..]));
}

/// Moves an empty slot to another primary behind the client's back: the client follows MOVED and learns it.
fn follows_moved_and_ask(kind: Kind) {
    let cluster = Cluster::start(kind, 3, 0);
    let client = Client::open(&cluster.url()).unwrap();
    let p = unique("redirect");
    client.put(format!("{p}warm"), b"x".to_vec()).unwrap(); // the client has its slot map now
    let ids: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| redis::cmd("CLUSTER").arg("MYID").query(&mut n.admin()).unwrap())
        .collect();
    let key = format!("{p}moved");
    let slot = Slot::of(key.as_bytes()).get();
    let from = cluster
        .nodes
        .iter()
        .position(|n| n.port == cluster.primary_for(key.as_bytes()).port)
        .unwrap();
    let to = (from + 1) % 3;
    for n in &cluster.nodes {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("NODE")
            .arg(&ids[to])
            .exec(&mut n.admin())
            .unwrap();
    }
    let before = client.stats();
    client.put(&key, b"moved-value".to_vec()).unwrap();
    assert_eq!(client.get(&key).unwrap().as_deref(), Some(&b"moved-value"[..]));
    let after = client.stats();
    assert!(after.moved > before.moved, "no MOVED followed: {after:?}");
    let on_target: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query(&mut cluster.nodes[to].admin())
        .unwrap();
    assert_eq!(on_target.as_deref(), Some(&b"moved-value"[..]));

    // ASK: the slot of `asked` is migrating from `from` to `to`; a key not on `from` is served by `to` after ASKING.
    let asked = (0..)
        .map(|i| format!("{p}ask{i}"))
        .find(|k| cluster.primary_for(k.as_bytes()).port == cluster.nodes[from].port)
        .unwrap();
    let slot = Slot::of(asked.as_bytes()).get();
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("IMPORTING")
        .arg(&ids[from])
        .exec(&mut cluster.nodes[to].admin())
        .unwrap();
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("MIGRATING")
        .arg(&ids[to])
        .exec(&mut cluster.nodes[from].admin())
        .unwrap();
    let before = client.stats();
    client.put(&asked, b"asked-value".to_vec()).unwrap();
    assert_eq!(client.get(&asked).unwrap().as_deref(), Some(&b"asked-value"[..]));
    let after = client.stats();
    assert!(
        after.asked >= before.asked + 2,
        "ASK not followed for both calls: {after:?}"
    );
    assert_eq!(after.moved, before.moved, "ASK must not be taken as MOVED");
    let on_target: Option<Vec<u8>> = {
        let mut admin = cluster.nodes[to].admin();
        redis::cmd("ASKING").exec(&mut admin).unwrap();
        redis::cmd("GET").arg(&asked).query(&mut admin).unwrap()
    };
    assert_eq!(on_target.as_deref(), Some(&b"asked-value"[..]));
}

/// A listener on `port` whose accept queue is full: the kernel drops further SYNs, so a connect to it hangs
/// until its timeout, as to a blackholed host. Holds the queued connections.
fn blackhole(port: u16) -> (std::net::TcpListener, Vec<std::net::TcpStream>) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        held.push(s);
        assert!(held.len() < 5000, "the accept queue never filled");
    }
    (listener, held)
}

/// A primary whose address stops answering connects (killed, its port blackholed): its keys fail, and the
/// other primaries' keys in the same batches keep being answered promptly: only one connect attempt waits out
/// the connect timeout, then the node is marked down and probed in the background.
fn a_blackholed_node_does_not_stall_the_others(kind: Kind) {
    let mut cluster = Cluster::start_with(kind, 3, 0, &["--cluster-require-full-coverage", "no"]);
    let config = Config::from_url(&cluster.url())
        .unwrap()
        .connect_timeout(Duration::from_millis(1500))
        .request_timeout(Duration::from_secs(3));
    let client = std::sync::Arc::new(Client::with_config(config).unwrap());
    let p = unique("blackhole");
    let keys: Vec<String> = (0..30).map(|i| format!("{p}{i}")).collect();
    let put = client.batched_put(&keys, (0..30).map(|i| value(&p, i, 100))).unwrap();
    assert!(put.iter().all(Result::is_ok));
    let victim = cluster.primary_for(keys[0].as_bytes()).port;
    let dead: Vec<bool> = keys
        .iter()
        .map(|k| cluster.primary_for(k.as_bytes()).port == victim)
        .collect();
    let idx = cluster.nodes.iter().position(|n| n.port == victim).unwrap();
    cluster.nodes[idx].kill();
    let _hole = blackhole(victim);

    let started = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..25)
                        .map(|_| {
                            let t0 = Instant::now();
                            let got = client.batched_get(&keys).unwrap();
                            for (i, r) in got.iter().enumerate() {
                                if dead[i] {
                                    assert!(r.is_err(), "key {i} on the blackholed node: {r:?}");
                                } else {
                                    assert_eq!(r.as_ref().unwrap().as_deref(), Some(&value(&p, i, 100)[..]));
                                }
                            }
                            t0.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let mut sorted = latencies.clone();
    sorted.sort();
    let slow = sorted.iter().filter(|d| **d > Duration::from_millis(500)).count();
    println!(
        "{kind:?}: {} batched gets in {:?}; median {:?}, max {:?}; {slow} over 500 ms",
        sorted.len(),
        started.elapsed(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
    let stats = client.stats();
    assert_eq!(stats.nodes_down, vec![format!("127.0.0.1:{victim}")], "{stats:?}");
    assert_eq!(stats.marked_down, 1, "marked down once, then probed: {stats:?}");
    // Without the down-marking every call would wait out a connect timeout (1.5 s).
    assert!(slow <= 8, "{slow} calls waited on the blackholed node: {sorted:?}");
    assert!(sorted[sorted.len() / 2] < Duration::from_millis(200), "{sorted:?}");
}

per_kind!(
    an_interrupt_ends_the_wait_and_the_client_stays_usable,
    a_blackholed_node_does_not_stall_the_others,
    timeout_discards_the_poisoned_connection,
    stopped_server_fails_fast_and_recovers,
    a_key_error_fails_only_that_key,
    dead_primary_fails_only_its_keys,
    follows_moved_and_ask
);
