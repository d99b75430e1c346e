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

use crate::bench_caller::{Caller, Counters, histogram, payload};
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
    /// Two keys per chunk, `key:kv_bytes` + `key:metadata` (LMCache 0.3's standalone ValkeyConnector).
    SplitColon,
}

impl LayoutArg {
    fn name(self) -> &'static str {
        match self {
            LayoutArg::Framed => "framed",
            LayoutArg::Raw => "raw",
            LayoutArg::Split => "split",
            LayoutArg::SplitPlain => "split-plain",
            LayoutArg::SplitColon => "split-colon",
        }
    }
}

/// Most the working set may hold, so that a typo cannot fill a production server.
const MAX_WORKING_SET: u64 = 64 << 30;

/// Runs the phases: fill the working set, run the callers while watching them, clean up, report.
pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let duration = check(&args)?;
    let bench = Bench::open(&args)?;
    bench.fill()?;
    let started = Instant::now();
    let callers = bench.run_callers();
    let hist = bench.watch(duration, started, callers)?;
    let elapsed = started.elapsed().as_secs_f64();
    let removed = bench.clean_up()?;
    Ok(bench.report(elapsed, &hist, removed))
}

/// Checks the arguments; returns how long to run.
fn check(args: &Args) -> Result<Duration, Failure> {
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
    Ok(match (args.duration, args.count) {
        (Some(d), _) => Duration::from_secs(d),
        (None, Some(_)) => Duration::from_secs(86_400),
        (None, None) => Duration::from_secs(10),
    })
}

/// One benchmark: its arguments, its store under a fresh namespace, its working set, and what the callers count.
struct Bench<'a> {
    args: &'a Args,
    client: kvcache_redis::Client,
    store: ChunkStore,
    layout: Layout,
    ns: String,
    keys: Arc<Vec<ChunkKey>>,
    base: Arc<Vec<u8>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl<'a> Bench<'a> {
    /// Connects, and names the working set.
    fn open(args: &'a Args) -> Result<Bench<'a>, Failure> {
        let client = args.target.connect()?;
        let layout = match args.layout {
            LayoutArg::Framed => Layout::Framed,
            LayoutArg::Raw => Layout::Raw { size: args.value_size },
            LayoutArg::Split => Layout::Split {
                naming: SplitNaming::HashTagged,
            },
            LayoutArg::SplitPlain => Layout::Split {
                naming: SplitNaming::Plain,
            },
            LayoutArg::SplitColon => Layout::Split {
                naming: SplitNaming::Colon,
            },
        };
        let ns = run_namespace("bench");
        let store = ChunkStore::new(client.clone(), layout).with_namespace(ns.clone());
        let keys = (0..args.keys)
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
            .map_err(|e| Failure::usage(e.to_string()))?;
        if !args.json {
            say!(
                "bench     {} ({}, layout {}, {} chunks, batch {}, {} threads, read ratio {:.2})",
                args.target.redacted(),
                if client.is_cluster() { "cluster" } else { "standalone" },
                args.layout.name(),
                human(args.value_size as u64),
                args.batch,
                args.threads,
                args.read_ratio
            );
        }
        Ok(Bench {
            args,
            client,
            store,
            layout,
            ns,
            keys: Arc::new(keys),
            base: Arc::new((0..args.value_size).map(|i| (i * 31 + 7) as u8).collect()),
            counters: Arc::default(),
            stop: Arc::default(),
        })
    }

    fn bar(&self, len: u64, template: &str) -> ProgressBar {
        let draw = if self.args.json {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(len), draw);
        bar.set_style(ProgressStyle::with_template(template).expect("template"));
        bar
    }

    fn failed(&self, e: &kvcache_redis::Error) -> Failure {
        describe(&self.args.target.redacted(), e)
    }

    /// Writes the working set, a batch at a time.
    fn fill(&self) -> Result<(), Failure> {
        let batch = self.args.batch as usize;
        let bar = self.bar(self.args.keys, "fill  {bar:40} {pos}/{len} chunks {msg}");
        for (n, group) in self.keys.chunks(batch).enumerate() {
            if crate::interrupted() {
                break;
            }
            let first = (n * batch) as u64;
            let values: Vec<Bytes> = (0..group.len() as u64)
                .map(|j| payload(&self.base, first + j))
                .collect();
            let results = self
                .store
                .batched_put(group, values, None)
                .map_err(|e| self.failed(&e))?;
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                return Err(self.failed(&e));
            }
            bar.inc(group.len() as u64);
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Starts the caller threads; each returns its latency histogram when stopped.
    fn run_callers(&self) -> Vec<std::thread::JoinHandle<Histogram<u64>>> {
        (0..self.args.threads)
            .map(|t| {
                let caller = Caller {
                    store: self.store.clone(),
                    keys: self.keys.clone(),
                    base: self.base.clone(),
                    counters: self.counters.clone(),
                    stop: self.stop.clone(),
                    batch: self.args.batch as u64,
                    read_ratio: self.args.read_ratio,
                    count: self.args.count,
                    rng: 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
                };
                std::thread::spawn(move || caller.run())
            })
            .collect()
    }

    /// Shows progress and live throughput until the time or count is reached (or Ctrl-C), then stops the callers
    /// and merges their histograms.
    fn watch(
        &self,
        duration: Duration,
        started: Instant,
        callers: Vec<std::thread::JoinHandle<Histogram<u64>>>,
    ) -> Result<Histogram<u64>, Failure> {
        let count = self.args.count;
        let bar = self.bar(
            count.unwrap_or(duration.as_secs()),
            "run   {bar:40} {pos}/{len} {prefix} {msg}",
        );
        bar.set_prefix(if count.is_some() { "calls" } else { "s" });
        let c = &self.counters;
        let (mut last_bytes, mut last_at) = (0u64, Instant::now());
        while started.elapsed() < duration && !callers.iter().all(|t| t.is_finished()) && !crate::interrupted() {
            std::thread::sleep(Duration::from_millis(200));
            let calls = c.calls.load(Relaxed).min(count.unwrap_or(u64::MAX));
            bar.set_position(if count.is_some() {
                calls
            } else {
                started.elapsed().as_secs()
            });
            let bytes = c.read_bytes.load(Relaxed) + c.write_bytes.load(Relaxed);
            let rate = (bytes - last_bytes) as f64 / last_at.elapsed().as_secs_f64().max(1e-9);
            (last_bytes, last_at) = (bytes, Instant::now());
            bar.set_message(format!("{}/s, {} errors", human(rate as u64), c.errors.load(Relaxed)));
        }
        self.stop.store(true, Relaxed);
        let mut hist = histogram();
        for t in callers {
            let h = t
                .join()
                .map_err(|_| Failure::unreachable("a benchmark thread panicked"))?;
            hist.add(&h).expect("same bounds");
        }
        bar.finish_and_clear();
        Ok(hist)
    }

    /// Removes the working set (unless `--keep`); returns how many keys were removed.
    fn clean_up(&self) -> Result<usize, Failure> {
        if self.args.keep {
            return Ok(0);
        }
        let names: Vec<String> = self
            .keys
            .iter()
            .flat_map(|key| match self.layout {
                Layout::Split { naming } => {
                    let (kv, meta) = self.store.split_keys(key, naming);
                    vec![kv, meta]
                }
                _ => vec![self.store.store_key(key)],
            })
            .collect();
        let results = self.client.batched_remove(&names).map_err(|e| self.failed(&e))?;
        Ok(results.into_iter().filter(|r| matches!(r, Ok(true))).count())
    }

    /// Prints the summary (or one JSON object); fails the exit code on any error or wrong value.
    fn report(&self, elapsed: f64, hist: &Histogram<u64>, removed: usize) -> ExitCode {
        let (args, c) = (self.args, &self.counters);
        let get = |a: &AtomicU64| a.load(Relaxed);
        let (rb, wb) = (get(&c.read_bytes), get(&c.write_bytes));
        let gib = |b: u64| b as f64 / elapsed / (1u64 << 30) as f64;
        let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        let calls = get(&c.read_calls) + get(&c.write_calls);
        if args.json {
            let json = serde_json::json!({
                "target": args.target.redacted(),
                "cluster": self.client.is_cluster(),
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
                    format!("working set kept under {}", self.ns)
                } else {
                    format!("{removed} keys removed")
                }
            );
        }
        exit(get(&c.wrong) > 0 || get(&c.errors) > 0)
    }
}
