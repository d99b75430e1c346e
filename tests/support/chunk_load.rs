//! A checked chunk load: caller threads storing and reading KV-cache chunks through a `ChunkStore` in each layout
//! (framed, raw, and the split layout in its three namings), at every priority, by every read path (batched get,
//! non-blocking get, reads into caller buffers, contains), and from replicas through a second client.
//!
//! Chunks are content-addressed, as LMCache's are: a chunk key always holds the same payload and metadata, both
//! derived from the key (the payload names its key, as `load::encode` values do; the metadata's shape names the
//! thread, the chunk and the payload length). So a chunk read is checked whole:
//! - `wrong`: a payload that is not this key's (another key's, a mix, a truncation, foreign bytes);
//! - `torn`: this key's payload with metadata that is not its own (the split layout's two keys from different
//!   chunks);
//! - `lost`: a miss (or a `contains` prefix short of it) for a chunk whose write was acknowledged, read from a
//!   primary; counted once, with when the write was acknowledged. A miss read from a replica is `replica_misses`
//!   (replication is asynchronous), never a loss.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvcache_redis::{Chunk, ChunkKey, ChunkMeta, ChunkStore, Client, Dtype, Error, Layout, MemoryFormat, Priority};

use super::load::{ErrorLog, decode, encode, log_error};

/// What one layout's threads saw.
#[derive(Clone, Debug, Default)]
pub struct ChunkReport {
    pub calls: u64,
    pub chunks_read: u64,
    pub chunks_written: u64,
    pub replica_reads: u64,
    pub replica_misses: u64,
    pub wrong: u64,
    pub torn: u64,
    pub lost: u64,
    /// For each lost chunk: when its write had been acknowledged (load clock).
    pub losses: Vec<Duration>,
    /// Calls that took longer than the hang bound (a non-blocking get that had not resolved by then included).
    pub hung: u64,
    pub max_call: Duration,
    pub errors: u64,
    /// Errors counted by when their call started and kind (`load::log_error`).
    pub error_log: ErrorLog,
    pub samples: Vec<String>,
    /// Errors that were not of a typed, expected kind.
    pub untyped: Vec<String>,
}

impl ChunkReport {
    fn merge(&mut self, o: ChunkReport) {
        self.calls += o.calls;
        self.chunks_read += o.chunks_read;
        self.chunks_written += o.chunks_written;
        self.replica_reads += o.replica_reads;
        self.replica_misses += o.replica_misses;
        self.wrong += o.wrong;
        self.torn += o.torn;
        self.lost += o.lost;
        self.losses.extend(o.losses);
        self.hung += o.hung;
        self.max_call = self.max_call.max(o.max_call);
        self.errors += o.errors;
        for (k, n) in o.error_log {
            *self.error_log.entry(k).or_default() += n;
        }
        self.samples
            .extend(o.samples.into_iter().take(10usize.saturating_sub(self.samples.len())));
        self.untyped
            .extend(o.untyped.into_iter().take(10usize.saturating_sub(self.untyped.len())));
    }
}

/// The layouts a chunk load covers, one thread each.
pub fn all_layouts() -> Vec<(String, Layout)> {
    use kvcache_redis::SplitNaming::*;
    vec![
        ("framed".into(), Layout::Framed),
        ("raw".into(), Layout::Raw { size: RAW_SIZE }),
        ("split-tagged".into(), Layout::Split { naming: HashTagged }),
        ("split-plain".into(), Layout::Split { naming: Plain }),
        ("split-colon".into(), Layout::Split { naming: Colon }),
    ]
}

const RAW_SIZE: usize = 48 << 10;
const KEYS: usize = 24;
const BATCH: usize = 6;

/// A running chunk load.
pub struct ChunkLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<ChunkReport>)>,
}

impl ChunkLoad {
    /// One thread per layout, writing through `client` and reading from replicas through `replicas`. Calls use
    /// the clients' request timeout; `hang_bound` is the longest one may take.
    pub fn start(
        client: &Client,
        replicas: &Client,
        namespace: &str,
        started: Instant,
        hang_bound: Duration,
    ) -> ChunkLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = all_layouts()
            .into_iter()
            .enumerate()
            .map(|(t, (name, layout))| {
                let ns = format!("{namespace}{name}:");
                let store = ChunkStore::new(client.clone(), layout).with_namespace(ns.clone());
                let replica_store = ChunkStore::new(replicas.clone(), layout).with_namespace(ns);
                let mut th = ChunkThread::new(t, store, replica_store, started, hang_bound);
                th.fill();
                let stop = stop.clone();
                let handle = std::thread::spawn(move || {
                    let mut round = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        if th.round(round) {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        round += 1;
                    }
                    th.report
                });
                (name, handle)
            })
            .collect();
        ChunkLoad { stop, threads }
    }

    /// Stops the threads; each layout's report, and all of them merged.
    pub fn finish(self) -> (Vec<(String, ChunkReport)>, ChunkReport) {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = ChunkReport::default();
        let mut each = Vec::new();
        for (name, t) in self.threads {
            let r = t.join().expect("chunk load thread panicked");
            all.merge(r.clone());
            each.push((name, r));
        }
        (each, all)
    }
}

struct ChunkThread {
    t: usize,
    store: ChunkStore,
    replica_store: ChunkStore,
    keys: Vec<ChunkKey>,
    /// When each chunk's last write was acknowledged (`None`: never, or its loss already counted).
    acked: Vec<Option<Duration>>,
    started: Instant,
    hang_bound: Duration,
    rng: u64,
    report: ChunkReport,
}

impl ChunkThread {
    fn new(t: usize, store: ChunkStore, replica_store: ChunkStore, started: Instant, hang_bound: Duration) -> Self {
        let keys = (0..KEYS)
            .map(|i| {
                let hash = format!("{:x}", 0xc4a0_5000_u64 + (t * 1000 + i) as u64);
                ChunkKey::new("chaos/model-8b", 2, (i % 2) as u32, &hash, Dtype::Bfloat16).expect("chunk key")
            })
            .collect();
        ChunkThread {
            t,
            store,
            replica_store,
            keys,
            acked: vec![None; KEYS],
            started,
            hang_bound,
            rng: 0x9e37_79b9 + t as u64,
            report: ChunkReport::default(),
        }
    }

    fn len_of(&self, i: usize) -> usize {
        match self.store.layout() {
            Layout::Raw { size } => size,
            _ => [2 << 10, 16 << 10, 96 << 10, 256 << 10][i % 4],
        }
    }

    fn label(&self, i: usize) -> String {
        self.store.store_key(&self.keys[i])
    }

    fn payload(&self, i: usize) -> Vec<u8> {
        encode(&self.label(i), 1, self.len_of(i))
    }

    /// The metadata of chunk `i`: the same for every chunk of its size class (a batched put gives one metadata for
    /// all its chunks), different between classes and threads.
    fn meta(&self, i: usize) -> Option<ChunkMeta> {
        match self.store.layout() {
            Layout::Raw { .. } => None,
            _ => Some(
                ChunkMeta::new(
                    MemoryFormat::Kv2Ltd,
                    Dtype::Bfloat16,
                    &[self.t as u32 + 1, (i % 4) as u32 + 1, (self.len_of(i) / 2) as u32, 7],
                )
                .expect("chunk meta"),
            ),
        }
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn priority(&mut self) -> Priority {
        Priority::ALL[(self.next() % 4) as usize]
    }

    fn fill(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.acked.iter().any(Option::is_none) {
            for class in 0..4 {
                let which: Vec<usize> = (class..KEYS).step_by(4).collect();
                self.put(&which, Priority::Put);
            }
            assert!(
                Instant::now() < deadline,
                "could not write the chunks: {:?}",
                self.report.samples
            );
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Times a call (`what`, for the report); returns its start on the load clock.
    fn timed<T>(&mut self, what: &str, f: impl FnOnce(&Self) -> T) -> (T, Duration) {
        let t0 = Instant::now();
        let out = f(self);
        let took = t0.elapsed();
        self.report.calls += 1;
        self.report.max_call = self.report.max_call.max(took);
        if took > self.hang_bound {
            self.report.hung += 1;
            let at = t0.duration_since(self.started);
            self.sample(format!("{what} took {took:?} (started at {at:?})"));
        }
        (out, t0.duration_since(self.started))
    }

    fn error(&mut self, at: Duration, what: &str, e: &Error) {
        self.report.errors += 1;
        let typed = e.is_timeout()
            || e.is_io()
            || e.server_code().is_some()
            || matches!(
                e,
                Error::TooManyRedirects { .. } | Error::Topology(_) | Error::Overloaded(_)
            );
        if !typed && self.report.untyped.len() < 10 {
            self.report.untyped.push(format!("{what}: {e:?}"));
        }
        log_error(&mut self.report.error_log, at, e);
        if self.report.samples.len() < 10 {
            self.report.samples.push(format!("{what} at {at:?}: {e}"));
        }
    }

    fn put(&mut self, which: &[usize], p: Priority) {
        let keys: Vec<ChunkKey> = which.iter().map(|&i| self.keys[i].clone()).collect();
        let payloads: Vec<bytes::Bytes> = which.iter().map(|&i| self.payload(i).into()).collect();
        // One size class per put: its chunks share their metadata.
        debug_assert!(which.iter().all(|&i| i % 4 == which[0] % 4));
        let meta = self.meta(which[0]);
        let store = self.store.with_priority(p);
        let (r, at) = self.timed("chunk put", |_| store.batched_put(&keys, payloads, meta));
        let done = self.now();
        match r {
            Ok(per) => {
                for (&i, r) in which.iter().zip(per) {
                    match r {
                        Ok(()) => {
                            self.acked[i] = Some(done);
                            self.report.chunks_written += 1;
                        }
                        Err(e) => self.error(at, "chunk put", &e),
                    }
                }
            }
            Err(e) => self.error(at, "chunk put", &e),
        }
    }

    /// Checks chunk `i` as read; `replica`: read from a replica (a miss is no loss).
    fn check(&mut self, i: usize, read: Option<&Chunk>, replica: bool) {
        self.report.chunks_read += 1;
        match read {
            None if replica => self.report.replica_misses += 1,
            None => self.lost(i),
            Some(c) => {
                if c.payload.as_ref() != self.payload(i).as_slice() {
                    self.wrong(i, format!("payload: {:?}", decode(&self.label(i), &c.payload)));
                } else if c.meta != self.meta(i) {
                    self.report.torn += 1;
                    self.sample(format!("torn {}: metadata {:?}", self.label(i), c.meta));
                }
            }
        }
    }

    fn lost(&mut self, i: usize) {
        if let Some(at) = self.acked[i].take() {
            self.report.lost += 1;
            self.report.losses.push(at);
        }
    }

    fn wrong(&mut self, i: usize, why: String) {
        self.report.wrong += 1;
        self.sample(format!("wrong {}: {why}", self.label(i)));
    }

    fn sample(&mut self, s: String) {
        if self.report.samples.len() < 10 {
            self.report.samples.push(s);
        }
    }

    /// One round of every operation; returns whether anything failed.
    fn round(&mut self, round: usize) -> bool {
        let errors = self.report.errors;
        let batch: Vec<usize> = (0..BATCH).map(|j| (round * BATCH + j) % KEYS).collect();
        let keys: Vec<ChunkKey> = batch.iter().map(|&i| self.keys[i].clone()).collect();
        if round.is_multiple_of(3) {
            let class = (round / 3) % 4;
            let which: Vec<usize> = (class..KEYS).step_by(4).collect();
            let p = self.priority();
            self.put(&which, p);
        }
        // A batched get, at a random priority.
        let p = self.priority();
        let store = self.store.with_priority(p);
        let (r, at) = self.timed("chunk get", |_| store.batched_get(&keys));
        match r {
            Ok(per) => {
                for (&i, r) in batch.iter().zip(per) {
                    match r {
                        Ok(c) => self.check(i, c.as_ref(), false),
                        Err(e) => self.error(at, "chunk get", &e),
                    }
                }
            }
            Err(e) => self.error(at, "chunk get", &e),
        }
        // Contains: the prefix of chunks present; short of an acknowledged chunk is a loss.
        let p = self.priority();
        let store = self.store.with_priority(p);
        let (r, at) = self.timed("chunk contains", |_| store.batched_contains(&keys));
        match r {
            Ok(n) if n > keys.len() => self.wrong(batch[0], format!("contains {n} of {}", keys.len())),
            Ok(n) => {
                if let Some(&i) = batch.get(n) {
                    // The first chunk reported absent: check it is, by reading it.
                    if self.acked[i].is_some() && matches!(self.store.get(&self.keys[i]), Ok(None)) {
                        self.lost(i);
                    }
                }
            }
            Err(e) => self.error(at, "chunk contains", &e),
        }
        // A non-blocking get, waited for by its deadline (plus the hang bound's slack).
        let p = self.priority();
        let mut pending = self.store.with_priority(p).batched_get_non_blocking(&keys);
        let bound = self.hang_bound;
        let (r, at) = self.timed("chunk non-blocking get", |_| {
            pending.wait_timeout(bound + Duration::from_millis(500))
        });
        match r {
            None => {
                self.report.hung += 1;
                self.sample(format!("non-blocking get unresolved after {bound:?}"));
            }
            Some(Ok(chunks)) => {
                for (&i, c) in batch.iter().zip(&chunks) {
                    self.check(i, Some(c), false);
                }
                if let Some(&i) = batch.get(chunks.len())
                    && self.acked[i].is_some()
                    && matches!(self.store.get(&self.keys[i]), Ok(None))
                {
                    self.lost(i);
                }
            }
            Some(Err(e)) => self.error(at, "chunk non-blocking get", &e),
        }
        // Reads into caller buffers (framed and raw).
        if !matches!(self.store.layout(), Layout::Split { .. }) {
            let bufs: Vec<Vec<u8>> = batch.iter().map(|&i| vec![0u8; self.len_of(i)]).collect();
            let (results, at) = self.timed("chunk get into", |s| s.store.batched_get_into(&keys, bufs));
            for (&i, fill) in batch.iter().zip(results) {
                match fill.result {
                    Ok(Some(n)) => {
                        let buf = fill.buf.expect("a buffer comes back with its result");
                        self.report.chunks_read += 1;
                        if buf[..n] != self.payload(i)[..] {
                            self.wrong(
                                i,
                                format!("read into a buffer: {:?}", decode(&self.label(i), &buf[..n])),
                            );
                        }
                    }
                    Ok(None) => self.check(i, None, false),
                    Err(e) => self.error(at, "chunk get into", &e),
                }
            }
        }
        // Reads from replicas.
        let store = self.replica_store.clone();
        let (r, at) = self.timed("replica chunk get", |_| store.batched_get(&keys));
        match r {
            Ok(per) => {
                for (&i, r) in batch.iter().zip(per) {
                    self.report.replica_reads += 1;
                    match r {
                        Ok(c) => self.check(i, c.as_ref(), true),
                        Err(e) => self.error(at, "replica chunk get", &e),
                    }
                }
            }
            Err(e) => self.error(at, "replica chunk get", &e),
        }
        self.report.errors > errors
    }
}
