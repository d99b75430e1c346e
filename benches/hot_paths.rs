//! Criterion benches of the pure hot parts: slot hashing and batch planning.
//!
//! Last run (`cargo bench --bench hot_paths`, 2-core x86_64 VM, loopback, shared and noisy):
//! slot of a 40-byte key 71 ns, of a hash-tagged key 17 ns; planning 1000 gets 47 us standalone, 280 us over a
//! 3-primary cluster (one command per slot: random keys rarely share one); planning 8 gets of 32 MiB 0.54 us.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use kvcache_redis::Slot;
use kvcache_redis::bench_support::plan_gets;
use std::hint::black_box;

fn keys(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("meta-llama/Llama-3.1-8B-Instruct@1@0@{i:x}@bfloat16")))
        .collect()
}

fn slots(c: &mut Criterion) {
    let key = b"meta-llama/Llama-3.1-8B@1@0@1a2b3c@bf16";
    c.bench_function("slot of a 40-byte key", |b| b.iter(|| Slot::of(black_box(key))));
    c.bench_function("slot of a hash-tagged key", |b| {
        b.iter(|| Slot::of(black_box(b"{chunk-1a2b3c}:kv_bytes")))
    });
}

fn planning(c: &mut Criterion) {
    let k = keys(1000);
    c.bench_function("plan 1000 gets, standalone", |b| {
        b.iter(|| plan_gets(black_box(&k), false, 4096))
    });
    c.bench_function("plan 1000 gets, 3-primary cluster", |b| {
        b.iter(|| plan_gets(black_box(&k), true, 4096))
    });
    c.bench_function("plan 8 gets of 32 MiB, standalone", |b| {
        b.iter(|| plan_gets(black_box(&k[..8]), false, 32 << 20))
    });
}

fn checksums(c: &mut Criterion) {
    let payload = vec![7u8; 32 << 20];
    let mut g = c.benchmark_group("frame");
    g.sample_size(20);
    g.bench_function("crc32 of a 32 MiB chunk", |b| {
        b.iter(|| crc32fast::hash(black_box(&payload)))
    });
    g.finish();
}

criterion_group!(benches, slots, planning, checksums);
criterion_main!(benches);
