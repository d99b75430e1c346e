//! Cluster redirects scripted on fake nodes, where a real Cluster cannot show them on demand: `MOVED` to a node
//! the slot map does not know, `ASK` for one key of a pipelined batch (only that key is resent, with `ASKING`,
//! and the map is left alone), and slot-map refreshes that are slow: rate-limited, and never in a request's way.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, Slot};
use support::fake::{FakeNode, Reply, bulk, cluster_slots};

/// A fake Cluster node that serves every slot itself; `CLUSTER SLOTS` requests are counted in `slots_asked` and
/// answered after `refresh_delay` (the first one, the client's discovery, at once); other requests go to `script`.
fn cluster_node(
    slots_asked: Arc<AtomicUsize>,
    refresh_delay: Duration,
    script: impl Fn(&[Vec<u8>]) -> Reply + Send + Sync + 'static,
) -> FakeNode {
    let port = Arc::new(AtomicU16::new(0));
    let node = {
        let port = port.clone();
        FakeNode::start_cluster(move |args, _| {
            if args[0].eq_ignore_ascii_case(b"CLUSTER") {
                let reply = cluster_slots(&[(0, 16383, port.load(Ordering::SeqCst))]);
                if slots_asked.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::Bytes(reply)
                } else {
                    Reply::Delayed(reply, refresh_delay)
                }
            } else {
                script(args)
            }
        })
    };
    port.store(node.port, Ordering::SeqCst);
    node
}

fn client(node: &FakeNode) -> Client {
    let config = Config::from_url(&node.url())
        .unwrap()
        .workers(1)
        .request_timeout(Duration::from_secs(3));
    Client::with_config(config).unwrap()
}

/// Keys that each hash to a slot of their own, so each is sent as its own `GET`.
fn keys_in_distinct_slots(n: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| seen.insert(Slot::of(k.as_bytes()).get()))
        .take(n)
        .collect()
}

#[test]
fn moved_to_an_unknown_node_is_followed() {
    let b = FakeNode::start(|args, _| match args[0].as_slice() {
        b"GET" => Reply::Bytes(bulk(&[b"from-b:", &args[1][..]].concat())),
        _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
    });
    let b_port = b.port;
    let a = cluster_node(Arc::default(), Duration::ZERO, move |args| match args[0].as_slice() {
        b"GET" => {
            let slot = Slot::of(&args[1]).get();
            Reply::Bytes(format!("-MOVED {slot} 127.0.0.1:{b_port}\r\n").into_bytes())
        }
        _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
    });
    let c = client(&a);
    assert!(c.is_cluster());
    assert_eq!(
        c.primaries(),
        vec![format!("127.0.0.1:{}", a.port)],
        "B is not in the map at first"
    );
    assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"from-b:k"[..]));
    assert!(c.stats().moved >= 1);
    assert!(b.count() >= 1, "B answered");
    let got = c.batched_get(&keys_in_distinct_slots(5)).unwrap();
    for (r, k) in got.iter().zip(keys_in_distinct_slots(5)) {
        assert_eq!(r.as_ref().unwrap().as_deref(), Some(format!("from-b:{k}").as_bytes()));
    }
}

#[test]
fn ask_in_a_batch_resends_only_that_key_and_keeps_order() {
    let keys = keys_in_distinct_slots(5);
    let asked_key = keys[2].clone().into_bytes();
    // B serves the migrating key, but only right after ASKING on the same connection.
    let b_log = Arc::new(parking_lot::Mutex::new(Vec::<Vec<u8>>::new()));
    let b = {
        let log = b_log.clone();
        FakeNode::start(move |args, _| {
            let mut log = log.lock();
            let after_asking = log.last().is_some_and(|l| l == b"ASKING");
            log.push(args[0].clone());
            match args[0].as_slice() {
                b"ASKING" => Reply::Bytes(b"+OK\r\n".to_vec()),
                b"GET" if after_asking => Reply::Bytes(bulk(&[b"b:", &args[1][..]].concat())),
                b"GET" => Reply::Bytes(format!("-MOVED {} 127.0.0.1:1\r\n", Slot::of(&args[1]).get()).into_bytes()),
                _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
            }
        })
    };
    let b_port = b.port;
    let slots_asked = Arc::new(AtomicUsize::new(0));
    let a_gets = Arc::new(AtomicUsize::new(0));
    let a = {
        let a_gets = a_gets.clone();
        cluster_node(slots_asked.clone(), Duration::ZERO, move |args| {
            match args[0].as_slice() {
                b"GET" if args[1] == asked_key => {
                    a_gets.fetch_add(1, Ordering::SeqCst);
                    let slot = Slot::of(&args[1]).get();
                    Reply::Bytes(format!("-ASK {slot} 127.0.0.1:{b_port}\r\n").into_bytes())
                }
                b"GET" => {
                    a_gets.fetch_add(1, Ordering::SeqCst);
                    Reply::Bytes(bulk(&[b"a:", &args[1][..]].concat()))
                }
                _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
            }
        })
    };
    let c = client(&a);
    let got = c.batched_get(&keys).unwrap();
    let want: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| if i == 2 { format!("b:{k}") } else { format!("a:{k}") })
        .collect();
    for (r, w) in got.iter().zip(&want) {
        assert_eq!(r.as_ref().unwrap().as_deref(), Some(w.as_bytes()), "{got:?}");
    }
    assert_eq!(a_gets.load(Ordering::SeqCst), 5, "each key asked of A once");
    assert_eq!(
        *b_log.lock(),
        vec![b"ASKING".to_vec(), b"GET".to_vec()],
        "only the asked key went to B"
    );
    let stats = c.stats();
    assert_eq!((stats.asked, stats.moved), (1, 0), "{stats:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        slots_asked.load(Ordering::SeqCst),
        1,
        "ASK must not refresh the slot map"
    );
}

#[test]
fn slow_refreshes_are_rate_limited_and_never_in_the_way() {
    // Every GET on A is moved to B, and every MOVED asks for a refresh; A takes 1 s to answer each refresh.
    let b = FakeNode::start(|args, _| match args[0].as_slice() {
        b"GET" => Reply::Bytes(bulk(b"from-b")),
        _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
    });
    let b_port = b.port;
    let slots_asked = Arc::new(AtomicUsize::new(0));
    let a = cluster_node(slots_asked.clone(), Duration::from_secs(1), move |args| {
        match args[0].as_slice() {
            b"GET" => Reply::Bytes(format!("-MOVED {} 127.0.0.1:{b_port}\r\n", Slot::of(&args[1]).get()).into_bytes()),
            _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
        }
    });
    let c = client(&a);
    let started = Instant::now();
    let keys = keys_in_distinct_slots(40);
    let mut gets = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        for k in &keys {
            // Each call is answered while the refresh it triggered waits or runs.
            let t0 = Instant::now();
            assert_eq!(c.get(k).unwrap().as_deref(), Some(&b"from-b"[..]));
            assert!(
                t0.elapsed() < Duration::from_millis(500),
                "a get waited {:?}",
                t0.elapsed()
            );
            gets += 1;
        }
    }
    let took = started.elapsed();
    let refreshes = slots_asked.load(Ordering::SeqCst) - 1;
    let moved = c.stats().moved;
    println!("{gets} gets in {took:?}, {moved} MOVED replies; {refreshes} slot-map refreshes asked of A");
    assert!(moved >= 40, "every key was moved at least once: {moved}");
    // One refresh at a time, each taking 1 s, at most one per 100 ms: a handful, for all those MOVED replies (each
    // of which asked for one).
    assert!(refreshes >= 1, "no refresh at all");
    assert!(
        refreshes <= 2 + took.as_millis() as usize / 1000,
        "{refreshes} refreshes in {took:?}"
    );
}
