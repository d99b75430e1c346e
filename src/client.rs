//! The public handle: a cheap `Clone` over the shared workers, its calls, and the handle of a non-blocking get.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use oneshot::RecvTimeoutError;
use parking_lot::{Mutex, RwLock};

use crate::budget::Budget;
use crate::config::Config;
use crate::connection::ConnectOptions;
use crate::error::{Error, Result};
use crate::pool::BufferPool;
use crate::queue::Queues;
use crate::request::{DestSlot, Fill, KeyReply, Kind, Part, Priority, ReplyReceiver, ReplySlot, SetValue};
use crate::stats::{Counters, Stats};
use crate::tls::TlsSettings;
use crate::topology::Topology;
use crate::wake::Wakeup;
use crate::worker::{self, Shared};

/// How long a caller waits past its deadline for the worker's own timeout answer before giving up on it.
pub(crate) const REPLY_GRACE: Duration = Duration::from_millis(100);

/// A blocking, batching client for a standalone Redis / Valkey server or a Cluster.
///
/// `Client` is `Clone + Send + Sync`; clones share one pool of worker threads, and calls from many threads are
/// batched together. Each call blocks the calling thread until its answer arrives or its deadline passes (see
/// [`Config::request_timeout`]); no call ever waits longer.
///
/// # Threading
/// [`Config::workers`] named threads (`kvcache-redis-worker-N`) each own one connection per node they talk to;
/// no lock is held around a socket. A call is split into parts of at most [`Config::batch_max_keys`] keys and
/// about [`Config::batch_max_bytes`] bytes, so several workers can share a large call. A worker takes what is
/// queued, from any number of callers, and sends one pipeline per node: `GET`s of one slot become one `MGET`,
/// `SET`s are pipelined, so a batch costs one round trip per node it touches.
///
/// # Priorities
/// Four levels, highest first: [`Priority::Peek`] (`exists`, `batched_contains`), [`Priority::Prefetch`]
/// (`batched_get_non_blocking`), [`Priority::Get`] (`get`, `batched_get`), [`Priority::Put`] (`put`,
/// `batched_put`, `remove`). Workers always take the highest queued level first; a level passed over for 8
/// batches in a row goes first once, so writes are never starved. Never all workers stream writes at once, and a
/// second one starts only while fewer than [`Config::write_bytes_in_flight`] bytes are being written, so a flood of
/// writes never keeps a `Peek` waiting for a worker.
/// [`Client::call`] overrides a call's priority.
///
/// # Partial failure
/// A batch does not fail as a whole because one node or one key failed: batched calls return one `Result` per
/// key. The outer `Result` is for what concerns the whole call: a closed client, invalid input, or nothing
/// answered at all (every key timed out). The prefix calls ([`batched_contains`](Client::batched_contains),
/// [`PendingGet::wait`]) stop their prefix at the first key that is missing *or* failed; a failure there is
/// logged and counted in [`Stats::prefix_failures`], and is returned as the call's error only when it is the
/// very first key (so "no prefix" and "could not tell" stay distinguishable).
///
/// # Shutdown
/// [`close`](Client::close) on any clone, or dropping the last clone, stops the workers: calls already queued
/// are still executed until [`Config::drain_timeout`] has passed, and those still queued then are answered
/// with [`Error::Closed`]. Every queued call is answered exactly once. Later calls on any clone fail at once with
/// [`Error::Closed`]; outstanding [`PendingGet`] handles resolve.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Write-locked only by close, so that nothing can be queued after the senders are dropped.
    queues: RwLock<Option<Queues>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::warn!("closing the client: {e}");
        }
    }
}

impl Inner {
    fn shutdown(&self) -> Result<()> {
        {
            // The write lock waits out every send in progress, so nothing is queued after this.
            let mut queues = self.queues.write();
            if queues.is_none() {
                return Ok(());
            }
            let _ = self
                .shared
                .drain_deadline
                .set(Instant::now() + self.shared.config.drain_timeout);
            // Dropping the queues tells the workers to finish what is queued and exit.
            *queues = None;
        }
        let workers = std::mem::take(&mut *self.workers.lock());
        let mut lost = 0;
        for w in workers {
            lost += usize::from(w.join().is_err());
        }
        match lost {
            0 => Ok(()),
            _ => Err(Error::WorkerLost),
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.shared.config)
            .field("cluster", &self.is_cluster())
            .finish()
    }
}

impl Client {
    /// Connects to the deployment at `url` (see [`Config`] for the syntax) with default settings, detecting
    /// standalone or Cluster by itself.
    ///
    /// ```no_run
    /// let client = kvcache_redis::Client::open("redis://127.0.0.1:6379")?;
    /// client.put(b"chunk-1", vec![0u8; 1 << 20])?;
    /// assert_eq!(client.get(b"chunk-1")?.map(|v| v.len()), Some(1 << 20));
    /// # Ok::<(), kvcache_redis::Error>(())
    /// ```
    pub fn open(url: &str) -> Result<Client> {
        Client::with_config(url.parse()?)
    }

    /// Connects with an explicit configuration: discovers the topology from the first seed that answers and
    /// starts the workers.
    pub fn with_config(config: Config) -> Result<Client> {
        config.validate()?;
        let tls = config.tls.as_ref().map(TlsSettings::client).transpose()?;
        let connect = ConnectOptions {
            tls,
            timeout: config.connect_timeout,
            username: config.username.clone(),
            password: config.password.clone(),
            db: config.db,
        };
        let health: Arc<crate::health::Health> = Default::default();
        let topology = Topology::discover(&config.seeds, config.mode, connect.clone(), health.clone())?;
        let shared = Arc::new(Shared {
            learned_value_size: AtomicUsize::new(config.value_size_hint),
            pool: BufferPool::new(config.buffer_pool_bytes),
            budget: Budget::new(
                config.max_queued_parts,
                config.max_queued_bytes,
                config.fail_fast_when_full,
            ),
            config,
            connect,
            topology,
            stats: Counters::default(),
            drain_deadline: OnceLock::new(),
            health,
        });
        let local = |e| Error::io("local worker thread", e);
        let wakeups: Vec<Wakeup> = (0..shared.config.workers)
            .map(|_| Wakeup::new())
            .collect::<std::io::Result<_>>()
            .map_err(local)?;
        let queues = Queues::new(
            wakeups.iter().map(Wakeup::waker).collect(),
            shared.config.write_bytes_in_flight,
        );
        let mut workers = Vec::with_capacity(wakeups.len());
        for (id, wakeup) in wakeups.into_iter().enumerate() {
            workers.push(worker::spawn(shared.clone(), queues.inbox(id), wakeup, id).map_err(local)?);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                queues: RwLock::new(Some(queues)),
                workers: Mutex::new(workers),
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// A call with per-call settings (priority, timeout, size hint, TTL):
    /// `client.call().priority(Priority::Peek).get(key)`.
    pub fn call(&self) -> Call<'_> {
        Call {
            client: self,
            priority: None,
            timeout: None,
            size_hint: None,
            ttl_secs: None,
            verify_frames: false,
        }
    }

    /// The value of `key`, or `None` when it is missing. Priority [`Priority::Get`].
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.call().get(key)
    }

    /// Stores `value` under `key` (with the configured TTL, if any). Priority [`Priority::Put`].
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<()> {
        self.call().put(key, value)
    }

    /// Whether `key` exists. Priority [`Priority::Peek`].
    pub fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.call().exists(key)
    }

    /// Deletes `key`; `true` when it existed. Priority [`Priority::Put`].
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.call().remove(key)
    }

    /// Deletes every key in one pipeline per node; one result per key, in order: `true` when it existed (a key
    /// given twice is deleted by the first). Priority [`Priority::Put`].
    pub fn batched_remove<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Result<bool>>> {
        self.call().batched_remove(keys)
    }

    /// One result per key, in the order of `keys`: `Ok(Some(value))`, `Ok(None)` when missing, or the key's
    /// error. Duplicate keys are each answered. Priority [`Priority::Get`].
    pub fn batched_get<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Result<Option<Bytes>>>> {
        self.call().batched_get(keys)
    }

    /// Stores `values[i]` under `keys[i]` with pipelined, non-transactional `SET`s; one result per key.
    /// Values cross to the workers without being copied. Priority [`Priority::Put`].
    pub fn batched_put<K, V, I>(&self, keys: &[K], values: I) -> Result<Vec<Result<()>>>
    where
        K: AsRef<[u8]>,
        V: Into<Bytes>,
        I: IntoIterator<Item = V>,
    {
        self.call().batched_put(keys, values)
    }

    /// The number of consecutive keys, from the first, that exist. Priority [`Priority::Peek`].
    pub fn batched_contains<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<usize> {
        self.call().batched_contains(keys)
    }

    /// Starts a batched get and returns at once; the handle yields the consecutive prefix of hits. Priority
    /// [`Priority::Prefetch`].
    pub fn batched_get_non_blocking<K: AsRef<[u8]>>(&self, keys: &[K]) -> PendingGet {
        self.call().batched_get_non_blocking(keys)
    }

    /// Checks that every primary answers `PING`. Priority [`Priority::Peek`].
    pub fn ping(&self) -> Result<()> {
        self.call().ping()
    }

    /// Stops the workers (see "Shutdown" above) and waits for them. Idempotent; any clone may call it.
    pub fn close(&self) -> Result<()> {
        self.inner.shutdown()
    }

    /// Whether the client talks to a Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.shared.topology.current().is_cluster()
    }

    /// The primaries the client currently routes to, `host:port`.
    pub fn primaries(&self) -> Vec<String> {
        self.inner.shared.topology.current().nodes.clone()
    }

    /// Counts a stored value that did not check out (see [`Stats::corrupt`]).
    pub(crate) fn count_corrupt(&self) {
        Counters::add(&self.inner.shared.stats.corrupt, 1);
    }

    /// A snapshot of the client's counters.
    pub fn stats(&self) -> Stats {
        let queued = self.inner.queues.read().as_ref().map_or(0, Queues::len);
        let mut stats = self.inner.shared.stats.snapshot(queued as u64);
        stats.in_flight_bytes = self.inner.shared.budget.used().1 as u64;
        stats.nodes_down = self.inner.shared.health.down_nodes();
        stats.refreshes = self.inner.shared.topology.refreshes();
        stats
    }
}

/// One call with per-call settings; every setter is optional. Built by [`Client::call`].
#[must_use = "a Call does nothing until one of its operations is invoked"]
pub struct Call<'a> {
    client: &'a Client,
    priority: Option<Priority>,
    timeout: Option<Duration>,
    size_hint: Option<usize>,
    ttl_secs: Option<Option<u64>>,
    verify_frames: bool,
}

impl Call<'_> {
    /// Reads check each value as a chunk frame while reading it (the chunk layer's framed layout).
    pub(crate) fn verify_frames(mut self) -> Self {
        self.verify_frames = true;
        self
    }

    /// Overrides the operation's default priority.
    pub fn priority(mut self, p: Priority) -> Self {
        self.priority = Some(p);
        self
    }

    /// Overrides [`Config::request_timeout`] for this call.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Expected size of each value read, to bound round trips before the client has learned it.
    pub fn size_hint(mut self, bytes: usize) -> Self {
        self.size_hint = Some(bytes);
        self
    }

    /// Overrides [`Config::ttl_secs`] for this call's writes (`None`: no expiry).
    pub fn ttl_secs(mut self, ttl: Option<u64>) -> Self {
        self.ttl_secs = Some(ttl);
        self
    }

    /// See [`Client::get`].
    pub fn get(self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let mut r = self.batched_get(&[key])?;
        r.pop().expect("one key, one result")
    }

    /// See [`Client::put`].
    pub fn put(self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<()> {
        let mut r = self.batched_put(&[key], [value])?;
        r.pop().expect("one key, one result")
    }

    /// See [`Client::exists`].
    pub fn exists(self, key: impl AsRef<[u8]>) -> Result<bool> {
        let replies = self.run(Kind::Exists, Priority::Peek, to_keys(&[key]), Vec::new())?;
        replies
            .into_iter()
            .next()
            .expect("one key, one result")
            .map(|r| r == KeyReply::Flag(true))
    }

    /// See [`Client::remove`].
    pub fn remove(self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.batched_remove(&[key])?.pop().expect("one key, one result")
    }

    /// See [`Client::batched_remove`].
    pub fn batched_remove<K: AsRef<[u8]>>(self, keys: &[K]) -> Result<Vec<Result<bool>>> {
        let replies = self.run(Kind::Del, Priority::Put, to_keys(keys), Vec::new())?;
        Ok(replies
            .into_iter()
            .map(|r| r.map(|r| r == KeyReply::Flag(true)))
            .collect())
    }

    /// Deletes each `metas[i]` only if it still holds `values[i]` and `kvs[i]` does not exist (split-layout
    /// orphans); one result per key, `true` when deleted.
    pub(crate) fn delete_orphans(
        self,
        metas: Vec<Bytes>,
        kvs: Vec<Bytes>,
        values: Vec<Bytes>,
    ) -> Result<Vec<Result<bool>>> {
        let values = kvs
            .into_iter()
            .zip(values)
            .map(|(head, body)| SetValue { head, body })
            .collect();
        let replies = self.run(Kind::DeleteOrphan, Priority::Put, metas, values)?;
        Ok(replies
            .into_iter()
            .map(|r| r.map(|r| r == KeyReply::Flag(true)))
            .collect())
    }

    /// Reads `keys[i]` straight into the buffer in `dests[i]` (checked as `fill` says); one reply per key:
    /// `Filled(len)`, `Value(None)` when missing or damaged, or the key's error.
    pub(crate) fn get_into(self, keys: Vec<Bytes>, dests: Vec<DestSlot>, fill: Fill) -> Result<Vec<Result<KeyReply>>> {
        let mut pending = self.submit_with(Kind::Get, Priority::Get, keys, Vec::new(), Some((dests, fill)))?;
        let until = pending.deadline + REPLY_GRACE;
        pending.receive(until);
        pending.into_replies()
    }

    /// See [`Client::batched_get`].
    pub fn batched_get<K: AsRef<[u8]>>(self, keys: &[K]) -> Result<Vec<Result<Option<Bytes>>>> {
        let replies = self.run(Kind::Get, Priority::Get, to_keys(keys), Vec::new())?;
        Ok(replies.into_iter().map(|r| r.map(into_value)).collect())
    }

    /// See [`Client::batched_put`].
    pub fn batched_put<K, V, I>(self, keys: &[K], values: I) -> Result<Vec<Result<()>>>
    where
        K: AsRef<[u8]>,
        V: Into<Bytes>,
        I: IntoIterator<Item = V>,
    {
        let values: Vec<SetValue> = values.into_iter().map(|v| SetValue::from(v.into())).collect();
        self.put_values(to_keys(keys), values)
    }

    /// Writes `values` (possibly in two pieces each) under `keys`; the one write path of every layout.
    pub(crate) fn put_values(self, keys: Vec<Bytes>, values: Vec<SetValue>) -> Result<Vec<Result<()>>> {
        if values.len() != keys.len() {
            return Err(Error::InvalidInput(format!(
                "{} keys but {} values",
                keys.len(),
                values.len()
            )));
        }
        let limit = self.client.inner.shared.config.max_value_bytes;
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| v.len() > limit) {
            return Err(Error::InvalidInput(format!(
                "value {i} is {} bytes, above the {limit}-byte limit (max_value_bytes)",
                v.len()
            )));
        }
        // What is written is what will be read: learn value sizes from writes too, so the first reads are
        // already shaped for them.
        for v in &values {
            self.client.inner.shared.learn_value_size(v.len());
        }
        let ttl_secs = self.ttl_secs.unwrap_or(self.client.inner.shared.config.ttl_secs);
        if ttl_secs == Some(0) {
            return Err(Error::InvalidInput("a TTL of 0 seconds would expire at once".into()));
        }
        let replies = self.run(Kind::Set { ttl_secs }, Priority::Put, keys, values)?;
        Ok(replies.into_iter().map(|r| r.map(|_| ())).collect())
    }

    /// See [`Client::batched_contains`].
    pub fn batched_contains<K: AsRef<[u8]>>(self, keys: &[K]) -> Result<usize> {
        let shared = self.client.inner.shared.clone();
        let replies = self.run(Kind::Exists, Priority::Peek, to_keys(keys), Vec::new())?;
        let prefix = prefix(&shared, replies, |r| (r == KeyReply::Flag(true)).then_some(()))?;
        Ok(prefix.len())
    }

    /// See [`Client::batched_get_non_blocking`].
    pub fn batched_get_non_blocking<K: AsRef<[u8]>>(self, keys: &[K]) -> PendingGet {
        let shared = self.client.inner.shared.clone();
        let pending = self.submit(Kind::Get, Priority::Prefetch, to_keys(keys), Vec::new());
        PendingGet {
            shared,
            pending,
            result: None,
        }
    }

    /// See [`Client::ping`].
    pub fn ping(self) -> Result<()> {
        self.run(Kind::Ping, Priority::Peek, Vec::new(), Vec::new())?
            .into_iter()
            .try_for_each(|r| r.map(|_| ()))
    }

    /// Submits and waits for every key's answer.
    fn run(
        &self,
        kind: Kind,
        default: Priority,
        keys: Vec<Bytes>,
        values: Vec<SetValue>,
    ) -> Result<Vec<Result<KeyReply>>> {
        let mut pending = self.submit(kind, default, keys, values)?;
        let until = pending.deadline + REPLY_GRACE;
        pending.receive(until);
        pending.into_replies()
    }

    /// Splits the call into parts bounded in keys and bytes and queues them.
    fn submit(&self, kind: Kind, default: Priority, keys: Vec<Bytes>, values: Vec<SetValue>) -> Result<Pending> {
        self.submit_with(kind, default, keys, values, None)
    }

    /// Like `submit`, with one destination per key for reads that fill caller buffers.
    fn submit_with(
        &self,
        kind: Kind,
        default: Priority,
        keys: Vec<Bytes>,
        values: Vec<SetValue>,
        dests: Option<(Vec<DestSlot>, Fill)>,
    ) -> Result<Pending> {
        let inner = &self.client.inner;
        let config = &inner.shared.config;
        let stats = &inner.shared.stats;
        let priority = self.priority.unwrap_or(default);
        let deadline = Instant::now() + self.timeout.unwrap_or(config.request_timeout);
        // Every key passes here, whatever the call: checked before anything is queued.
        if let Some((i, k)) = keys.iter().enumerate().find(|(_, k)| k.len() > config.max_key_bytes) {
            return Err(Error::InvalidInput(format!(
                "key {i} is {} bytes, above the {}-byte limit (max_key_bytes)",
                k.len(),
                config.max_key_bytes
            )));
        }
        // Read lock held while queueing: close takes the write lock, so nothing is queued after it.
        if inner.queues.read().is_none() {
            return Err(Error::Closed);
        }
        Counters::add(&stats.requests[priority.index()], 1);
        let expected = self
            .size_hint
            .unwrap_or_else(|| inner.shared.expected_value_size())
            .max(1);
        let mut pending = Pending {
            parts: Vec::new(),
            deadline,
            started: Instant::now(),
            priority,
            shared: inner.shared.clone(),
        };
        if keys.is_empty() && kind != Kind::Ping {
            return Ok(pending);
        }
        let mut keys = keys.into_iter();
        let mut values = values.into_iter();
        let fill = dests.as_ref().map(|(_, fill)| *fill);
        let mut dests = dests.map(|(d, _)| d.into_iter());
        loop {
            let (mut part_keys, mut part_values, mut bytes) = (Vec::new(), Vec::new(), 0);
            let mut part_dests = Vec::new();
            while part_keys.len() < config.batch_max_keys && (part_keys.is_empty() || bytes < config.batch_max_bytes) {
                let Some(key) = keys.next() else { break };
                bytes += key.len();
                if matches!(kind, Kind::Set { .. } | Kind::DeleteOrphan) {
                    let v = values.next().expect("checked: one value per key");
                    bytes += v.len();
                    part_values.push(v);
                } else if let Some(d) = dests.as_mut() {
                    let slot = d.next().expect("checked: one destination per key");
                    bytes += slot.lock().as_mut().map_or(expected, |b| b.bytes().len());
                    part_dests.push(slot);
                } else if kind == Kind::Get {
                    bytes += expected;
                }
                part_keys.push(key);
            }
            let n = part_keys.len();
            if n == 0 && kind != Kind::Ping {
                break;
            }
            // Room in the budget first (maybe waiting), then the queue: never wait while holding the lock close needs.
            let ticket = inner.shared.budget.admit(bytes, deadline).inspect_err(|e| {
                if matches!(e, Error::Overloaded(_)) {
                    Counters::add(&stats.overloads, 1);
                }
            })?;
            let (reply, rx) = ReplySlot::new();
            let part = Part {
                kind,
                priority,
                keys: part_keys,
                values: part_values,
                bytes,
                expected_value: expected,
                verify_frames: self.verify_frames,
                dests: fill.map(|f| (part_dests, f)),
                deadline,
                reply,
                _ticket: Some(ticket),
            };
            // Read lock held while queueing: close takes the write lock, so nothing is queued after it.
            let queues = inner.queues.read();
            queues.as_ref().ok_or(Error::Closed)?.send(part)?;
            Counters::add(&stats.parts, 1);
            pending.parts.push(PartWait { rx, keys: n, got: None });
            if kind == Kind::Ping {
                break;
            }
        }
        Ok(pending)
    }
}

/// Copies the keys into one buffer (one allocation per call, not per key) and cuts them from it. (Their size is
/// checked where every call's keys pass, in `submit_with`.)
fn to_keys<K: AsRef<[u8]>>(keys: &[K]) -> Vec<Bytes> {
    let total = keys.iter().map(|k| k.as_ref().len()).sum();
    let mut all = BytesMut::with_capacity(total);
    for k in keys {
        all.extend_from_slice(k.as_ref());
    }
    let all = all.freeze();
    let mut at = 0;
    keys.iter()
        .map(|k| {
            let key = all.slice(at..at + k.as_ref().len());
            at += key.len();
            key
        })
        .collect()
}

fn into_value(r: KeyReply) -> Option<Bytes> {
    match r {
        KeyReply::Value(v) => v,
        _ => None,
    }
}

/// The consecutive prefix of replies that `hit` accepts; stops at the first miss or failure.
fn prefix<T>(shared: &Shared, replies: Vec<Result<KeyReply>>, hit: impl Fn(KeyReply) -> Option<T>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for (i, r) in replies.into_iter().enumerate() {
        match r {
            Ok(r) => match hit(r) {
                Some(v) => out.push(v),
                None => break,
            },
            Err(e) if i == 0 => return Err(e),
            Err(e) => {
                Counters::add(&shared.stats.prefix_failures, 1);
                log::warn!("prefix stopped at key {i} by a failure: {e}");
                break;
            }
        }
    }
    Ok(out)
}

/// A submitted call's parts, waiting for their answers.
struct Pending {
    parts: Vec<PartWait>,
    deadline: Instant,
    /// For the latency of the call: when it was submitted, at which level, and where it is recorded.
    started: Instant,
    priority: Priority,
    shared: Arc<Shared>,
}

struct PartWait {
    rx: ReplyReceiver,
    keys: usize,
    got: Option<Vec<Result<KeyReply>>>,
}

impl Pending {
    /// Receives what arrives until `until`; returns whether every part is answered. Parts still unanswered
    /// once the call's deadline (plus grace) has passed are answered with a timeout, so this never waits long.
    fn receive(&mut self, until: Instant) -> bool {
        let give_up = self.deadline + REPLY_GRACE;
        let mut done = true;
        for part in self.parts.iter_mut().filter(|p| p.got.is_none()) {
            let wait = until.min(give_up);
            let answer = match part.rx.recv_deadline(wait) {
                Ok(replies) => Some(replies),
                Err(RecvTimeoutError::Disconnected) => Some(vec![Err(Error::WorkerLost); part.keys.max(1)]),
                Err(RecvTimeoutError::Timeout) if Instant::now() >= give_up => {
                    Some(vec![Err(Error::Timeout { node: None }); part.keys.max(1)])
                }
                Err(RecvTimeoutError::Timeout) => None,
            };
            done &= answer.is_some();
            part.got = answer;
        }
        done
    }

    /// Every key's reply in order; the whole call's error when nothing at all was answered.
    fn into_replies(self) -> Result<Vec<Result<KeyReply>>> {
        self.shared.stats.latency[self.priority.index()].record(self.started.elapsed());
        let replies: Vec<Result<KeyReply>> = self.parts.into_iter().flat_map(|p| p.got.unwrap_or_default()).collect();
        if let Some(Err(first)) = replies.first() {
            let whole = matches!(first, Error::Timeout { .. } | Error::Closed | Error::WorkerLost);
            if whole && replies.iter().all(|r| r.is_err()) {
                return Err(first.clone());
            }
        }
        Ok(replies)
    }
}

/// The handle of a [`Client::batched_get_non_blocking`] call. It resolves by the call's deadline at the latest,
/// also when the client is closed meanwhile. Dropping it abandons the answer (the work may still be done).
pub struct PendingGet {
    shared: Arc<Shared>,
    pending: Result<Pending>,
    result: Option<Result<Vec<Bytes>>>,
}

impl std::fmt::Debug for PendingGet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingGet")
            .field("ready", &self.result.is_some())
            .finish()
    }
}

impl PendingGet {
    /// Waits for the answer: the values of the consecutive keys, from the first, that were found (values after
    /// the first miss or failure are dropped, not compacted).
    pub fn wait(mut self) -> Result<Vec<Bytes>> {
        loop {
            if let Some(r) = self.wait_timeout(Duration::from_secs(3600)) {
                return r;
            }
        }
    }

    /// Like [`wait`](Self::wait), but gives up after `timeout` and returns `None`; the handle stays usable.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<Vec<Bytes>>> {
        if self.result.is_none() {
            let ready = match &mut self.pending {
                Err(e) => {
                    self.result = Some(Err(e.clone()));
                    return self.result.clone();
                }
                Ok(p) => p.receive(Instant::now() + timeout),
            };
            if ready {
                let pending = std::mem::replace(&mut self.pending, Err(Error::Closed)).expect("checked Ok above");
                let values = pending.into_replies().and_then(|r| prefix(&self.shared, r, into_value));
                self.result = Some(values);
            }
        }
        self.result.clone()
    }

    /// The answer if it has arrived, without waiting.
    pub fn poll(&mut self) -> Option<Result<Vec<Bytes>>> {
        self.wait_timeout(Duration::ZERO)
    }
}
