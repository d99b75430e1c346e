//! The chunk-level API: KV-cache chunks by [`ChunkKey`], stored in a chosen layout over the byte-level
//! [`Client`](crate::Client), with LMCache's contract (positional batched get, prefix counts, prefix results).

use std::time::{Duration, Instant};

use bytes::Bytes;
use rayon::prelude::*;

mod into;
mod split;

use crate::call::{Call, Interrupt, Settings};
use crate::chunk_key::ChunkKey;
use crate::chunk_meta::ChunkMeta;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::frame;
use crate::pending::PendingGet;
use crate::priority::Priority;
use crate::value::SetValue;

/// How a chunk is laid out in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// One key per chunk; the value is a 40-byte little-endian header, then the payload. A value that does not
    /// check out is a miss, counted in [`Stats::corrupt`](crate::Stats::corrupt), and never returned.
    ///
    /// ```text
    /// 0..4 magic "KVCR" | 4 version 1 | 5 flags (bit 0: metadata) | 6..8 zero | 8..16 payload length (u64)
    /// 16..20 CRC-32 (IEEE) of bytes 20..40 and the payload | 20 fmt | 21 dtype | 22..24 zero | 24..40 shape (4 x u32)
    /// ```
    Framed,
    /// One key per chunk holding the raw bytes of exactly `size` bytes (LMCache's current Valkey connector); a value
    /// of another length is a miss, counted as corrupt.
    Raw {
        /// The size of every chunk, in bytes.
        size: usize,
    },
    /// Two keys per chunk, byte-compatible with LMCache's two-key connectors: `kv_bytes` (the payload) and
    /// `metadata` (LMCache's native-endian int32 array `[length, fmt, dtype, s0, s1, s2, s3]`). `kv_bytes` is
    /// written first, then `metadata`. A chunk is present only when both keys are, and its metadata's length
    /// matches its bytes; metadata without kv_bytes (an eviction orphan) is a miss, and is deleted only if it is
    /// still the same orphan and its kv_bytes still absent, atomically on the server (where both keys share a
    /// node: always with hash tags, on a standalone server with plain names).
    Split {
        /// How the two keys are named.
        naming: SplitNaming,
    },
}

/// The key namings of LMCache's split layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SplitNaming {
    /// `{key}:kv_bytes` and `{key}:metadata`: a hash tag puts both keys in one slot, so one `MGET` reads both
    /// (LMCache's `ValkeyClusterConnector`).
    HashTagged,
    /// `key` + `kv_bytes` and `key` + `metadata`, no separator (LMCache 0.4-0.5's `RedisConnector`,
    /// `RedisClusterConnector` and Sentinel connector).
    Plain,
    /// `key` + `:kv_bytes` and `key` + `:metadata`, a colon and no braces (LMCache 0.3's standalone
    /// `ValkeyConnector`).
    Colon,
}

/// A chunk read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The KV bytes.
    pub payload: Bytes,
    /// Their shape and types, when the layout stores them and the writer gave them.
    pub meta: Option<ChunkMeta>,
}

/// KV-cache chunks over a [`Client`](crate::Client). Cheap to clone; clones share the client.
///
/// ```no_run
/// use kvcache_redis::{ChunkKey, ChunkStore, Client, Dtype, Layout};
/// let store = ChunkStore::new(Client::open("redis://127.0.0.1:6379")?, Layout::Framed).with_namespace("tenant-a:");
/// let key = ChunkKey::new("meta-llama/Llama-3.1-8B", 1, 0, "1a2b3c", Dtype::Bfloat16)?;
/// store.put(&key, vec![0u8; 32 << 20], None)?;
/// assert_eq!(store.batched_contains(&[key.clone()])?, 1);
/// let chunk = store.get(&key)?.expect("stored");
/// assert_eq!(chunk.payload.len(), 32 << 20);
/// # Ok::<(), kvcache_redis::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ChunkStore {
    client: Client,
    layout: Layout,
    namespace: String,
    /// Per-call settings of every call through this store (its TTL overrides the client's for writes).
    settings: Settings,
}

impl ChunkStore {
    /// Chunks in `layout` over `client`.
    pub fn new(client: Client, layout: Layout) -> ChunkStore {
        ChunkStore {
            client,
            layout,
            namespace: String::new(),
            settings: Settings::default(),
        }
    }

    /// Prefixes every stored key with `namespace` (e.g. `"tenant-a:"`), so several deployments share a cluster
    /// safely. Defaults to none.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> ChunkStore {
        self.namespace = namespace.into();
        self
    }

    /// Writes through the returned store expire after `ttl_secs` (`None`: never), whatever the client's
    /// [`Config::ttl_secs`](crate::Config::ttl_secs). Cheap: use it per call, `store.with_ttl(Some(600)).put(..)`.
    /// Defaults to the client's setting.
    pub fn with_ttl(&self, ttl_secs: Option<u64>) -> ChunkStore {
        self.with_settings(|s| s.ttl_secs = Some(ttl_secs))
    }

    /// Calls through the returned store run at `priority` instead of each operation's default (see
    /// [`Call::priority`](crate::Call::priority)). Cheap, like [`with_ttl`](Self::with_ttl). Defaults to each
    /// operation's own level.
    pub fn with_priority(&self, priority: Priority) -> ChunkStore {
        self.with_settings(|s| s.priority = Some(priority))
    }

    /// Calls through the returned store have this deadline instead of the client's
    /// [`Config::request_timeout`](crate::Config::request_timeout). Cheap, like [`with_ttl`](Self::with_ttl).
    /// Defaults to the client's setting.
    pub fn with_timeout(&self, timeout: Duration) -> ChunkStore {
        self.with_settings(|s| s.timeout = Some(timeout))
    }

    /// Calls through the returned store run `check` while they wait (see
    /// [`Call::interruptible`](crate::Call::interruptible)). Cheap, like [`with_ttl`](Self::with_ttl). Defaults to
    /// none.
    pub fn with_interrupt(&self, check: Interrupt) -> ChunkStore {
        self.with_settings(|s| s.interrupt = Some(check))
    }

    fn with_settings(&self, change: impl FnOnce(&mut Settings)) -> ChunkStore {
        let mut store = self.clone();
        change(&mut store.settings);
        store
    }

    /// A call with this store's settings.
    fn call(&self) -> Call<'_> {
        Call::with(self.client.shared(), self.settings.clone())
    }

    /// The deadline of an operation starting now: one operation of the split layout makes two calls, which share
    /// it, so that the operation as a whole keeps the timeout.
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.settings.timeout_or(&self.client.shared().config)
    }

    /// A call with this store's settings that ends by `deadline`; `None` once it has passed.
    pub(super) fn call_by(&self, deadline: Instant) -> Option<Call<'_>> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let mut settings = self.settings.clone();
        settings.timeout = Some(left);
        Some(Call::with(self.client.shared(), settings))
    }

    /// The byte-level client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The layout chunks are stored in.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The key a chunk is stored under: the namespace, then LMCache's key string.
    pub fn store_key(&self, key: &ChunkKey) -> String {
        format!("{}{key}", self.namespace)
    }

    /// The kv_bytes and metadata keys of a chunk in the split layout.
    pub fn split_keys(&self, key: &ChunkKey, naming: SplitNaming) -> (String, String) {
        let k = self.store_key(key);
        match naming {
            SplitNaming::HashTagged => (format!("{{{k}}}:kv_bytes"), format!("{{{k}}}:metadata")),
            SplitNaming::Plain => (format!("{k}kv_bytes"), format!("{k}metadata")),
            SplitNaming::Colon => (format!("{k}:kv_bytes"), format!("{k}:metadata")),
        }
    }

    /// The keys to read for `keys`: one per chunk, or kv_bytes and metadata pairs in the split layout.
    fn store_keys(&self, keys: &[ChunkKey]) -> Vec<String> {
        match self.layout {
            Layout::Split { naming } => keys
                .iter()
                .flat_map(|k| {
                    let (kv, meta) = self.split_keys(k, naming);
                    [kv, meta]
                })
                .collect(),
            _ => keys.iter().map(|k| self.store_key(k)).collect(),
        }
    }

    /// Stores one chunk (with the client's TTL, if any).
    pub fn put(&self, key: &ChunkKey, payload: impl Into<Bytes>, meta: Option<ChunkMeta>) -> Result<()> {
        let mut r = self.batched_put(std::slice::from_ref(key), vec![payload.into()], meta)?;
        r.pop().expect("one key, one result")
    }

    /// Stores `payloads[i]` as chunk `keys[i]`, all with the same metadata; one result per chunk. Payloads are
    /// not copied: the framed header is written before them on the wire.
    pub fn batched_put(
        &self,
        keys: &[ChunkKey],
        payloads: Vec<Bytes>,
        meta: Option<ChunkMeta>,
    ) -> Result<Vec<Result<()>>> {
        if keys.len() != payloads.len() {
            return Err(Error::InvalidInput(format!(
                "{} chunk keys but {} payloads",
                keys.len(),
                payloads.len()
            )));
        }
        if let Layout::Split { naming } = self.layout {
            return self.split_put(keys, payloads, meta, naming);
        }
        if let (Layout::Framed, Some(m)) = (self.layout, &meta) {
            frame::fits(m)?;
        }
        // Checksums of large chunks are computed in parallel (rayon), so the framed layout costs little next to
        // the transfer.
        let values = payloads
            .into_par_iter()
            .map(|body| match self.layout {
                Layout::Framed => Ok(SetValue {
                    head: frame::encode(&body, meta),
                    body,
                }),
                Layout::Raw { size } if body.len() != size => Err(Error::InvalidInput(format!(
                    "a raw-layout chunk must be {size} bytes, this one is {}",
                    body.len()
                ))),
                Layout::Raw { .. } | Layout::Split { .. } => Ok(SetValue::from(body)),
            })
            .collect::<Result<Vec<_>>>()?;
        let keys = self.store_keys(keys).into_iter().map(Bytes::from).collect();
        self.call().put_values(keys, values)
    }

    /// One chunk, or `None` when it is missing or did not check out.
    pub fn get(&self, key: &ChunkKey) -> Result<Option<Chunk>> {
        let mut r = self.batched_get(std::slice::from_ref(key))?;
        r.pop().expect("one key, one result")
    }

    /// One result per chunk, in the order of `keys`: the chunk, `None` when missing or corrupt, or its error.
    pub fn batched_get(&self, keys: &[ChunkKey]) -> Result<Vec<Result<Option<Chunk>>>> {
        let deadline = self.deadline();
        let values = self.reads().batched_get(&self.store_keys(keys))?;
        if let Layout::Split { naming } = self.layout {
            return Ok(self.split_get(keys, values, naming, deadline));
        }
        Ok(values
            .into_iter()
            .map(|v| v.map(|v| v.and_then(|v| self.decode(v))))
            .collect())
    }

    fn reject(&self, why: String) -> Option<Chunk> {
        log::warn!("stored chunk rejected: {why}");
        self.client.count_corrupt();
        None
    }

    /// The number of consecutive chunks, from the first, that are present (in the split layout, both keys).
    /// Presence only: a damaged value counts until a read finds it out.
    pub fn batched_contains(&self, keys: &[ChunkKey]) -> Result<usize> {
        let present = self.call().batched_contains(&self.store_keys(keys))?;
        Ok(match self.layout {
            Layout::Split { .. } => present / 2,
            _ => present,
        })
    }

    /// Starts loading `keys` and returns at once; the handle yields the consecutive prefix of good chunks.
    pub fn batched_get_non_blocking(&self, keys: &[ChunkKey]) -> PendingChunks {
        PendingChunks {
            store: self.clone(),
            pending: self.reads().batched_get_non_blocking(&self.store_keys(keys)),
        }
    }

    /// A read call: framed values are checksummed by the workers while they read them, bytes still hot in the
    /// CPU's caches and several chunks at once; those that fail come back as counted misses.
    fn reads(&self) -> Call<'_> {
        let mut settings = self.settings.clone();
        settings.verify_frames = self.layout == Layout::Framed;
        Call::with(self.client.shared(), settings)
    }

    /// Checks a stored value against the layout (the checksum was checked while reading); a bad one is
    /// counted, logged and read as a miss.
    fn decode(&self, value: Bytes) -> Option<Chunk> {
        let checked = match self.layout {
            Layout::Framed => frame::decode_verified(value).map_err(|e| e.to_string()),
            Layout::Raw { size } if value.len() == size => Ok((value, None)),
            Layout::Raw { size } => Err(format!("{} bytes where a raw chunk has {size}", value.len())),
            Layout::Split { .. } => unreachable!("split chunks are decoded in pairs"),
        };
        match checked {
            Ok((payload, meta)) => Some(Chunk { payload, meta }),
            Err(why) => self.reject(why),
        }
    }

    /// The consecutive prefix of good chunks in a prefix of stored values.
    fn decode_prefix(&self, values: Vec<Bytes>) -> Vec<Chunk> {
        match self.layout {
            Layout::Split { .. } => {
                let mut out = Vec::new();
                let mut values = values.into_iter();
                while let (Some(kv), Some(meta)) = (values.next(), values.next()) {
                    match self.pair(kv, &meta) {
                        Some(c) => out.push(c),
                        None => break,
                    }
                }
                out
            }
            _ => values.into_iter().map_while(|v| self.decode(v)).collect(),
        }
    }
}

/// The handle of [`ChunkStore::batched_get_non_blocking`].
#[derive(Debug)]
pub struct PendingChunks {
    store: ChunkStore,
    pending: PendingGet,
}

impl PendingChunks {
    /// Waits for the consecutive prefix of good chunks (it stops at the first missing, failed or corrupt one).
    pub fn wait(mut self) -> Result<Vec<Chunk>> {
        loop {
            if let Some(r) = self.wait_timeout(Duration::from_secs(3600)) {
                return r;
            }
        }
    }

    /// Like [`wait`](Self::wait), but gives up after `timeout` and returns `None`; the handle stays usable.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<Vec<Chunk>>> {
        let values = self.pending.wait_timeout(timeout)?;
        Some(values.map(|values| self.store.decode_prefix(values)))
    }

    /// The answer if it has arrived, without waiting.
    pub fn poll(&mut self) -> Option<Result<Vec<Chunk>>> {
        self.wait_timeout(Duration::ZERO)
    }
}
