//! The shutdown policy: queued calls run until the drain deadline, the rest are answered `Closed`, every call is
//! answered exactly once, later calls fail at once, pending handles resolve, and dropping the last clone closes.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, Error};
use support::{Kind, Server, unique, wait_for};

fn wait_closed(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(3);
    // An empty batch is answered locally (nothing queued), after the closed check.
    let none: [&str; 0] = [];
    while !matches!(client.batched_contains(&none), Err(Error::Closed)) {
        assert!(Instant::now() < deadline, "close never took effect");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Freezes the server with one call held by the only worker and `n` puts queued behind it; returns after
/// `close` has started on another thread. `drain` is the drain timeout.
fn close_with_queued_puts(
    kind: Kind,
    drain: Duration,
    thaw_after: Duration,
) -> (Server, Vec<Result<(), Error>>, String) {
    let server = Server::standalone(kind);
    let config = Config::from_url(&server.url()).unwrap().workers(1).drain_timeout(drain);
    let client = Client::with_config(config).unwrap();
    client.ping().unwrap();
    let p = unique("drain");
    server.freeze();
    let results = std::thread::scope(|s| {
        let blocker = {
            let client = client.clone();
            s.spawn(move || client.ping())
        };
        wait_for(&client, "ping taken", |st| st.parts == 2 && st.queued == 0);
        let puts: Vec<_> = (0..30)
            .map(|i| {
                let (client, key) = (client.clone(), format!("{p}{i}"));
                s.spawn(move || client.put(&key, vec![i as u8; 1000]))
            })
            .collect();
        wait_for(&client, "puts queued", |st| st.queued == 30);
        let pending = client.batched_get_non_blocking(&[format!("{p}0")]);
        wait_for(&client, "prefetch queued", |st| st.queued == 31);
        let closer = {
            let client = client.clone();
            s.spawn(move || client.close())
        };
        wait_closed(&client);
        std::thread::sleep(thaw_after);
        server.thaw();
        closer.join().unwrap().expect("close");
        blocker.join().unwrap().expect("the call in flight completes");
        let prefetched = pending.wait();
        let mut results: Vec<Result<(), Error>> = puts.into_iter().map(|h| h.join().unwrap()).collect();
        results.push(prefetched.map(|_| ()));
        results
    });
    // Closed for good, on every clone, at once.
    let started = Instant::now();
    assert!(matches!(client.get("x"), Err(Error::Closed)));
    assert!(matches!(client.clone().batched_contains(&["x"]), Err(Error::Closed)));
    assert!(matches!(
        client.batched_get_non_blocking(&["x"]).wait(),
        Err(Error::Closed)
    ));
    assert!(started.elapsed() < Duration::from_secs(1));
    client.close().expect("close is idempotent");
    (server, results, p)
}

fn queued_calls_run_before_the_drain_deadline(kind: Kind) {
    let (server, results, p) = close_with_queued_puts(kind, Duration::from_secs(5), Duration::from_millis(50));
    assert_eq!(results.len(), 31, "every call answered");
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "call {i}: {r:?}");
    }
    let mut admin = server.admin();
    for i in 0..30 {
        let v: Vec<u8> = redis::cmd("GET").arg(format!("{p}{i}")).query(&mut admin).unwrap();
        assert_eq!(v, vec![i as u8; 1000]);
    }
}

fn calls_queued_past_the_drain_deadline_are_closed(kind: Kind) {
    let (server, results, p) = close_with_queued_puts(kind, Duration::from_millis(100), Duration::from_millis(400));
    assert_eq!(results.len(), 31, "every call answered");
    for (i, r) in results.iter().enumerate() {
        assert!(matches!(r, Err(Error::Closed)), "call {i}: {r:?}");
    }
    let keys: i64 = redis::cmd("EXISTS")
        .arg((0..30).map(|i| format!("{p}{i}")).collect::<Vec<_>>())
        .query(&mut server.admin())
        .unwrap();
    assert_eq!(keys, 0, "nothing was written after the drain deadline");
}

fn dropping_the_last_clone_closes(kind: Kind) {
    let server = Server::standalone(kind);
    let client = Client::with_config(Config::from_url(&server.url()).unwrap().workers(3)).unwrap();
    let other = client.clone();
    std::thread::scope(|s| {
        for c in [&client, &other] {
            s.spawn(move || {
                for i in 0..20 {
                    c.put(format!("k{i}"), b"v".to_vec()).unwrap();
                }
            });
        }
    });
    let mut admin = server.admin();
    let clients = |admin: &mut redis::Connection| -> usize {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(admin).unwrap();
        list.lines().count()
    };
    assert!(clients(&mut admin) > 1);
    drop(client);
    assert_eq!(
        other.get("k3").unwrap().as_deref(),
        Some(&b"v"[..]),
        "a clone keeps the client open"
    );
    drop(other);
    // The workers have exited and closed their connections: only the admin connection is left.
    let deadline = Instant::now() + Duration::from_secs(3);
    while clients(&mut admin) != 1 {
        assert!(
            Instant::now() < deadline,
            "worker connections still open after the last drop"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

per_kind!(
    queued_calls_run_before_the_drain_deadline,
    calls_queued_past_the_drain_deadline_are_closed,
    dropping_the_last_clone_closes
);
