//! Hostile and broken servers, scripted on a fake node: replies of the wrong type or with the wrong element count,
//! more replies than requests, an array header announcing 2^31 elements, arrays nested a million deep, a reset in
//! the middle of a 32 MiB value, a `MOVED` to an address that does not parse, and `CLUSTER SLOTS` answers with
//! overlapping or missing ranges. Each ends in a typed error or a miss, never a wrong value, a panic or a hang; the
//! connection is dropped where the stream can no longer be trusted; and the client works afterwards.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, Error, Slot};
use support::fake::{FakeNode, Reply, bulk, cluster_slots};

fn client(node: &FakeNode) -> Client {
    let config = Config::from_url(&node.url())
        .unwrap()
        .workers(1)
        .max_retries(3)
        .request_timeout(Duration::from_secs(3));
    Client::with_config(config).unwrap()
}

/// The value a sane answer carries for `key`: its own name.
fn sane(args: &[Vec<u8>]) -> Reply {
    match args[0].to_ascii_uppercase().as_slice() {
        b"GET" => Reply::Bytes(bulk(&args[1])),
        b"MGET" => {
            let mut out = format!("*{}\r\n", args.len() - 1).into_bytes();
            for key in &args[1..] {
                out.extend(bulk(key));
            }
            Reply::Bytes(out)
        }
        b"SET" => Reply::Bytes(b"+OK\r\n".to_vec()),
        b"PING" => Reply::Bytes(b"+PONG\r\n".to_vec()),
        _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
    }
}

/// The client still answers right: a single get and a batch, each value its key's.
fn assert_usable(c: &Client) {
    assert_eq!(c.get("after").unwrap().as_deref(), Some(&b"after"[..]));
    let keys = ["a1", "a2", "a3"];
    let got = c.batched_get(&keys).unwrap();
    for (k, g) in keys.iter().zip(got) {
        assert_eq!(g.unwrap().as_deref(), Some(k.as_bytes()));
    }
}

fn assert_protocol(err: &Error, what: &str) {
    assert!(matches!(err, Error::Protocol { .. }), "{what}: {err:?}");
}

#[test]
fn a_reply_of_the_wrong_type_is_a_protocol_error() {
    // The first request of each kind gets an answer of another type.
    let node = FakeNode::start(|args, n| match n {
        0 => Reply::Bytes(b":42\r\n".to_vec()),
        1 => Reply::Bytes(b"*1\r\n$1\r\nx\r\n".to_vec()),
        2 => Reply::Bytes(b"$5\r\nhello\r\n".to_vec()),
        _ => sane(args),
    });
    let c = client(&node);
    assert_protocol(&c.get("k").unwrap_err(), "an integer for a GET");
    assert_protocol(&c.get("k").unwrap_err(), "an array for a GET");
    // A bulk string where SET's status belongs.
    let err = c.put("k", &b"v"[..]).unwrap_err();
    assert_protocol(&err, "a bulk for a SET");
    assert_usable(&c);
}

#[test]
fn an_mget_answered_with_the_wrong_count_is_a_protocol_error() {
    let node = FakeNode::start(|args, n| match (args[0].as_slice(), n) {
        (b"MGET", 0) => Reply::Bytes([&b"*2\r\n"[..], &bulk(&args[1]), &bulk(&args[2])].concat()),
        (b"MGET", 1) => Reply::Bytes(b"*2147483648\r\n".to_vec()),
        _ => sane(args),
    });
    let c = client(&node);
    let keys = ["k1", "k2", "k3"];
    for what in ["two elements for three keys", "2^31 elements announced"] {
        let got = c.batched_get(&keys).unwrap();
        for g in got {
            assert_protocol(&g.unwrap_err(), what);
        }
    }
    assert_usable(&c);
}

#[test]
fn more_replies_than_requests_never_answer_a_later_request() {
    // The first GET is answered twice over: the second reply is for no one, and must not become the answer to
    // whatever is asked next on that connection.
    let node = FakeNode::start(|args, n| match n {
        0 => Reply::Bytes([bulk(&args[1]), bulk(b"unsolicited")].concat()),
        _ => sane(args),
    });
    let c = client(&node);
    assert_eq!(c.get("first").unwrap().as_deref(), Some(&b"first"[..]));
    for key in ["second", "third", "fourth"] {
        match c.get(key) {
            Ok(v) => assert_eq!(
                v.as_deref(),
                Some(key.as_bytes()),
                "an unsolicited reply answered {key}"
            ),
            Err(e) => assert!(e.is_io() || matches!(e, Error::Protocol { .. }), "{e:?}"),
        }
    }
    assert_usable(&c);
}

#[test]
fn a_late_reply_for_no_one_never_answers_a_later_request() {
    // The unsolicited reply arrives after the connection went idle, before the next request: the connection is
    // found holding bytes it owes no one and replaced, so the next request is answered on a fresh one.
    let node = FakeNode::start(|args, n| match n {
        0 => Reply::ThenLater(bulk(&args[1]), Duration::from_millis(20), bulk(b"unsolicited")),
        _ => sane(args),
    });
    let c = client(&node);
    assert_eq!(c.get("first").unwrap().as_deref(), Some(&b"first"[..]));
    // Past the idle time after which a connection is checked before it is used again.
    std::thread::sleep(Duration::from_millis(300));
    for key in ["second", "third", "fourth"] {
        match c.get(key) {
            Ok(v) => assert_eq!(
                v.as_deref(),
                Some(key.as_bytes()),
                "a late unsolicited reply answered {key}"
            ),
            Err(e) => assert!(e.is_io() || matches!(e, Error::Protocol { .. }), "{e:?}"),
        }
    }
    assert_usable(&c);
}

#[test]
fn a_reply_dribbled_one_byte_at_a_time_is_read_whole() {
    // Every read reply comes a byte at a time: each value is still its key's, whole.
    let node = FakeNode::start(|args, _| match sane(args) {
        Reply::Bytes(b) if args[0].eq_ignore_ascii_case(b"GET") || args[0].eq_ignore_ascii_case(b"MGET") => {
            Reply::Trickle(b, Duration::from_micros(300))
        }
        other => other,
    });
    let c = client(&node);
    let long = "k".repeat(300);
    for _ in 0..3 {
        assert_eq!(c.get(&long).unwrap().as_deref(), Some(long.as_bytes()));
    }
    let keys = ["a", "bb", "ccc"];
    let got = c.batched_get(&keys).unwrap();
    for (k, g) in keys.iter().zip(got) {
        assert_eq!(g.unwrap().as_deref(), Some(k.as_bytes()));
    }
    assert!(node.count() >= 4, "the fake node answered {} requests", node.count());
}

#[test]
fn arrays_nested_a_million_deep_are_refused_at_open() {
    // A Cluster node whose `CLUSTER SLOTS` is a million nested arrays (4 MB): refused as a protocol error, in
    // time, without exhausting a stack.
    let node = FakeNode::start_cluster(|args, _| {
        if args[0].eq_ignore_ascii_case(b"CLUSTER") {
            let mut deep = b"*1\r\n".repeat(1_000_000);
            deep.extend(b":1\r\n");
            Reply::Bytes(deep)
        } else {
            sane(args)
        }
    });
    let started = Instant::now();
    let err = Client::with_config(
        Config::from_url(&format!("redis-cluster://127.0.0.1:{}", node.port))
            .unwrap()
            .connect_timeout(Duration::from_secs(2)),
    )
    .unwrap_err();
    assert!(err.to_string().contains("nested deeper"), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn a_reset_in_the_middle_of_a_32_mib_value_is_never_a_hit() {
    let value = Arc::new(vec![9u8; 32 << 20]);
    let node = {
        let value = value.clone();
        FakeNode::start(move |args, n| match n {
            // Announce 32 MiB, send 20 MiB, reset.
            0 => Reply::BytesThenClose([&b"$33554432\r\n"[..], &value[..20 << 20]].concat()),
            _ if args[0] == b"GET" && args[1] == b"big" => Reply::Bytes(bulk(&value)),
            _ => sane(args),
        })
    };
    let c = client(&node);
    let err = c.get("big").unwrap_err();
    assert!(err.is_io(), "{err:?}");
    let v = c.get("big").unwrap().expect("the whole value");
    assert!(v.len() == 32 << 20 && v.iter().all(|&b| b == 9));
    assert_usable(&c);
}

/// A fake Cluster node serving every slot itself, whose requests other than `CLUSTER` go to `script`.
fn cluster_node(script: impl Fn(&[Vec<u8>], u16) -> Reply + Send + Sync + 'static) -> FakeNode {
    let port = Arc::new(AtomicU16::new(0));
    let node = {
        let port = port.clone();
        FakeNode::start_cluster(move |args, _| {
            let me = port.load(Ordering::SeqCst);
            if args[0].eq_ignore_ascii_case(b"CLUSTER") {
                Reply::Bytes(cluster_slots(&[(0, 16383, me)]))
            } else {
                script(args, me)
            }
        })
    };
    port.store(node.port, Ordering::SeqCst);
    node
}

#[test]
fn a_moved_to_an_address_that_does_not_parse_is_a_typed_error_in_time() {
    let asked = Arc::new(AtomicUsize::new(0));
    let node = {
        let asked = asked.clone();
        cluster_node(move |args, _| {
            if args[0] == b"GET" && args[1] == b"bad" {
                asked.fetch_add(1, Ordering::SeqCst);
                Reply::Bytes(format!("-MOVED {} no port here\r\n", Slot::of(b"bad").get()).into_bytes())
            } else {
                sane(args)
            }
        })
    };
    let c = Client::with_config(
        Config::from_url(&format!("redis-cluster://127.0.0.1:{}", node.port))
            .unwrap()
            .workers(1)
            .request_timeout(Duration::from_secs(3)),
    )
    .unwrap();
    let started = Instant::now();
    let err = c.get("bad").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert!(!matches!(err, Error::WorkerLost | Error::Timeout { .. }), "{err:?}");
    assert!(asked.load(Ordering::SeqCst) >= 1);
    assert_usable(&c);
}

/// A fake Cluster node whose `CLUSTER SLOTS` lists `ranges` (first, last, port); any key it is asked for it
/// answers itself.
fn cluster_with_slots(ranges: impl Fn(u16) -> Vec<(u16, u16, u16)> + Send + Sync + 'static) -> FakeNode {
    let port = Arc::new(AtomicU16::new(0));
    let node = {
        let port = port.clone();
        FakeNode::start_cluster(move |args, _| {
            if args[0].eq_ignore_ascii_case(b"CLUSTER") {
                Reply::Bytes(cluster_slots(&ranges(port.load(Ordering::SeqCst))))
            } else {
                sane(args)
            }
        })
    };
    port.store(node.port, Ordering::SeqCst);
    node
}

#[test]
fn cluster_slots_with_missing_ranges_fail_those_keys_only() {
    // Slots 5000-5999 are served by no one.
    let node = cluster_with_slots(|me| vec![(0, 4999, me), (6000, 16383, me)]);
    let c = Client::with_config(
        Config::from_url(&format!("redis-cluster://127.0.0.1:{}", node.port))
            .unwrap()
            .workers(1)
            .request_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let uncovered = (0..)
        .map(|i| format!("gap-{i}"))
        .find(|k| (5000..6000).contains(&Slot::of(k.as_bytes()).get()))
        .unwrap();
    let covered = (0..)
        .map(|i| format!("ok-{i}"))
        .find(|k| !(5000..6000).contains(&Slot::of(k.as_bytes()).get()))
        .unwrap();
    let got = c.batched_get(&[uncovered.as_str(), covered.as_str()]).unwrap();
    assert!(matches!(got[0], Err(Error::Topology(_))), "{:?}", got[0]);
    assert_eq!(got[1].as_ref().unwrap().as_deref(), Some(covered.as_bytes()));
}

#[test]
fn cluster_slots_with_overlapping_ranges_still_reach_a_node_that_answers() {
    // Two ranges claim slots 4000-5999; a second, unreachable "node" claims the overlap in the later range. The
    // map takes one owner per slot; a key sent where no one listens is a typed error, never a wrong value.
    let dead = support::server::free_port();
    let node = cluster_with_slots(move |me| vec![(0, 5999, me), (4000, 9999, dead), (10000, 16383, me)]);
    let c = Client::with_config(
        Config::from_url(&format!("redis-cluster://127.0.0.1:{}", node.port))
            .unwrap()
            .workers(1)
            .request_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("overlap-{i}")).collect();
    let got = c.batched_get(&keys).unwrap();
    let mut served = 0;
    for (k, g) in keys.iter().zip(got) {
        match g {
            Ok(v) => {
                assert_eq!(v.as_deref(), Some(k.as_bytes()));
                served += 1;
            }
            Err(e) => assert!(
                e.is_io() || matches!(e, Error::Topology(_) | Error::Timeout { .. }),
                "{e:?}"
            ),
        }
    }
    assert!(served > 0, "no key reached the node that answers");
}

/// Found by the nemesis (`tests/chaos.rs`): a split-layout chunk is two calls (its bytes, then its metadata), and each
/// had the whole timeout, so a slow server could hold one put for twice its deadline. Both now share one.
#[test]
fn a_split_chunk_put_keeps_one_deadline() {
    use kvcache_redis::{ChunkKey, ChunkStore, Dtype, Layout, SplitNaming};
    let node = FakeNode::start(|args, _| match args[0].to_ascii_uppercase().as_slice() {
        b"SET" if args[1].ends_with(b"kv_bytes") => Reply::Delayed(b"+OK\r\n".to_vec(), Duration::from_millis(700)),
        b"SET" => Reply::Delayed(b"+OK\r\n".to_vec(), Duration::from_secs(3)),
        _ => sane(args),
    });
    let config = Config::from_url(&node.url())
        .unwrap()
        .request_timeout(Duration::from_secs(1));
    let store = ChunkStore::new(
        Client::with_config(config).unwrap(),
        Layout::Split {
            naming: SplitNaming::HashTagged,
        },
    );
    let key = ChunkKey::new("m", 1, 0, "abc", Dtype::Half).unwrap();
    let t0 = Instant::now();
    let err = store.put(&key, vec![1u8; 64], None).unwrap_err();
    let took = t0.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        took < Duration::from_millis(1400),
        "the put took {took:?} against its 1 s deadline"
    );
}
