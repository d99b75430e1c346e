//! Test support: real servers, shared fixtures, and helpers.

#![allow(dead_code, unused_imports)]

pub mod server;

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

pub mod fake;
pub mod suite;
