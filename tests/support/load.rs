//! A checked load: caller threads doing mixed puts and gets on keys they own, every value checked byte for byte.
//!
//! Each value names its key and its version, and its filler is derived from both, so a value returned for the
//! wrong key, a stale or future version, a truncated or shifted value, or foreign bytes are all told apart.
//! A thread knows the last version it had acknowledged for each of its keys (`acked`) and the newest it ever
//! tried (`tried`; a failed put may still have landed):
//! - `wrong`: bytes that are not a valid value of that key, or a version never written: never allowed;
//! - `stale`: a valid value older than `acked` (an acknowledged write lost, e.g. to a failover);
//! - `lost`: a miss for a key with an acknowledged write (e.g. data gone with a restarted server).
//!
//! Errors are grouped by the key's group (its shard, for Cluster tests), with their times, so a test can tell
//! which shards saw errors, when the last one was, and that requests succeeded after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvcache_redis::{Client, Error};
use parking_lot::Mutex;

/// Makes key `i` of thread `t`.
pub type KeyFn = Arc<dyn Fn(usize, usize) -> String + Send + Sync>;
/// The group of a key.
pub type GroupFn = Arc<dyn Fn(&[u8]) -> usize + Send + Sync>;

/// What to run.
#[derive(Clone)]
pub struct LoadOptions {
    pub threads: usize,
    pub keys_per_thread: usize,
    /// Value sizes; key `i` of a thread has size `sizes[i % sizes.len()]`.
    pub sizes: Vec<usize>,
    /// Keys per batched call.
    pub batch: usize,
    pub prefix: String,
    /// Makes key `i` of thread `t` (default `{prefix}t{t}:k{i}`); a test uses it to pin keys to a slot.
    pub key: Option<KeyFn>,
    /// The group of a key (its shard); every key is in group 0 by default.
    pub group: Option<GroupFn>,
    pub groups: usize,
    /// Pause between rounds, so a load can be light.
    pub pause: Duration,
    /// A single-key call slower than this is counted in its group's `slow`.
    pub slow: Duration,
    /// Threads whose keys are all in one group: `pinned[t] = Some(g)` (threads past its end use keys anywhere).
    pub pinned: Vec<Option<usize>>,
    /// Record when each successful key operation completed (`GroupReport::oks`); grows with the load, so off for
    /// long runs.
    pub track_oks: bool,
    /// Keep each call's latency for `Load::take_latencies` (up to 2^20 between takes); off for runs that never take
    /// them.
    pub record_latencies: bool,
    /// Every put of a key writes the same bytes (a KV cache's keys are content-addressed): a read can miss, never be
    /// stale, so replicas can be read from.
    pub content_addressed: bool,
}

impl LoadOptions {
    pub fn new(prefix: &str) -> LoadOptions {
        LoadOptions {
            threads: 4,
            keys_per_thread: 48,
            sizes: vec![100, 4 << 10, 64 << 10, 300 << 10],
            batch: 8,
            prefix: prefix.to_string(),
            key: None,
            group: None,
            groups: 1,
            pause: Duration::ZERO,
            slow: Duration::from_millis(250),
            pinned: Vec::new(),
            track_oks: false,
            record_latencies: true,
            content_addressed: false,
        }
    }
}

/// Errors of one group.
#[derive(Clone, Debug, Default)]
pub struct GroupReport {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<Duration>,
    pub last_error: Option<Duration>,
    pub last_ok: Option<Duration>,
    /// Single-key calls of this group that took longer than `LoadOptions::slow`.
    pub slow: u64,
    /// The slowest call whose keys were all in this group (single or batched), and when it started.
    pub slowest: Duration,
    pub slowest_at: Duration,
    /// When each successful key operation of this group completed (with `LoadOptions::track_oks`, up to 200 000).
    pub oks: Vec<Duration>,
    /// A few error messages, for the assertion messages, and the last one.
    pub samples: Vec<String>,
    pub last_sample: Option<String>,
}

/// The outcome of a load.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub calls: u64,
    pub key_ops: u64,
    pub bytes: u64,
    pub wrong: u64,
    pub stale: u64,
    pub lost: u64,
    /// For each stale or lost read (up to 10 000): when the write it missed had been acknowledged, relative to the
    /// start of the load. Writes acknowledged before a fault may be lost with it; later ones never.
    pub losses: Vec<Duration>,
    /// Calls that took longer than the hang bound.
    pub hung: u64,
    pub max_call: Duration,
    pub groups: Vec<GroupReport>,
    pub wrong_samples: Vec<String>,
    /// The first stale reads of each thread (up to 5): the key, when it was read, the version read, the version
    /// acknowledged and when.
    pub stale_samples: Vec<String>,
    /// Errors that were not of a typed, expected kind (protocol errors, `WorkerLost`, ...).
    pub untyped: Vec<String>,
    /// Key errors counted by when their call started (in `ERROR_BUCKET`s since the start) and kind (`error_kind`):
    /// small however long the run.
    pub error_log: ErrorLog,
}

impl GroupReport {
    /// When the first key operation that succeeded at or after `t` completed.
    pub fn first_ok_after(&self, t: Duration) -> Option<Duration> {
        self.oks.iter().filter(|at| **at >= t).min().copied()
    }
}

impl Report {
    pub fn errors(&self) -> u64 {
        self.groups.iter().map(|g| g.errors).sum()
    }

    /// The last error of any group, relative to the start of the load.
    pub fn last_error(&self) -> Option<Duration> {
        self.groups.iter().filter_map(|g| g.last_error).max()
    }

    fn merge(&mut self, other: Report) {
        self.calls += other.calls;
        self.key_ops += other.key_ops;
        self.bytes += other.bytes;
        self.wrong += other.wrong;
        self.stale += other.stale;
        self.lost += other.lost;
        self.losses.extend(other.losses);
        self.hung += other.hung;
        self.max_call = self.max_call.max(other.max_call);
        self.wrong_samples.extend(other.wrong_samples);
        self.stale_samples.extend(other.stale_samples);
        self.untyped.extend(other.untyped);
        for (k, n) in other.error_log {
            *self.error_log.entry(k).or_default() += n;
        }
        self.groups
            .resize(self.groups.len().max(other.groups.len()), GroupReport::default());
        for (mine, theirs) in self.groups.iter_mut().zip(other.groups) {
            mine.ok += theirs.ok;
            mine.errors += theirs.errors;
            mine.first_error = min_opt(mine.first_error, theirs.first_error);
            if theirs.last_error > mine.last_error {
                mine.last_error = theirs.last_error;
                mine.last_sample = theirs.last_sample;
            }
            mine.last_ok = mine.last_ok.max(theirs.last_ok);
            mine.slow += theirs.slow;
            if theirs.slowest > mine.slowest {
                mine.slowest = theirs.slowest;
                mine.slowest_at = theirs.slowest_at;
            }
            mine.oks.extend(theirs.oks);
            if mine.samples.len() < 5 {
                mine.samples
                    .extend(theirs.samples.into_iter().take(5 - mine.samples.len()));
            }
        }
    }
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A running load; `finish` stops it and returns the report.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Report>>,
    pub started: Instant,
    /// Successful key operations so far, all threads.
    pub progress: Arc<AtomicU64>,
    /// Value bytes written and read so far, all threads.
    pub bytes: Arc<AtomicU64>,
    /// Key errors so far, all threads.
    pub errors: Arc<AtomicU64>,
    /// Call latencies (microseconds) since the last `take_latencies`.
    latencies: Arc<Mutex<Vec<u32>>>,
}

impl Load {
    /// Writes every key once (retrying until `setup_deadline`), then starts the threads. `hang_bound` is the
    /// longest a call may take before it counts as hung.
    pub fn start(client: Arc<Client>, opts: LoadOptions, hang_bound: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let mut states: Vec<ThreadState> = (0..opts.threads)
            .map(|t| ThreadState::new(t, &opts, client.clone(), started, hang_bound))
            .collect();
        for s in &mut states {
            s.fill();
        }
        let threads = states
            .into_iter()
            .map(|mut s| {
                let (stop, progress, latencies) = (stop.clone(), progress.clone(), latencies.clone());
                let (bytes, errors) = (bytes.clone(), errors.clone());
                std::thread::spawn(move || {
                    let mut round = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let before = (s.report.key_ops, s.report.bytes, s.report.errors());
                        let failed = s.round(round, &latencies);
                        progress.fetch_add(s.report.key_ops - before.0, Ordering::Relaxed);
                        bytes.fetch_add(s.report.bytes - before.1, Ordering::Relaxed);
                        errors.fetch_add(s.report.errors() - before.2, Ordering::Relaxed);
                        round += 1;
                        if failed {
                            std::thread::sleep(Duration::from_millis(5));
                        } else if !s.opts.pause.is_zero() {
                            std::thread::sleep(s.opts.pause);
                        }
                    }
                    s.report
                })
            })
            .collect();
        Load {
            stop,
            threads,
            started,
            progress,
            bytes,
            errors,
            latencies,
        }
    }

    /// Time since the load started.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn take_latencies(&self) -> Vec<u32> {
        std::mem::take(&mut *self.latencies.lock())
    }

    /// Runs until `ok` holds or `limit` passes; returns whether it held.
    pub fn run_until(&self, limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = Report::default();
        for t in self.threads {
            report.merge(t.join().expect("load thread panicked"));
        }
        report
    }
}

struct ThreadState {
    t: usize,
    opts: LoadOptions,
    client: Arc<Client>,
    keys: Vec<String>,
    groups: Vec<usize>,
    acked: Vec<u64>,
    /// When the write of `acked` was acknowledged.
    acked_at: Vec<Duration>,
    tried: Vec<u64>,
    started: Instant,
    hang_bound: Duration,
    report: Report,
}

impl ThreadState {
    fn new(t: usize, opts: &LoadOptions, client: Arc<Client>, started: Instant, hang_bound: Duration) -> Self {
        let name = |i: usize| match &opts.key {
            Some(f) => f(t, i),
            None => format!("{}t{t}:k{i}", opts.prefix),
        };
        let keys: Vec<String> = match (opts.pinned.get(t).copied().flatten(), &opts.group) {
            (Some(g), Some(group)) => (0..)
                .map(name)
                .filter(|k| group(k.as_bytes()) == g)
                .take(opts.keys_per_thread)
                .collect(),
            _ => (0..opts.keys_per_thread).map(name).collect(),
        };
        let groups = keys
            .iter()
            .map(|k| opts.group.as_ref().map_or(0, |g| g(k.as_bytes())))
            .collect();
        ThreadState {
            t,
            opts: opts.clone(),
            client,
            acked: vec![0; keys.len()],
            acked_at: vec![Duration::ZERO; keys.len()],
            tried: vec![0; keys.len()],
            keys,
            groups,
            started,
            hang_bound,
            report: Report {
                groups: vec![GroupReport::default(); opts.groups],
                ..Report::default()
            },
        }
    }

    /// Writes every key once before the load starts.
    fn fill(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for i in 0..self.keys.len() {
            loop {
                let v = self.next_version(i);
                self.tried[i] = v;
                match self.client.put(&self.keys[i], encode(&self.keys[i], v, self.size(i))) {
                    Ok(()) => {
                        self.acked[i] = v;
                        self.acked_at[i] = self.started.elapsed();
                        break;
                    }
                    Err(e) => {
                        assert!(Instant::now() < deadline, "could not write {}: {e}", self.keys[i]);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    }

    /// The version the next put of key `i` writes.
    fn next_version(&self, i: usize) -> u64 {
        if self.opts.content_addressed {
            1
        } else {
            self.tried[i] + 1
        }
    }

    fn size(&self, i: usize) -> usize {
        self.opts.sizes[i % self.opts.sizes.len()]
    }

    /// One round: a batched put (every other round), a batched get, a single get, a single put. Returns whether
    /// anything failed.
    fn round(&mut self, round: usize, latencies: &Mutex<Vec<u32>>) -> bool {
        let n = self.keys.len();
        let batch: Vec<usize> = (0..self.opts.batch.min(n))
            .map(|j| (round * self.opts.batch + j + self.t) % n)
            .collect();
        let mut failed = false;
        if round.is_multiple_of(2) {
            let keys: Vec<&str> = batch.iter().map(|&i| self.keys[i].as_str()).collect();
            let versions: Vec<u64> = batch.iter().map(|&i| self.next_version(i)).collect();
            let values: Vec<Vec<u8>> = batch
                .iter()
                .zip(&versions)
                .map(|(&i, &v)| encode(&self.keys[i], v, self.size(i)))
                .collect();
            for (&i, &v) in batch.iter().zip(&versions) {
                self.tried[i] = v;
            }
            let t0 = Instant::now();
            let result = self.client.batched_put(&keys, values);
            let (start, took) = self.timed(t0, latencies);
            self.call_of(&batch, took);
            match result {
                Ok(per_key) => {
                    for ((&i, &v), r) in batch.iter().zip(&versions).zip(per_key) {
                        match r {
                            Ok(()) => {
                                self.acked[i] = v;
                                self.acked_at[i] = start + took;
                                self.ok(i, start + took, self.size(i));
                            }
                            Err(e) => failed |= self.error(i, start, &e),
                        }
                    }
                }
                Err(e) => {
                    for &i in &batch {
                        failed |= self.error(i, start, &e);
                    }
                }
            }
        }
        let keys: Vec<&str> = batch.iter().map(|&i| self.keys[i].as_str()).collect();
        let t0 = Instant::now();
        let result = self.client.batched_get(&keys);
        let (start, took) = self.timed(t0, latencies);
        self.call_of(&batch, took);
        match result {
            Ok(per_key) => {
                for (&i, r) in batch.iter().zip(per_key) {
                    failed |= self.check(i, r, start, took);
                }
            }
            Err(e) => {
                for &i in &batch {
                    failed |= self.error(i, start, &e);
                }
            }
        }
        let i = (round * 7 + self.t) % n;
        let t0 = Instant::now();
        let r = self.client.get(&self.keys[i]);
        let (start, took) = self.timed(t0, latencies);
        self.single(i, took);
        failed |= self.check(i, r, start, took);
        let i = (round * 13 + 5 + self.t) % n;
        let v = self.next_version(i);
        self.tried[i] = v;
        let t0 = Instant::now();
        let r = self.client.put(&self.keys[i], encode(&self.keys[i], v, self.size(i)));
        let (start, took) = self.timed(t0, latencies);
        self.single(i, took);
        match r {
            Ok(()) => {
                self.acked[i] = v;
                self.acked_at[i] = start + took;
                self.ok(i, start + took, self.size(i));
            }
            Err(e) => failed |= self.error(i, start, &e),
        }
        failed
    }

    /// Records a call's latency; returns its start (relative to the load's start) and duration.
    fn timed(&mut self, t0: Instant, latencies: &Mutex<Vec<u32>>) -> (Duration, Duration) {
        let took = t0.elapsed();
        self.report.calls += 1;
        self.report.max_call = self.report.max_call.max(took);
        if took > self.hang_bound {
            self.report.hung += 1;
        }
        if self.opts.record_latencies {
            let mut l = latencies.lock();
            if l.len() < 1 << 20 {
                l.push(took.as_micros().min(u32::MAX as u128) as u32);
            }
        }
        (t0.duration_since(self.started), took)
    }

    fn single(&mut self, i: usize, took: Duration) {
        self.call_of(&[i], took);
        if took > self.opts.slow {
            self.report.groups[self.groups[i]].slow += 1;
        }
    }

    /// Records a call's duration against its group when all its keys are in one.
    fn call_of(&mut self, keys: &[usize], took: Duration) {
        let g = self.groups[keys[0]];
        if keys.iter().all(|&i| self.groups[i] == g) {
            let at = self.started.elapsed().saturating_sub(took);
            let g = &mut self.report.groups[g];
            if took > g.slowest {
                g.slowest = took;
                g.slowest_at = at;
            }
        }
    }

    fn loss(&mut self, i: usize) {
        if self.report.losses.len() < 10_000 {
            self.report.losses.push(self.acked_at[i]);
        }
    }

    fn ok(&mut self, i: usize, at: Duration, bytes: usize) {
        self.report.key_ops += 1;
        self.report.bytes += bytes as u64;
        let g = &mut self.report.groups[self.groups[i]];
        g.ok += 1;
        g.last_ok = g.last_ok.max(Some(at));
        if self.opts.track_oks && g.oks.len() < 200_000 {
            g.oks.push(at);
        }
    }

    /// Records an error of key `i`; returns true.
    fn error(&mut self, i: usize, at: Duration, e: &Error) -> bool {
        let typed = e.is_timeout()
            || e.is_io()
            || e.server_code().is_some()
            || matches!(
                e,
                Error::TooManyRedirects { .. } | Error::Topology(_) | Error::Overloaded(_)
            );
        if !typed && self.report.untyped.len() < 10 {
            self.report.untyped.push(format!("{}: {e:?}", self.keys[i]));
        }
        log_error(&mut self.report.error_log, at, e);
        let g = &mut self.report.groups[self.groups[i]];
        g.errors += 1;
        g.first_error = min_opt(g.first_error, Some(at));
        g.last_error = g.last_error.max(Some(at));
        let sample = format!("{} at {at:?}: {e}", self.keys[i]);
        if g.samples.len() < 5 {
            g.samples.push(sample.clone());
        }
        if g.last_error == Some(at) {
            g.last_sample = Some(sample);
        }
        true
    }

    /// Checks a read of key `i`; returns whether it failed.
    fn check(
        &mut self,
        i: usize,
        r: kvcache_redis::Result<Option<bytes::Bytes>>,
        start: Duration,
        took: Duration,
    ) -> bool {
        match r {
            Err(e) => self.error(i, start, &e),
            Ok(None) => {
                if self.acked[i] > 0 {
                    self.report.lost += 1;
                    self.loss(i);
                    // Counted once: the write is gone, later reads of the key expect nothing of it.
                    self.acked[i] = 0;
                }
                self.ok(i, start + took, 0);
                false
            }
            Ok(Some(v)) => {
                match decode(&self.keys[i], &v) {
                    Err(why) => self.wrong(i, why),
                    Ok(version) if version > self.tried[i] => self.wrong(
                        i,
                        format!("version {version} was never written (newest {})", self.tried[i]),
                    ),
                    Ok(version) if version < self.acked[i] => {
                        self.report.stale += 1;
                        if self.report.stale_samples.len() < 5 {
                            self.report.stale_samples.push(format!(
                                "{} read at {:.3} s: version {version}, version {} acknowledged at {:.3} s",
                                self.keys[i],
                                (start + took).as_secs_f64(),
                                self.acked[i],
                                self.acked_at[i].as_secs_f64()
                            ));
                        }
                        self.loss(i);
                        self.acked[i] = version;
                    }
                    Ok(_) => {}
                }
                self.ok(i, start + took, v.len());
                false
            }
        }
    }

    fn wrong(&mut self, i: usize, why: String) {
        self.report.wrong += 1;
        if self.report.wrong_samples.len() < 10 {
            self.report.wrong_samples.push(format!("{}: {why}", self.keys[i]));
        }
    }
}

/// Errors counted by `(time bucket, kind)`; see `log_error`.
pub type ErrorLog = std::collections::BTreeMap<(u32, &'static str), u64>;

/// The resolution of an `ErrorLog`.
pub const ERROR_BUCKET: Duration = Duration::from_millis(100);

/// Counts an error whose call started at `at` (since the start of the load).
pub fn log_error(log: &mut ErrorLog, at: Duration, e: &Error) {
    let bucket = (at.as_millis() / ERROR_BUCKET.as_millis()) as u32;
    *log.entry((bucket, error_kind(e))).or_default() += 1;
}

/// A short name for an error's kind: `timeout`, `io`, the server's code (`OOM`, `CLUSTERDOWN`, `WRONGPASS`, ...),
/// or the client's own kind. Server codes are interned, so a long log of kinds holds no strings of its own.
pub fn error_kind(e: &Error) -> &'static str {
    static CODES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    if e.is_timeout() {
        return "timeout";
    }
    if e.is_io() {
        return "io";
    }
    if let Some(code) = e.server_code() {
        let mut codes = CODES.lock();
        if let Some(known) = codes.iter().find(|c| **c == code) {
            return known;
        }
        let code: &'static str = Box::leak(code.to_string().into_boxed_str());
        codes.push(code);
        return code;
    }
    match e {
        Error::TooManyRedirects { .. } => "too-many-redirects",
        Error::Topology(_) => "topology",
        Error::Overloaded(_) => "overloaded",
        Error::Closed => "closed",
        Error::Protocol { .. } => "protocol",
        Error::WorkerLost => "worker-lost",
        Error::Tls { .. } => "tls",
        Error::NotReplicated { .. } => "not-replicated",
        Error::Interrupted => "interrupted",
        _ => "other",
    }
}

fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A 251-byte pattern (a prime length, so shifts show) derived from the key and version.
fn pattern(hash: u64, version: u64) -> [u8; 251] {
    let mut x = hash ^ version.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut p = [0u8; 251];
    for b in &mut p {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    p
}

/// A value of `len` bytes (at least 24) for `key` at `version`.
pub fn encode(key: &str, version: u64, len: usize) -> Vec<u8> {
    let len = len.max(24);
    let hash = key_hash(key);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&hash.to_le_bytes());
    v.extend_from_slice(&(len as u64).to_le_bytes());
    let p = pattern(hash, version);
    while v.len() < len {
        let n = (len - v.len()).min(p.len());
        v.extend_from_slice(&p[..n]);
    }
    v
}

/// The version of a valid value of `key`, or why it is not one.
pub fn decode(key: &str, v: &[u8]) -> Result<u64, String> {
    if v.len() < 24 {
        return Err(format!("{} bytes, shorter than a header", v.len()));
    }
    let word = |i: usize| u64::from_le_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
    let (version, hash, len) = (word(0), word(1), word(2));
    if hash != key_hash(key) {
        return Err("the value of another key".into());
    }
    if len != v.len() as u64 {
        return Err(format!("{} bytes, its header says {len}", v.len()));
    }
    let p = pattern(hash, version);
    for (n, chunk) in v[24..].chunks(p.len()).enumerate() {
        if chunk != &p[..chunk.len()] {
            return Err(format!("filler differs in block {n}"));
        }
    }
    Ok(version)
}

/// This process's resident set size in bytes (Linux).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The `q` quantile (0..=1) of latencies in microseconds.
pub fn quantile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
