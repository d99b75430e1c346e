//! Stores and loads the KV cache of a Llama-3-8B-shaped prompt as 32 MiB chunks in the framed layout, then
//! looks up a second prompt that shares its first chunks and prints the prefix hit count.
//!
//! `cargo run --release --example llama_chunks -- [URL]` (without a URL it starts a throwaway local Redis).

#[path = "../tests/support/server.rs"]
mod server;

use std::time::Instant;

use bytes::Bytes;
use kvcache_redis::{ChunkKey, ChunkMeta, ChunkStore, Client, Dtype, Layout, MemoryFormat};

const MODEL: &str = "meta-llama/Meta-Llama-3-8B-Instruct";
/// 256 tokens x 32 layers x (K, V) x 8 KV heads x 128 dims x 2 bytes (bf16) = 32 MiB.
const TOKENS: usize = 256;
const LAYERS: usize = 32;
const HIDDEN: usize = 8 * 128;
const CHUNK_BYTES: usize = 2 * LAYERS * TOKENS * HIDDEN * 2;

/// LMCache-style chained chunk hashes: each chunk's hash covers its tokens and every chunk before it.
fn chunk_hashes(prompt: &[u32]) -> Vec<String> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    prompt
        .chunks(TOKENS)
        .map(|tokens| {
            for t in tokens {
                h = (h ^ u64::from(*t)).wrapping_mul(0x100_0000_01b3);
            }
            ChunkKey::hash_of_int(i128::from(h))
        })
        .collect()
}

fn kv_bytes(hash: &str) -> Bytes {
    let seed = hash.bytes().fold(0u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    Bytes::from(
        (0..CHUNK_BYTES)
            .map(|i| seed.wrapping_add((i >> 12) as u8))
            .collect::<Vec<u8>>(),
    )
}

fn main() -> Result<(), kvcache_redis::Error> {
    let (url, _server) = match std::env::args().nth(1) {
        Some(url) => (url, None),
        None => {
            let s = server::Server::standalone(server::Kind::Redis);
            println!("started a throwaway Redis on {}", s.addr());
            (s.url(), Some(s))
        }
    };
    let store = ChunkStore::new(Client::open(&url)?, Layout::Framed).with_namespace("llama-example:");
    let meta = ChunkMeta::new(
        MemoryFormat::Kv2Ltd,
        Dtype::Bfloat16,
        &[2, LAYERS as u32, TOKENS as u32, HIDDEN as u32],
    )?;

    // Prompt A: 6 chunks of 256 tokens.
    let prompt_a: Vec<u32> = (0..6 * TOKENS as u32).collect();
    let keys_a: Vec<ChunkKey> = chunk_hashes(&prompt_a)
        .iter()
        .map(|h| ChunkKey::new(MODEL, 1, 0, h, Dtype::Bfloat16))
        .collect::<Result<_, _>>()?;
    let payloads: Vec<Bytes> = keys_a.iter().map(|k| kv_bytes(&k.chunk_hash)).collect();
    let t = Instant::now();
    let put = store.batched_put(&keys_a, payloads.clone(), Some(meta))?;
    let failed = put.iter().filter(|r| r.is_err()).count();
    println!(
        "stored {} chunks of {} MiB ({} failed) in {:.0} ms",
        keys_a.len(),
        CHUNK_BYTES >> 20,
        failed,
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("first key: {}", store.store_key(&keys_a[0]));

    // Prompt B shares the first 4 chunks of A, then diverges.
    let mut prompt_b = prompt_a.clone();
    prompt_b[4 * TOKENS + 17] = 99_999;
    let keys_b: Vec<ChunkKey> = chunk_hashes(&prompt_b)
        .iter()
        .map(|h| ChunkKey::new(MODEL, 1, 0, h, Dtype::Bfloat16))
        .collect::<Result<_, _>>()?;
    let hits = store.batched_contains(&keys_b)?;
    println!("prompt B: prefix hit count {hits} of {} chunks", keys_b.len());

    let t = Instant::now();
    let loaded = store.batched_get_non_blocking(&keys_b[..hits]).wait()?;
    let secs = t.elapsed().as_secs_f64();
    let intact = loaded
        .iter()
        .zip(&payloads)
        .filter(|(c, p)| c.payload == **p && c.meta == Some(meta))
        .count();
    println!(
        "loaded {} chunks ({} intact, checksums verified) in {:.0} ms, {:.2} GiB/s",
        loaded.len(),
        intact,
        secs * 1e3,
        (loaded.len() * CHUNK_BYTES) as f64 / secs / (1u64 << 30) as f64
    );
    for k in &keys_a {
        store.client().remove(store.store_key(k))?;
    }
    if hits != 4 || intact != 4 || failed != 0 {
        eprintln!("unexpected result");
        std::process::exit(1);
    }
    Ok(())
}
