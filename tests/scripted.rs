//! Faults scripted on a fake node: back-off and retry limits, redirect loops, absurd reply lengths, and a
//! connection cut in the middle of a large value. Each must end in the right value or a typed error, in time, with
//! the client usable afterwards.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, Error};
use support::fake::{FakeNode, Reply, bulk};

fn client(node: &FakeNode, limit: usize) -> Client {
    let config = Config::from_url(&node.url())
        .unwrap()
        .workers(1)
        .max_redirects(limit)
        .max_retries(limit)
        .request_timeout(Duration::from_secs(3));
    Client::with_config(config).unwrap()
}

#[test]
fn tryagain_is_retried_after_a_back_off() {
    let node = FakeNode::start(|args, n| match (args[0].as_slice(), n) {
        (b"GET", 0 | 1) => Reply::Bytes(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n".to_vec()),
        (b"GET", _) => Reply::Bytes(bulk(b"finally")),
        _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
    });
    let c = client(&node, 5);
    assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"finally"[..]));
    assert_eq!(node.count(), 3);
    assert_eq!(c.stats().retries, 2);
}

#[test]
fn tryagain_with_n_retries_fails_after_n_plus_one_attempts() {
    let node = FakeNode::start(|_, _| Reply::Bytes(b"-TRYAGAIN busy\r\n".to_vec()));
    let c = client(&node, 2);
    let err = c.get("k").unwrap_err();
    assert_eq!(err.server_code(), Some("TRYAGAIN"), "{err:?}");
    assert_eq!(node.count(), 3, "2 retries = 3 attempts");
}

#[test]
fn a_moved_loop_stops_at_the_redirect_cap_in_time() {
    // Every request is sent back to the node itself: only the cap can end it.
    let port = Arc::new(AtomicU16::new(0));
    let node = {
        let port = port.clone();
        FakeNode::start(move |_, _| {
            Reply::Bytes(format!("-MOVED 1234 127.0.0.1:{}\r\n", port.load(Ordering::SeqCst)).into_bytes())
        })
    };
    port.store(node.port, Ordering::SeqCst);
    let c = client(&node, 4);
    let started = Instant::now();
    let err = c.get("k").unwrap_err();
    assert!(matches!(err, Error::TooManyRedirects { limit: 4, .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(node.count(), 5, "4 redirects = 5 attempts");
    assert_eq!(c.stats().moved, 4);
}

#[test]
fn an_absurd_length_is_a_protocol_error_without_allocating() {
    let node = FakeNode::start(|args, n| match n {
        0 => Reply::Bytes(b"$99999999999\r\n".to_vec()),
        _ if args[0] == b"GET" => Reply::Bytes(bulk(b"sane")),
        _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
    });
    let c = client(&node, 5);
    let err = c.get("k").unwrap_err();
    assert!(
        matches!(err, Error::Protocol { ref detail, .. } if detail.contains("impossible length")),
        "{err:?}"
    );
    // The connection was dropped; the next request gets its own, right answer.
    assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"sane"[..]));
}

#[test]
fn a_connection_cut_mid_value_is_never_a_partial_hit() {
    let node = FakeNode::start(|args, n| {
        let value = vec![7u8; 4 << 20];
        match n {
            // Announce 4 MiB, send 1 MiB, close.
            0 => Reply::BytesThenClose([&b"$4194304\r\n"[..], &value[..1 << 20]].concat()),
            _ if args[0] == b"GET" => Reply::Bytes(bulk(&value)),
            _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
        }
    });
    let c = client(&node, 5);
    // The first attempt was on a fresh connection, so it is not retried: the caller sees the I/O error.
    let err = c.get("k").unwrap_err();
    assert!(err.is_io(), "{err:?}");
    let v = c.get("k").unwrap().expect("a value");
    assert_eq!(v.len(), 4 << 20);
    assert!(v.iter().all(|&b| b == 7));
}

#[test]
fn a_reset_on_a_reused_connection_is_retried_once_on_a_fresh_one() {
    let node = FakeNode::start(|args, n| match n {
        0 => Reply::Bytes(bulk(b"first")),
        1 => Reply::BytesThenClose(Vec::new()), // the server goes away before answering
        _ if args[0] == b"GET" => Reply::Bytes(bulk(b"second")),
        _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
    });
    let c = client(&node, 5);
    assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"first"[..]));
    assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"second"[..]));
    let stats = c.stats();
    assert_eq!((stats.io_retries, stats.connects), (1, 2), "{stats:?}");
}

#[test]
fn a_trickling_reply_cannot_stretch_the_deadline() {
    // 100 bytes at 20 ms each would take 2 s; every byte arrives well within a per-read timeout.
    let node = FakeNode::start(|args, n| match n {
        0 => Reply::Trickle(bulk(&[b'x'; 100]), Duration::from_millis(20)),
        _ if args[0] == b"GET" => Reply::Bytes(bulk(b"prompt")),
        _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
    });
    let config = Config::from_url(&node.url())
        .unwrap()
        .workers(1)
        .request_timeout(Duration::from_millis(300));
    let c = Client::with_config(config).unwrap();
    let started = Instant::now();
    let err = c.get("k").unwrap_err();
    let took = started.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(took < Duration::from_millis(900), "took {took:?}");
    // The worker gave up too (it did not sit on the trickle): the next call is answered at once and rightly.
    let started = Instant::now();
    assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"prompt"[..]));
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn loading_and_masterdown_are_waited_out() {
    let node = FakeNode::start(|args, n| match (args[0].as_slice(), n) {
        (b"GET", 0 | 1) => Reply::Bytes(b"-LOADING Redis is loading the dataset in memory\r\n".to_vec()),
        (b"GET", 2) => Reply::Bytes(
            b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n".to_vec(),
        ),
        (b"GET", _) => Reply::Bytes(bulk(b"loaded")),
        _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
    });
    let c = client(&node, 20);
    assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"loaded"[..]));
    assert_eq!((node.count(), c.stats().retries), (4, 3));
}

#[test]
fn a_cluster_that_stays_down_fails_at_the_deadline() {
    let node = FakeNode::start(|_, _| Reply::Bytes(b"-CLUSTERDOWN The cluster is down\r\n".to_vec()));
    let config = Config::from_url(&node.url())
        .unwrap()
        .workers(1)
        .request_timeout(Duration::from_millis(800));
    let c = Client::with_config(config).unwrap();
    let started = Instant::now();
    let err = c.get("k").unwrap_err();
    let took = started.elapsed();
    // Retried with growing back-offs (10, 20, 40, 80, 160, 320 ms ...) until the deadline ended it.
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
    assert!((5..=8).contains(&node.count()), "{} attempts", node.count());
    // Nothing is left in a bad state: the next call is answered (the same refusal, again within its deadline).
    let started = Instant::now();
    assert!(
        c.call()
            .timeout(Duration::from_millis(100))
            .get("k")
            .unwrap_err()
            .is_timeout()
    );
    assert!(started.elapsed() < Duration::from_millis(500));
}
