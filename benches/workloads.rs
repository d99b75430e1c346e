//! Criterion benches of whole calls against a real server the bench starts itself, beside the plain redis-rs
//! baselines on the same server, keys and values.
//!
//! Last run (`cargo bench --bench workloads`, 2-core x86_64 VM, loopback, shared and noisy; Redis 7.0.15):
//! batched_get 1000 x 4 KiB: ours 1.91 ms, one MGET 2.18 ms, per-key loop 61.3 ms;
//! batched_get 8 x 32 MiB: ours 204 ms, per-key loop 359 ms.

#[path = "../tests/support/server.rs"]
mod server;

use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use kvcache_redis::Client;
use server::{Kind, Server};

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}:{i}")).collect()
}

fn plain(server: &Server) -> redis::Connection {
    redis::Client::open(server.url()).unwrap().get_connection().unwrap()
}

fn workloads(c: &mut Criterion) {
    let server = Server::standalone(Kind::Redis);
    let client = Client::open(&server.url()).unwrap();

    let small = keys("small", 1000);
    client
        .batched_put(&small, (0..1000).map(|_| Bytes::from(vec![7u8; 4096])))
        .unwrap();
    let mut g = c.benchmark_group("batched_get 1000 x 4 KiB");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.bench_function("kvcache-redis", |b| b.iter(|| client.batched_get(&small).unwrap()));
    let mut conn = plain(&server);
    g.bench_function("one MGET (redis-rs)", |b| {
        b.iter(|| redis::cmd("MGET").arg(&small).query::<Vec<Vec<u8>>>(&mut conn).unwrap())
    });
    g.bench_function("per-key GET loop (redis-rs)", |b| {
        b.iter(|| {
            for k in &small {
                redis::cmd("GET").arg(k).query::<Vec<u8>>(&mut conn).unwrap();
            }
        })
    });
    g.finish();

    let large = keys("large", 8);
    client
        .batched_put(&large, (0..8).map(|_| Bytes::from(vec![9u8; 32 << 20])))
        .unwrap();
    let mut g = c.benchmark_group("batched_get 8 x 32 MiB");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("kvcache-redis", |b| b.iter(|| client.batched_get(&large).unwrap()));
    g.bench_function("per-key GET loop (redis-rs)", |b| {
        b.iter(|| {
            for k in &large {
                redis::cmd("GET").arg(k).query::<Vec<u8>>(&mut conn).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, workloads);
criterion_main!(benches);
