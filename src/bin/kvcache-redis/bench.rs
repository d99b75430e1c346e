//! `bench`: a KV-chunk workload (value size, batch size, threads, read/write mix, duration or count, layout)
//! with a progress bar and live throughput, then a summary with latency percentiles; `--json` for machines.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kvcache_redis::{ChunkKey, ChunkStore, Dtype, Layout, SplitNaming};

use crate::target::{Failure, Target, describe, exit, human, parse_size, run_namespace};

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// Bytes per chunk (B, KiB, MiB, GiB).
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    value_size: usize,
    /// Chunks per batched call.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
    /// Caller threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
    /// Share of calls that read (0 = all writes, 1 = all reads).
    #[arg(long, default_value_t = 0.8)]
    read_ratio: f64,
    /// Seconds to run (at most a day); the default is 10 unless --count is given.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: Option<u64>,
    /// Batched calls to make in all, then stop.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    count: Option<u64>,
    /// How chunks are stored.
    #[arg(long, value_enum, default_value_t = LayoutArg::Framed)]
    layout: LayoutArg,
    /// Chunks in the working set (written before the run, removed after it).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    keys: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Leave the working set in place after the run.
    #[arg(long)]
    keep: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LayoutArg {
    /// One key per chunk, 40-byte checked header (this crate's default).
    Framed,
    /// One key per chunk, raw bytes of the value size (LMCache's Valkey connector).
    Raw,
    /// Two keys per chunk, `{key}:kv_bytes` + `{key}:metadata` (LMCache's split layout, hash-tagged).
    Split,
    /// Two keys per chunk, `keykv_bytes` + `keymetadata` (LMCache's RedisConnector).
    SplitPlain,
}

impl LayoutArg {
    fn name(self) -> &'static str {
        match self {
            LayoutArg::Framed => "framed",
            LayoutArg::Raw => "raw",
            LayoutArg::Split => "split",
            LayoutArg::SplitPlain => "split-plain",
        }
    }
}

/// Most the working set may hold, so that a typo cannot fill a production server.
const MAX_WORKING_SET: u64 = 64 << 30;

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    read_calls: AtomicU64,
    write_calls: AtomicU64,
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
    read_chunks: AtomicU64,
    write_chunks: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
    misses: AtomicU64,
}

/// A chunk's payload: a shared pattern with the chunk's index in its first 8 bytes.
fn payload(base: &[u8], i: u64) -> Bytes {
    let mut v = base.to_vec();
    let n = v.len().min(8);
    v[..n].copy_from_slice(&i.to_le_bytes()[..n]);
    Bytes::from(v)
}

fn sound(base: &[u8], i: u64, got: &[u8]) -> bool {
    let n = base.len().min(8);
    got.len() == base.len() && got[..n] == i.to_le_bytes()[..n] && got[n..] == base[n..]
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err(Failure::usage("--read-ratio must be between 0 and 1"));
    }
    let working_set = args.keys.saturating_mul(args.value_size as u64);
    if working_set > MAX_WORKING_SET {
        return Err(Failure::usage(format!(
            "a working set of {} is over the {} limit: lower --keys or --value-size",
            human(working_set),
            human(MAX_WORKING_SET)
        )));
    }
    if args.value_size == 0 {
        return Err(Failure::usage("--value-size must be at least 1 byte"));
    }
    let duration = match (args.duration, args.count) {
        (Some(d), _) => Duration::from_secs(d),
        (None, Some(_)) => Duration::from_secs(86_400),
        (None, None) => Duration::from_secs(10),
    };
    let target = &args.target;
    let client = target.connect()?;
    let layout = match args.layout {
        LayoutArg::Framed => Layout::Framed,
        LayoutArg::Raw => Layout::Raw { size: args.value_size },
        LayoutArg::Split => Layout::Split {
            naming: SplitNaming::HashTagged,
        },
        LayoutArg::SplitPlain => Layout::Split {
            naming: SplitNaming::Plain,
        },
    };
    let ns = run_namespace("bench");
    let store = ChunkStore::new(client.clone(), layout).with_namespace(ns.clone());
    let keys: Arc<Vec<ChunkKey>> = Arc::new(
        (0..args.keys)
            .map(|i| {
                ChunkKey::new(
                    "kvcache-bench/model",
                    1,
                    0,
                    &ChunkKey::hash_of_int(i as i128),
                    Dtype::Bfloat16,
                )
            })
            .collect::<Result<_, _>>()
            .map_err(|e| Failure::usage(e.to_string()))?,
    );
    let base: Arc<Vec<u8>> = Arc::new((0..args.value_size).map(|i| (i * 31 + 7) as u8).collect());
    if !args.json {
        say!(
            "bench     {} ({}, layout {}, {} chunks, batch {}, {} threads, read ratio {:.2})",
            target.redacted(),
            if client.is_cluster() { "cluster" } else { "standalone" },
            args.layout.name(),
            human(args.value_size as u64),
            args.batch,
            args.threads,
            args.read_ratio
        );
    }
    let json = args.json;
    let draw = move || {
        if json {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        }
    };

    // Fill the working set.
    let fill = ProgressBar::with_draw_target(Some(args.keys), draw());
    fill.set_style(ProgressStyle::with_template("fill  {bar:40} {pos}/{len} chunks {msg}").expect("template"));
    for (n, group) in keys.chunks(args.batch as usize).enumerate() {
        if crate::interrupted() {
            break;
        }
        let first = (n * args.batch as usize) as u64;
        let values: Vec<Bytes> = (0..group.len() as u64).map(|j| payload(&base, first + j)).collect();
        let results = store
            .batched_put(group, values, None)
            .map_err(|e| describe(&target.redacted(), &e))?;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            return Err(describe(&target.redacted(), &e));
        }
        fill.inc(group.len() as u64);
    }
    fill.finish_and_clear();

    // Run.
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..args.threads)
        .map(|t| {
            let (store, keys, base, counters, stop) = (
                store.clone(),
                keys.clone(),
                base.clone(),
                counters.clone(),
                stop.clone(),
            );
            let (batch, ratio, count) = (args.batch as u64, args.read_ratio, args.count);
            std::thread::spawn(move || {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let n = keys.len() as u64;
                while !stop.load(Relaxed) {
                    if let Some(count) = count
                        && counters.calls.fetch_add(1, Relaxed) >= count
                    {
                        break;
                    }
                    let first = next() % n;
                    let idx: Vec<u64> = (0..batch.min(n)).map(|j| (first + j) % n).collect();
                    let batch_keys: Vec<ChunkKey> = idx.iter().map(|&i| keys[i as usize].clone()).collect();
                    let read = (next() % 1_000_000) as f64 / 1_000_000.0 < ratio;
                    let t0 = Instant::now();
                    if read {
                        let result = store.batched_get(&batch_keys);
                        let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                        counters.read_calls.fetch_add(1, Relaxed);
                        match result {
                            Ok(per_key) => {
                                for (&i, r) in idx.iter().zip(per_key) {
                                    match r {
                                        Ok(Some(chunk)) => {
                                            counters.read_chunks.fetch_add(1, Relaxed);
                                            counters.read_bytes.fetch_add(chunk.payload.len() as u64, Relaxed);
                                            if !sound(&base, i, &chunk.payload) {
                                                counters.wrong.fetch_add(1, Relaxed);
                                            }
                                        }
                                        Ok(None) => _ = counters.misses.fetch_add(1, Relaxed),
                                        Err(_) => _ = counters.errors.fetch_add(1, Relaxed),
                                    }
                                }
                            }
                            Err(_) => _ = counters.errors.fetch_add(idx.len() as u64, Relaxed),
                        }
                    } else {
                        let values: Vec<Bytes> = idx.iter().map(|&i| payload(&base, i)).collect();
                        let t0 = Instant::now(); // the payload copies are not the store's time
                        let result = store.batched_put(&batch_keys, values, None);
                        let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                        counters.write_calls.fetch_add(1, Relaxed);
                        match result {
                            Ok(per_key) => {
                                for r in per_key {
                                    match r {
                                        Ok(()) => {
                                            counters.write_chunks.fetch_add(1, Relaxed);
                                            counters.write_bytes.fetch_add(base.len() as u64, Relaxed);
                                        }
                                        Err(_) => _ = counters.errors.fetch_add(1, Relaxed),
                                    }
                                }
                            }
                            Err(_) => _ = counters.errors.fetch_add(idx.len() as u64, Relaxed),
                        }
                    }
                    if count.is_none() {
                        counters.calls.fetch_add(1, Relaxed);
                    }
                }
                hist
            })
        })
        .collect();
    let bar = match args.count {
        Some(count) => ProgressBar::with_draw_target(Some(count), draw()),
        None => ProgressBar::with_draw_target(Some(duration.as_secs()), draw()),
    };
    bar.set_style(ProgressStyle::with_template("run   {bar:40} {pos}/{len} {prefix} {msg}").expect("template"));
    bar.set_prefix(if args.count.is_some() { "calls" } else { "s" });
    let (mut last_bytes, mut last_at) = (0u64, Instant::now());
    while started.elapsed() < duration && !threads.iter().all(|t| t.is_finished()) && !crate::interrupted() {
        std::thread::sleep(Duration::from_millis(200));
        let calls = counters.calls.load(Relaxed).min(args.count.unwrap_or(u64::MAX));
        bar.set_position(if args.count.is_some() {
            calls
        } else {
            started.elapsed().as_secs()
        });
        let bytes = counters.read_bytes.load(Relaxed) + counters.write_bytes.load(Relaxed);
        let rate = (bytes - last_bytes) as f64 / last_at.elapsed().as_secs_f64().max(1e-9);
        (last_bytes, last_at) = (bytes, Instant::now());
        bar.set_message(format!(
            "{}/s, {} errors",
            human(rate as u64),
            counters.errors.load(Relaxed)
        ));
    }
    stop.store(true, Relaxed);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
    for t in threads {
        let h = t
            .join()
            .map_err(|_| Failure::unreachable("a benchmark thread panicked"))?;
        hist.add(&h).expect("same bounds");
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // Clean up.
    let mut removed = 0;
    if !args.keep {
        let names: Vec<String> = keys
            .iter()
            .flat_map(|key| match layout {
                Layout::Split { naming } => {
                    let (kv, meta) = store.split_keys(key, naming);
                    vec![kv, meta]
                }
                _ => vec![store.store_key(key)],
            })
            .collect();
        let results = client
            .batched_remove(&names)
            .map_err(|e| describe(&target.redacted(), &e))?;
        removed = results.into_iter().filter(|r| matches!(r, Ok(true))).count();
    }

    let c = &counters;
    let get = |a: &AtomicU64| a.load(Relaxed);
    let (rb, wb) = (get(&c.read_bytes), get(&c.write_bytes));
    let gib = |b: u64| b as f64 / elapsed / (1u64 << 30) as f64;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let calls = get(&c.read_calls) + get(&c.write_calls);
    if args.json {
        let json = serde_json::json!({
            "target": target.redacted(),
            "cluster": client.is_cluster(),
            "layout": args.layout.name(),
            "value_size": args.value_size,
            "batch": args.batch,
            "threads": args.threads,
            "read_ratio": args.read_ratio,
            "seconds": elapsed,
            "calls": calls,
            "read_calls": get(&c.read_calls),
            "write_calls": get(&c.write_calls),
            "ops_per_sec": calls as f64 / elapsed,
            "chunks_read": get(&c.read_chunks),
            "chunks_written": get(&c.write_chunks),
            "read_gib_per_sec": gib(rb),
            "write_gib_per_sec": gib(wb),
            "total_gib_per_sec": gib(rb + wb),
            "latency_ms": {"p50": ms(0.5), "p95": ms(0.95), "p99": ms(0.99), "max": hist.max() as f64 / 1000.0},
            "errors": get(&c.errors),
            "wrong": get(&c.wrong),
            "misses": get(&c.misses),
            "keys_removed": removed,
        });
        say!("{json}");
    } else {
        say!(
            "ran       {elapsed:.1} s: {calls} batched calls ({} reads, {} writes), {:.0} calls/s",
            get(&c.read_calls),
            get(&c.write_calls),
            calls as f64 / elapsed
        );
        say!(
            "read      {:.2} GiB/s  {:.0} chunks/s",
            gib(rb),
            get(&c.read_chunks) as f64 / elapsed
        );
        say!(
            "write     {:.2} GiB/s  {:.0} chunks/s",
            gib(wb),
            get(&c.write_chunks) as f64 / elapsed
        );
        say!("total     {:.2} GiB/s", gib(rb + wb));
        say!(
            "latency   p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (per batched call)",
            ms(0.5),
            ms(0.95),
            ms(0.99),
            hist.max() as f64 / 1000.0
        );
        say!(
            "checks    {} errors, {} wrong values, {} misses; {}",
            get(&c.errors),
            get(&c.wrong),
            get(&c.misses),
            if args.keep {
                format!("working set kept under {ns}")
            } else {
                format!("{removed} keys removed")
            }
        );
    }
    Ok(exit(get(&c.wrong) > 0 || get(&c.errors) > 0))
}
