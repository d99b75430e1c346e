//! `check`'s checklist: each step of the cache contract, run under the temporary namespace in `Ctx`.

use std::time::{Duration, Instant};

use kvcache_redis::{ChunkKey, ChunkStore, Client, Dtype, Layout, Priority, ReadFrom, Slot, SplitNaming};

use crate::target::{human, plural_y};

/// What the steps share: the client, the namespace, and every key written.
pub struct Ctx {
    pub client: Client,
    /// A client reading from replicas, when `--read-from` (or the URL) asks for it.
    pub replicas: Option<(Client, ReadFrom)>,
    pub ns: String,
    pub shards: usize,
    /// Every key written, for the clean-up.
    pub written: Vec<Vec<u8>>,
}

impl Ctx {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.ns)
    }

    fn keys(&mut self, name: &str, n: usize) -> Vec<String> {
        let keys: Vec<String> = (0..n).map(|i| self.key(&format!("{name}:{i}"))).collect();
        self.written.extend(keys.iter().map(|k| k.as_bytes().to_vec()));
        keys
    }

    fn round_trips(&self) -> u64 {
        self.client.stats().round_trips
    }
}

/// Deterministic bytes for value `i`.
fn value(i: usize, len: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub type Step = fn(&mut Ctx) -> Result<String, String>;

pub const STEPS: [(&str, Step); 10] = [
    ("put/get round trip", round_trip),
    ("replica reads", replica_reads),
    ("batched MGET", batched_mget),
    ("order preservation", order_preserved),
    ("missing keys", missing_keys),
    ("prefix semantics", prefix_semantics),
    ("pipelined writes", pipelined_writes),
    ("split layout hash tags", hash_tags),
    ("priority ordering", priorities),
    ("per-key vs batched speed", speed),
];

pub fn e(err: kvcache_redis::Error) -> String {
    err.to_string()
}

fn round_trip(ctx: &mut Ctx) -> Result<String, String> {
    let keys = ctx.keys("round-trip", 2);
    let (small, large) = (value(1, 100), value(2, 1 << 20));
    ctx.client.put(&keys[0], small.clone()).map_err(e)?;
    ctx.client.put(&keys[1], large.clone()).map_err(e)?;
    let got = (
        ctx.client.get(&keys[0]).map_err(e)?,
        ctx.client.get(&keys[1]).map_err(e)?,
    );
    match got {
        (Some(a), Some(b)) if a[..] == small[..] && b[..] == large[..] => {
            Ok("100 B and 1 MiB values read back byte for byte".into())
        }
        (a, b) => Err(format!(
            "read back {:?} / {:?} bytes, not the values written",
            a.map(|v| v.len()),
            b.map(|v| v.len())
        )),
    }
}

/// Values written through the primary read back, byte for byte, by the client reading from replicas, once
/// replication has carried them (a miss in between is allowed; other bytes never).
fn replica_reads(ctx: &mut Ctx) -> Result<String, String> {
    let keys = ctx.keys("replica", 64);
    let Some((replicas, read_from)) = &ctx.replicas else {
        return Ok("not asked for (reads go to primaries; see --read-from)".into());
    };
    let values: Vec<Vec<u8>> = (0..64).map(|i| value(500 + i, 4096)).collect();
    check_all_ok(ctx.client.batched_put(&keys, values.clone()).map_err(e)?)?;
    let started = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        let got = replicas.batched_get(&keys).map_err(e)?;
        let mut missing = 0;
        for (pos, (r, want)) in got.into_iter().zip(&values).enumerate() {
            match r.map_err(e)? {
                Some(v) if v[..] == want[..] => {}
                Some(_) => return Err(format!("{} read back other bytes", keys[pos])),
                None => missing += 1,
            }
        }
        if missing == 0 {
            return Ok(format!(
                "64 x 4 KiB read back with read_from={} after {:.1?} ({tries} batched get{})",
                format!("{read_from:?}").to_lowercase(),
                started.elapsed(),
                if tries == 1 { "" } else { "s" }
            ));
        }
        if started.elapsed() > Duration::from_secs(5) {
            return Err(format!(
                "{missing} of 64 values still missing on the replicas 5 s after the write (replication stalled?)"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn batched_mget(ctx: &mut Ctx) -> Result<String, String> {
    let keys = ctx.keys("mget", 256);
    let values: Vec<Vec<u8>> = (0..256).map(|i| value(i, 1024)).collect();
    check_all_ok(ctx.client.batched_put(&keys, values.clone()).map_err(e)?)?;
    let before = ctx.round_trips();
    let got = ctx.client.batched_get(&keys).map_err(e)?;
    let trips = ctx.round_trips() - before;
    for (i, r) in got.into_iter().enumerate() {
        match r.map_err(e)? {
            Some(v) if v[..] == values[i][..] => {}
            other => {
                return Err(format!(
                    "key {i}: got {:?} bytes, not its value",
                    other.map(|v| v.len())
                ));
            }
        }
    }
    if trips as usize > ctx.shards {
        return Err(format!(
            "256 keys took {trips} round trips for {} primaries",
            ctx.shards
        ));
    }
    Ok(format!(
        "256 x 1 KiB in {trips} round trip(s) over {} primar{}",
        ctx.shards,
        plural_y(ctx.shards)
    ))
}

fn check_all_ok(results: Vec<kvcache_redis::Result<()>>) -> Result<(), String> {
    for (i, r) in results.into_iter().enumerate() {
        r.map_err(|err| format!("put {i}: {err}"))?;
    }
    Ok(())
}

fn order_preserved(ctx: &mut Ctx) -> Result<String, String> {
    let keys = ctx.keys("order", 64);
    check_all_ok(
        ctx.client
            .batched_put(&keys, (0..64).map(|i| value(100 + i, 64)))
            .map_err(e)?,
    )?;
    // Reversed, with a missing key after every third.
    let mut asked = Vec::new();
    let mut expect = Vec::new();
    for i in (0..64).rev() {
        asked.push(keys[i].clone());
        expect.push(Some(value(100 + i, 64)));
        if i % 3 == 0 {
            asked.push(ctx.key(&format!("order:absent:{i}")));
            expect.push(None);
        }
    }
    let got = ctx.client.batched_get(&asked).map_err(e)?;
    for (pos, (r, want)) in got.into_iter().zip(&expect).enumerate() {
        let r = r.map_err(e)?;
        if r.as_deref() != want.as_deref() {
            return Err(format!("position {pos} ({}) holds another key's answer", asked[pos]));
        }
    }
    Ok(format!("{} answers in the order asked, misses in place", asked.len()))
}

fn missing_keys(ctx: &mut Ctx) -> Result<String, String> {
    let absent: Vec<String> = (0..10).map(|i| ctx.key(&format!("never-written:{i}"))).collect();
    let got = ctx.client.batched_get(&absent).map_err(e)?;
    if got.iter().any(|r| !matches!(r, Ok(None))) {
        return Err(format!("missing keys read as {got:?}"));
    }
    if ctx.client.get(&absent[0]).map_err(e)?.is_some() || ctx.client.exists(&absent[0]).map_err(e)? {
        return Err("a missing key reads as present".into());
    }
    Ok("10 missing keys read as misses, not errors".into())
}

fn prefix_semantics(ctx: &mut Ctx) -> Result<String, String> {
    let keys = ctx.keys("prefix", 4);
    check_all_ok(
        ctx.client
            .batched_put(&keys, (0..4).map(|i| value(200 + i, 512)))
            .map_err(e)?,
    )?;
    let asked = [
        keys[0].clone(),
        keys[1].clone(),
        ctx.key("prefix:absent"),
        keys[3].clone(),
    ];
    let count = ctx.client.batched_contains(&asked).map_err(e)?;
    let loaded = ctx.client.batched_get_non_blocking(&asked).wait().map_err(e)?;
    if count != 2 {
        return Err(format!("contains of [hit, hit, miss, hit] counted {count}, not 2"));
    }
    if loaded.len() != 2 || loaded[0][..] != value(200, 512)[..] || loaded[1][..] != value(201, 512)[..] {
        return Err(format!(
            "non-blocking get of [hit, hit, miss, hit] returned {} values",
            loaded.len()
        ));
    }
    Ok("contains and non-blocking get stop at the first miss (2 of [hit, hit, miss, hit])".into())
}

fn pipelined_writes(ctx: &mut Ctx) -> Result<String, String> {
    let keys = ctx.keys("pipeline", 256);
    let before = ctx.round_trips();
    check_all_ok(
        ctx.client
            .batched_put(&keys, (0..256).map(|i| value(300 + i, 1024)))
            .map_err(e)?,
    )?;
    let trips = ctx.round_trips() - before;
    if trips as usize > ctx.shards {
        return Err(format!(
            "256 puts took {trips} round trips for {} primaries",
            ctx.shards
        ));
    }
    Ok(format!("256 puts in {trips} round trip(s)"))
}

fn hash_tags(ctx: &mut Ctx) -> Result<String, String> {
    let store = ChunkStore::new(
        ctx.client.clone(),
        Layout::Split {
            naming: SplitNaming::HashTagged,
        },
    )
    .with_namespace(ctx.ns.clone());
    let key = ChunkKey::new("kvcache-check/model", 1, 0, "c0ffee", Dtype::Bfloat16).map_err(e)?;
    let (kv, meta) = store.split_keys(&key, SplitNaming::HashTagged);
    ctx.written.push(kv.as_bytes().to_vec());
    ctx.written.push(meta.as_bytes().to_vec());
    let payload = value(400, 64 << 10);
    store.put(&key, payload.clone(), None).map_err(e)?;
    let (a, b) = (Slot::of(kv.as_bytes()), Slot::of(meta.as_bytes()));
    if a != b {
        return Err(format!("{kv} is in slot {}, {meta} in slot {}", a.get(), b.get()));
    }
    match store.get(&key).map_err(e)? {
        Some(chunk) if chunk.payload[..] == payload[..] => {}
        other => return Err(format!("the chunk read back as {:?}", other.map(|c| c.payload.len()))),
    }
    Ok(format!("{kv} and its metadata share slot {}", a.get()))
}

fn priorities(ctx: &mut Ctx) -> Result<String, String> {
    let keys = ctx.keys("flood", 64);
    let peek_key = ctx.keys("peek", 1).remove(0);
    ctx.client.put(&peek_key, b"here".to_vec()).map_err(e)?;
    let values: Vec<Vec<u8>> = (0..64).map(|i| value(500 + i, 1 << 20)).collect();
    let client = ctx.client.clone();
    let flood = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = client.batched_put(&keys, values);
        (r, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(2));
    let t0 = Instant::now();
    let found = ctx
        .client
        .call()
        .priority(Priority::Peek)
        .exists(&peek_key)
        .map_err(e)?;
    let peek = t0.elapsed();
    let (put, flood_took) = flood.join().map_err(|_| "the flood thread panicked".to_string())?;
    check_all_ok(put.map_err(e)?)?;
    if !found {
        return Err("the peeked key was not found".into());
    }
    if peek + Duration::from_millis(2) >= flood_took {
        return Err(format!(
            "a PEEK took {peek:?}, no faster than the 64 MiB PUT flood around it ({flood_took:?})"
        ));
    }
    Ok(format!(
        "a PEEK during a 64 MiB PUT flood: {peek:.1?} (the flood: {flood_took:.1?})"
    ))
}

fn speed(ctx: &mut Ctx) -> Result<String, String> {
    let keys = ctx.keys("speed", 200);
    check_all_ok(
        ctx.client
            .batched_put(&keys, (0..200).map(|i| value(600 + i, 4096)))
            .map_err(e)?,
    )?;
    let t0 = Instant::now();
    for k in &keys {
        ctx.client.get(k).map_err(e)?;
    }
    let per_key = t0.elapsed();
    let t0 = Instant::now();
    let got = ctx.client.batched_get(&keys).map_err(e)?;
    let batched = t0.elapsed();
    if got.iter().any(|r| !matches!(r, Ok(Some(_)))) {
        return Err("the batched read missed keys".into());
    }
    let ratio = per_key.as_secs_f64() / batched.as_secs_f64().max(1e-9);
    let detail = format!(
        "200 x 4 KiB: per-key {per_key:.1?}, batched {batched:.1?} ({ratio:.1}x, {}/s batched)",
        human((200.0 * 4096.0 / batched.as_secs_f64().max(1e-9)) as u64)
    );
    if ratio < 1.0 { Err(detail) } else { Ok(detail) }
}
