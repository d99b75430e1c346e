//! Test support: real servers, shared fixtures, and helpers.

#![allow(dead_code, unused_imports, unused_macros)]

pub mod server;

/// Turns functions `fn name(kind: Kind)` of the calling test file into one test per server kind:
/// `redis7::name` and `valkey9::name`.
macro_rules! per_kind {
    ($($test:ident),* $(,)?) => {
        mod redis7 {
            $(#[test]
            fn $test() {
                super::$test(crate::support::Kind::Redis);
            })*
        }
        mod valkey9 {
            $(#[test]
            fn $test() {
                super::$test(crate::support::Kind::Valkey);
            })*
        }
    };
}

/// The contract every deployment must show (`suite`), as tests per server kind, plus the file's own `extra`
/// tests. The calling file defines `client(Kind) -> Client` and `ttl_of(Kind, &[u8]) -> i64`.
macro_rules! contract_tests {
    ($($extra:ident),* $(,)?) => {
        contract_tests!(@wrap single_key_operations, batched_get_is_positional, prefix_calls_stop_at_the_first_miss,
            empty_batches_are_answered_locally, large_values_round_trip, bad_input_is_rejected,
            many_threads_share_one_client, batched_get_into_fills_callers_buffers);
        fn ttl_is_set_per_call(kind: crate::support::Kind) {
            crate::support::suite::ttl_is_set_per_call(&client(kind), &|key: &[u8]| ttl_of(kind, key));
        }
        per_kind!(single_key_operations, batched_get_is_positional, prefix_calls_stop_at_the_first_miss,
            empty_batches_are_answered_locally, large_values_round_trip, bad_input_is_rejected,
            many_threads_share_one_client, ttl_is_set_per_call, batched_get_into_fills_callers_buffers,
            $($extra),*);
    };
    (@wrap $($name:ident),*) => {$(
        fn $name(kind: crate::support::Kind) {
            crate::support::suite::$name(&client(kind));
        }
    )*};
}

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub use server::{Cluster, Kind, Server, command_calls};

/// A key prefix unique to this call, so tests sharing a server never touch each other's keys.
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{tag}:{}:{}:", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// One standalone server of each kind, shared by the tests of one test binary and stopped when it exits.
pub fn shared_standalone(kind: Kind) -> &'static Server {
    static REDIS: OnceLock<Server> = OnceLock::new();
    static VALKEY: OnceLock<Server> = OnceLock::new();
    let cell = match kind {
        Kind::Redis => &REDIS,
        Kind::Valkey => &VALKEY,
    };
    cell.get_or_init(|| Server::standalone(kind))
}

/// One 3-primary, 1-replica-each Cluster of each kind, shared by the tests of one test binary.
pub fn shared_cluster(kind: Kind) -> &'static Cluster {
    static REDIS: OnceLock<Cluster> = OnceLock::new();
    static VALKEY: OnceLock<Cluster> = OnceLock::new();
    let cell = match kind {
        Kind::Redis => &REDIS,
        Kind::Valkey => &VALKEY,
    };
    cell.get_or_init(|| Cluster::start(kind, 3, 1))
}

/// `GET`s and `MGET`s a server has executed (`INFO commandstats`): the reads it served.
pub fn reads_served(server: &Server) -> u64 {
    command_calls(server, "get") + command_calls(server, "mget")
}

/// Reads each of `servers` has served so far (for `reads_served_since`).
pub fn reads_served_each(servers: &[Server]) -> Vec<u64> {
    servers.iter().map(reads_served).collect()
}

/// Reads each of `servers` has served since `before` (from `reads_served_each` on the same servers).
pub fn reads_served_since(servers: &[Server], before: &[u64]) -> Vec<u64> {
    servers.iter().zip(before).map(|(s, b)| reads_served(s) - b).collect()
}

/// Reads `keys` through `client` until every one is there (at most 5 s): replication is asynchronous, so a miss is
/// allowed meanwhile, other bytes than `values` never. `what` names the case in failures.
pub fn read_until_all_hit(client: &kvcache_redis::Client, keys: &[String], values: &[Vec<u8>], what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = client.batched_get(keys).unwrap();
        for (g, v) in got.iter().zip(values) {
            if let Some(b) = g.as_ref().unwrap() {
                assert_eq!(&b[..], &v[..], "{what}: other bytes");
            }
        }
        if got.iter().all(|g| matches!(g, Ok(Some(_)))) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: reads kept missing");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Stores `n` values of `len` bytes (`value`) under fresh keys tagged `tag` through `client`, asserting that every
/// put succeeded; returns the keys and the values.
pub fn store_values(client: &kvcache_redis::Client, tag: &str, n: usize, len: usize) -> (Vec<String>, Vec<Vec<u8>>) {
    let p = unique(tag);
    let keys: Vec<String> = (0..n).map(|i| format!("{p}{i}")).collect();
    let values: Vec<Vec<u8>> = (0..n).map(|i| value(&p, i, len)).collect();
    let put = client.batched_put(&keys, values.clone()).unwrap();
    assert!(put.iter().all(Result::is_ok), "{put:?}");
    (keys, values)
}

/// Deterministic bytes for value `i` of `len` bytes, different for every (seed, i).
pub fn value(seed: &str, i: usize, len: usize) -> Vec<u8> {
    let mut x: u64 = seed.bytes().fold(i as u64 ^ 0x9e37_79b9_7f4a_7c15, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub mod chunk_load;
pub mod fake;
pub mod load;
pub mod nemesis;
pub mod netns;
pub mod prober;
pub mod sentinel;
pub mod soak;
pub mod suite;
pub mod takeovers;
pub mod tls;

/// Holds the fault tests of one test binary apart: two failovers at once on two cores would measure the machine,
/// not the client. (A panicking holder does not poison it.)
pub fn serial() -> parking_lot::MutexGuard<'static, ()> {
    static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    SERIAL.lock()
}

/// Waits (3 s at most) until the client's stats satisfy `ok`.
pub fn wait_for(client: &kvcache_redis::Client, what: &str, ok: impl Fn(&kvcache_redis::Stats) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !ok(&client.stats()) {
        assert!(
            std::time::Instant::now() < deadline,
            "never {what}: {:?}",
            client.stats()
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
