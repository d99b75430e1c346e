//! A soak run: the checked load of `load` for a chosen duration, with a fault injected midway, sampled once per
//! tick (throughput, latency percentiles, errors, resident memory). Shared by the `soak` example and its short
//! CI test.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kvcache_redis::Client;

use super::load::{Load, LoadOptions, Report, quantile, rss_bytes};

/// One sample.
#[derive(Clone, Debug)]
pub struct Tick {
    /// Time since the load started.
    pub at: Duration,
    pub ops_per_sec: f64,
    pub mib_per_sec: f64,
    pub p50_us: u32,
    pub p99_us: u32,
    /// Errors so far (all threads).
    pub errors: u64,
    pub rss_bytes: u64,
}

impl Tick {
    /// The column headings of `row`.
    pub const HEADER: &'static str = "     t      ops/s    MiB/s   p50 us    p99 us  errors  rss MiB";

    /// One line under `HEADER`.
    pub fn row(&self) -> String {
        format!(
            "{:>6.1} {:>10.0} {:>8.1} {:>8} {:>9} {:>7} {:>8}",
            self.at.as_secs_f64(),
            self.ops_per_sec,
            self.mib_per_sec,
            self.p50_us,
            self.p99_us,
            self.errors,
            self.rss_bytes >> 20
        )
    }
}

/// What a soak run saw.
pub struct Soak {
    pub report: Report,
    pub ticks: Vec<Tick>,
    /// When the fault was injected, relative to the start.
    pub fault_at: Option<Duration>,
}

impl Soak {
    /// The largest resident size after `warmup`, minus the resident size at the end of warm-up.
    pub fn rss_growth_after(&self, warmup: Duration) -> i64 {
        let base = self
            .ticks
            .iter()
            .find(|t| t.at >= warmup)
            .map_or(0, |t| t.rss_bytes as i64);
        let top = self
            .ticks
            .iter()
            .filter(|t| t.at >= warmup)
            .map(|t| t.rss_bytes as i64)
            .max()
            .unwrap_or(base);
        top - base
    }
}

/// How long to run, how often to sample, and when to inject the fault.
pub struct Plan {
    pub duration: Duration,
    pub tick: Duration,
    pub fault_at: Option<Duration>,
    /// A call slower than this counts as hung.
    pub hang_bound: Duration,
}

/// Runs `opts` on `client` as planned, calls `fault` once at `plan.fault_at` (if given), and `on_tick` once per
/// tick.
pub fn run(
    client: Arc<Client>,
    opts: LoadOptions,
    plan: Plan,
    mut fault: impl FnMut(),
    mut on_tick: impl FnMut(&Tick),
) -> Soak {
    let Plan {
        duration,
        tick,
        fault_at,
        hang_bound,
    } = plan;
    let load = Load::start(client, opts, hang_bound);
    let mut ticks = Vec::new();
    let mut injected = None;
    let (mut last_ops, mut last_bytes, mut last_at) = (0u64, 0u64, Duration::ZERO);
    while last_at < duration {
        let next = (last_at + tick).min(duration);
        let at_fault = fault_at.filter(|f| injected.is_none() && *f <= next);
        std::thread::sleep(at_fault.unwrap_or(next).saturating_sub(load.now()));
        if let Some(f) = at_fault {
            injected = Some(load.now().max(f));
            fault();
            continue;
        }
        let at = load.now();
        let ops = load.progress.load(Ordering::Relaxed);
        let bytes = load.bytes.load(Ordering::Relaxed);
        let errors = load.errors.load(Ordering::Relaxed);
        let mut lat = load.take_latencies();
        lat.sort_unstable();
        let secs = (at - last_at).as_secs_f64().max(1e-9);
        let t = Tick {
            at,
            ops_per_sec: (ops - last_ops) as f64 / secs,
            mib_per_sec: (bytes - last_bytes) as f64 / secs / (1 << 20) as f64,
            p50_us: quantile(&lat, 0.5),
            p99_us: quantile(&lat, 0.99),
            errors,
            rss_bytes: rss_bytes(),
        };
        on_tick(&t);
        ticks.push(t);
        (last_ops, last_bytes, last_at) = (ops, bytes, at);
    }
    Soak {
        report: load.finish(),
        ticks,
        fault_at: injected,
    }
}
