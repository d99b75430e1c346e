//! Writes, or reads back and checks, a set of deterministic KV-cache chunks in any layout: for checking that
//! another writer (the Python package, LMCache) stores the same bytes as this crate, in both directions.
//!
//! `cargo run --release --example chunk_roundtrip -- write|verify URL LAYOUT NAMESPACE COUNT SIZE`
//!
//! `LAYOUT` is `framed`, `raw`, `split:plain`, `split:hash_tagged` or `split:colon`. Chunk `i` has the key
//! `interop/model@1@0@{i:x}@bfloat16`, metadata `KV_2LTD`, bfloat16, shape `[2, 1, SIZE / 4, 1]`, and payload byte
//! `j` = `(31 j + 7 i + (j >> 10)) mod 251`. `verify` exits 1 (saying which) if any chunk is missing or differs.

use std::process::ExitCode;

use kvcache_redis::{ChunkKey, ChunkMeta, ChunkStore, Client, Dtype, Layout, MemoryFormat, SplitNaming};

fn payload(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| ((31 * j + 7 * i + (j >> 10)) % 251) as u8).collect()
}

fn layout(spec: &str, size: usize) -> Option<Layout> {
    Some(match spec {
        "framed" => Layout::Framed,
        "raw" => Layout::Raw { size },
        "split:plain" => Layout::Split {
            naming: SplitNaming::Plain,
        },
        "split:hash_tagged" => Layout::Split {
            naming: SplitNaming::HashTagged,
        },
        "split:colon" => Layout::Split {
            naming: SplitNaming::Colon,
        },
        _ => return None,
    })
}

fn run(args: &[String]) -> Result<(), String> {
    let [mode, url, spec, namespace, count, size] = args else {
        return Err("usage: chunk_roundtrip write|verify URL LAYOUT NAMESPACE COUNT SIZE".into());
    };
    let count: usize = count.parse().map_err(|_| format!("bad COUNT {count:?}"))?;
    let size: usize = size.parse().map_err(|_| format!("bad SIZE {size:?}"))?;
    let layout = layout(spec, size).ok_or_else(|| format!("bad LAYOUT {spec:?}"))?;
    let client = Client::open(url).map_err(|e| e.to_string())?;
    let store = ChunkStore::new(client, layout).with_namespace(namespace.as_str());
    let keys: Vec<ChunkKey> = (0..count)
        .map(|i| ChunkKey::new("interop/model", 1, 0, &format!("{i:x}"), Dtype::Bfloat16))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let with_meta = !matches!(layout, Layout::Raw { .. });
    let meta = ChunkMeta::new(MemoryFormat::Kv2Ltd, Dtype::Bfloat16, &[2, 1, (size / 4) as u32, 1])
        .map_err(|e| e.to_string())?;
    match mode.as_str() {
        "write" => {
            let payloads = (0..count).map(|i| payload(i, size).into()).collect();
            let results = store
                .batched_put(&keys, payloads, with_meta.then_some(meta))
                .map_err(|e| e.to_string())?;
            for (i, r) in results.into_iter().enumerate() {
                r.map_err(|e| format!("chunk {i}: {e}"))?;
            }
            Ok(())
        }
        "verify" => {
            let got = store.batched_get(&keys).map_err(|e| e.to_string())?;
            for (i, r) in got.into_iter().enumerate() {
                let chunk = r
                    .map_err(|e| format!("chunk {i}: {e}"))?
                    .ok_or(format!("chunk {i}: missing"))?;
                if chunk.payload != payload(i, size) {
                    return Err(format!("chunk {i}: payload differs"));
                }
                if with_meta && chunk.meta != Some(meta) {
                    return Err(format!("chunk {i}: metadata {:?}, expected {meta:?}", chunk.meta));
                }
            }
            Ok(())
        }
        other => Err(format!("bad mode {other:?}: write or verify")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chunk_roundtrip: {e}");
            ExitCode::FAILURE
        }
    }
}
