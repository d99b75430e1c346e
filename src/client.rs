//! The public handle: a cheap `Clone` over the shared workers, opened from a URL or a `Config`, closed by `close`
//! or by dropping the last clone. Its operations delegate to `Call` (`call.rs`), which splits and queues them; the
//! answers come back through `pending.rs`.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::admin::{self, NodeConnection, Shard};
use crate::budget::Budget;
use crate::call::Call;
use crate::config::Config;
use crate::connection::ConnectOptions;
use crate::error::{Error, Result};
use crate::pending::PendingGet;
use crate::pool::BufferPool;
use crate::queue::Queues;
use crate::sentinel::{SentinelAnswer, Sentinels};
use crate::shared::Shared;
use crate::stats::{Counters, Stats};
use crate::tls::TlsSettings;
use crate::topology::{Source, Topology};
use crate::wake::Wakeup;
use crate::worker;

/// A blocking, batching client for a standalone Redis / Valkey server or a Cluster.
///
/// `Client` is `Clone + Send + Sync`; clones share one pool of worker threads, and calls from many threads are
/// batched together. Each call blocks the calling thread until its answer arrives or its deadline passes (see
/// [`Config::request_timeout`](crate::Config::request_timeout)); no call ever waits longer.
///
/// # Threading
/// [`Config::workers`](crate::Config::workers) named threads (`kvcache-redis-worker-N`) each own one connection per node they talk to;
/// no lock is held around a socket. A call is split into parts of at most [`Config::batch_max_keys`](crate::Config::batch_max_keys) keys and
/// about [`Config::batch_max_bytes`](crate::Config::batch_max_bytes) bytes, so several workers can share a large call. A worker takes what is
/// queued, from any number of callers, and sends one pipeline per node: `GET`s of one slot become one `MGET`,
/// `SET`s are pipelined, so a batch costs one round trip per node it touches.
///
/// # Priorities
/// Four levels, highest first: [`Priority::Peek`](crate::Priority::Peek) (`exists`, `batched_contains`), [`Priority::Prefetch`](crate::Priority::Prefetch)
/// (`batched_get_non_blocking`), [`Priority::Get`](crate::Priority::Get) (`get`, `batched_get`), [`Priority::Put`](crate::Priority::Put) (`put`,
/// `batched_put`, `remove`). Workers always take the highest queued level first; a level passed over for 8
/// batches in a row goes first once, so writes are never starved. Never all workers stream writes at once, and a
/// second one starts only while fewer than [`Config::write_bytes_in_flight`](crate::Config::write_bytes_in_flight) bytes are being written, so a flood of
/// writes never keeps a `Peek` waiting for a worker.
/// [`Client::call`](crate::Client::call) overrides a call's priority.
///
/// # Partial failure
/// A batch does not fail as a whole because one node or one key failed: batched calls return one `Result` per
/// key. The outer `Result` is for what concerns the whole call: a closed client, invalid input, or nothing
/// answered at all (every key timed out). The prefix calls ([`batched_contains`](Client::batched_contains),
/// [`PendingGet::wait`](crate::PendingGet::wait)) stop their prefix at the first key that is missing *or* failed; a failure there is
/// logged and counted in [`Stats::prefix_failures`](crate::Stats::prefix_failures), and is returned as the call's error only when it is the
/// very first key (so "no prefix" and "could not tell" stay distinguishable).
///
/// # Shutdown
/// [`close`](Client::close) on any clone, or dropping the last clone, stops the workers: calls already queued
/// are still executed until [`Config::drain_timeout`](crate::Config::drain_timeout) has passed, and those still queued then are answered
/// with [`Error::Closed`](crate::Error::Closed). Every queued call is answered exactly once. Later calls on any clone fail at once with
/// [`Error::Closed`](crate::Error::Closed); outstanding [`PendingGet`](crate::PendingGet) handles resolve.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
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
        if !self.shared.close_queues() {
            return Ok(());
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
    /// Connects to the deployment at `url` (see [`Config`](crate::Config) for the syntax) with default settings, detecting
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
            client_name: config.client_name.clone(),
            readonly: false,
        };
        let health: Arc<crate::health::Health> = Default::default();
        crate::telemetry::nodes_down(0);
        let source = match &config.sentinel {
            Some(s) => Source::Sentinel(Sentinels {
                addrs: config.seeds.clone(),
                service: s.service.clone(),
                opts: ConnectOptions {
                    username: s.username.clone(),
                    password: s.password.clone(),
                    db: 0,
                    ..connect.clone()
                },
                followed_epoch: Arc::new(std::sync::atomic::AtomicI64::new(-1)),
            }),
            None => Source::Seeds {
                seeds: config.seeds.clone(),
                mode: config.mode,
            },
        };
        let topology = Topology::discover(
            source,
            connect.clone(),
            health.clone(),
            config.read_from,
            config.client_az.clone(),
        )?;
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
            stats: Counters::new(),
            drain_deadline: OnceLock::new(),
            health,
            queues: RwLock::new(None),
            lanes: crate::lane::Lanes::new(crate::lane::LANES),
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
        *shared.queues.write() = Some(queues);
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
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
        Call::new(&self.inner.shared)
    }

    /// The value of `key`, or `None` when it is missing. Priority [`Priority::Get`](crate::Priority::Get).
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.call().get(key)
    }

    /// Stores `value` under `key` (with the configured TTL, if any). Priority [`Priority::Put`](crate::Priority::Put).
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<()> {
        self.call().put(key, value)
    }

    /// Whether `key` exists. Priority [`Priority::Peek`](crate::Priority::Peek).
    pub fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.call().exists(key)
    }

    /// Deletes `key`; `true` when it existed. Priority [`Priority::Put`](crate::Priority::Put).
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.call().remove(key)
    }

    /// Deletes every key in one pipeline per node; one result per key, in order: `true` when it existed (a key
    /// given twice is deleted by the first). Priority [`Priority::Put`](crate::Priority::Put).
    pub fn batched_remove<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Result<bool>>> {
        self.call().batched_remove(keys)
    }

    /// One result per key, in the order of `keys`: `Ok(Some(value))`, `Ok(None)` when missing, or the key's
    /// error. Duplicate keys are each answered. Priority [`Priority::Get`](crate::Priority::Get).
    pub fn batched_get<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Result<Option<Bytes>>>> {
        self.call().batched_get(keys)
    }

    /// Reads `keys[i]` straight into `bufs[i]` (anything `AsMut<[u8]> + Send`: pre-allocated or pinned slabs), from
    /// the socket with no copy in between, and hands every buffer back with its result, in order: `Ok(Some(n))`
    /// when the value is the buffer's first `n` bytes (a buffer may be larger than its value), `Ok(None)` when
    /// missing, or the key's error: [`Error::InvalidInput`](crate::Error::InvalidInput) when the value is larger
    /// than its buffer (nothing is written into it). Priority [`Priority::Get`](crate::Priority::Get).
    ///
    /// ```no_run
    /// let client = kvcache_redis::Client::open("redis://127.0.0.1:6379")?;
    /// let bufs = vec![vec![0u8; 32 << 20]; 2];
    /// for r in client.batched_get_into(&["chunk-a", "chunk-b"], bufs) {
    ///     match r.result? {
    ///         Some(n) => println!("{n} bytes, in place"),
    ///         None => println!("missing"),
    ///     }
    /// }
    /// # Ok::<(), kvcache_redis::Error>(())
    /// ```
    pub fn batched_get_into<K, B>(&self, keys: &[K], bufs: Vec<B>) -> Vec<crate::FillResult<B>>
    where
        K: AsRef<[u8]>,
        B: AsMut<[u8]> + Send + 'static,
    {
        self.call().batched_get_into(keys, bufs)
    }

    /// Stores `values[i]` under `keys[i]` with pipelined, non-transactional `SET`s; one result per key.
    /// Values cross to the workers without being copied. Priority [`Priority::Put`](crate::Priority::Put).
    pub fn batched_put<K, V, I>(&self, keys: &[K], values: I) -> Result<Vec<Result<()>>>
    where
        K: AsRef<[u8]>,
        V: Into<Bytes>,
        I: IntoIterator<Item = V>,
    {
        self.call().batched_put(keys, values)
    }

    /// The number of consecutive keys, from the first, that exist. Priority [`Priority::Peek`](crate::Priority::Peek).
    pub fn batched_contains<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<usize> {
        self.call().batched_contains(keys)
    }

    /// Starts a batched get and returns at once; the handle yields the consecutive prefix of hits. Priority
    /// [`Priority::Prefetch`](crate::Priority::Prefetch).
    pub fn batched_get_non_blocking<K: AsRef<[u8]>>(&self, keys: &[K]) -> PendingGet {
        self.call().batched_get_non_blocking(keys)
    }

    /// Checks that every primary answers `PING`. Priority [`Priority::Peek`](crate::Priority::Peek).
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

    /// For a Sentinel-managed deployment, what each Sentinel says of the service now (its primary, config epoch
    /// and replicas with their link status, or why it did not answer), each asked within the connect timeout;
    /// `None` for any other deployment. The client itself follows the highest config epoch.
    pub fn sentinels(&self) -> Option<Vec<SentinelAnswer>> {
        let shared = &self.inner.shared;
        let sentinels = shared.topology.sentinels()?;
        Some(sentinels.answers(shared.config.connect_timeout))
    }

    /// The primaries the client currently routes to, `host:port`.
    pub fn primaries(&self) -> Vec<String> {
        self.inner.shared.topology.current().nodes.clone()
    }

    /// A plain connection to `node` (`host:port`, as [`Client::primaries`](crate::Client::primaries) lists them) with this client's TLS,
    /// authentication and timeouts, for tools that need commands the client does not offer.
    pub fn connect_node(&self, node: &str) -> Result<NodeConnection> {
        admin::connect_node(self.shared(), node)
    }

    /// The deployment's shards as a node sees them now (`CLUSTER SLOTS`; for a standalone server, its replicas
    /// from `INFO replication`).
    pub fn shards(&self) -> Result<Vec<Shard>> {
        admin::shards(self.shared())
    }

    /// Removes orphaned split-layout metadata: each `metadata_keys[i]` is deleted only if it still holds
    /// `expected[i]` and `kv_keys[i]` does not exist, atomically on the server (both keys must be on one node:
    /// hash-tagged names, or a standalone server; otherwise that key fails with the server's `CROSSSLOT`). One
    /// result per key, `true` when deleted.
    pub fn remove_orphaned_metadata<K: AsRef<[u8]>>(
        &self,
        metadata_keys: &[K],
        kv_keys: &[K],
        expected: &[Bytes],
    ) -> Result<Vec<Result<bool>>> {
        if metadata_keys.len() != kv_keys.len() || kv_keys.len() != expected.len() {
            return Err(Error::InvalidInput(format!(
                "{} metadata keys, {} kv_bytes keys and {} expected values: one of each per orphan",
                metadata_keys.len(),
                kv_keys.len(),
                expected.len()
            )));
        }
        let owned = |keys: &[K]| keys.iter().map(|k| Bytes::copy_from_slice(k.as_ref())).collect();
        self.call()
            .delete_orphans(owned(metadata_keys), owned(kv_keys), expected.to_vec())
    }

    /// Counts a stored value that did not check out (see [`Stats::corrupt`](crate::Stats::corrupt)).
    pub(crate) fn count_corrupt(&self) {
        self.inner.shared.stats.corrupt.add(1);
    }

    /// A snapshot of the client's counters.
    pub fn stats(&self) -> Stats {
        let queued = self.inner.shared.queued();
        let mut stats = self.inner.shared.stats.snapshot(queued as u64);
        stats.in_flight_bytes = self.inner.shared.budget.used().1 as u64;
        stats.nodes_down = self.inner.shared.health.down_nodes();
        stats.refreshes = self.inner.shared.topology.refreshes();
        stats
    }
}
