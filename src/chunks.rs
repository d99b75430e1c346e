//! The chunk-level API: KV-cache chunks by [`ChunkKey`], stored in a chosen layout over the byte-level
//! [`Client`], with LMCache's contract (positional batched get, prefix counts, prefix results).

use std::time::Duration;

use bytes::Bytes;
use rayon::prelude::*;

use crate::chunk_key::ChunkKey;
use crate::client::{Client, PendingGet};
use crate::error::{Error, Result};
use crate::frame::{self, ChunkMeta};
use crate::request::SetValue;

/// How a chunk is laid out in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// One key per chunk; the value is a 40-byte header (magic, version, payload length, CRC-32 of metadata and
    /// payload, optional metadata) and the payload. A value that does not check out is a miss, counted in
    /// [`Stats::corrupt`](crate::Stats::corrupt), and never returned. See the header format in [`FRAME_HEADER`](crate::FRAME_HEADER)'s module.
    Framed,
    /// One key per chunk holding the raw bytes of exactly `size` bytes (LMCache's current Valkey connector); a value
    /// of another length is a miss, counted as corrupt.
    Raw {
        /// The size of every chunk, in bytes.
        size: usize,
    },
}

/// A chunk read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The KV bytes.
    pub payload: Bytes,
    /// Their shape and types, when the layout stores them and the writer gave them.
    pub meta: Option<ChunkMeta>,
}

/// KV-cache chunks over a [`Client`]. Cheap to clone; clones share the client.
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
}

impl ChunkStore {
    /// Chunks in `layout` over `client`.
    pub fn new(client: Client, layout: Layout) -> ChunkStore {
        ChunkStore {
            client,
            layout,
            namespace: String::new(),
        }
    }

    /// Prefixes every stored key with `namespace` (e.g. `"tenant-a:"`), so several deployments share a cluster
    /// safely. Defaults to none.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> ChunkStore {
        self.namespace = namespace.into();
        self
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

    fn store_keys(&self, keys: &[ChunkKey]) -> Vec<String> {
        keys.iter().map(|k| self.store_key(k)).collect()
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
                Layout::Raw { .. } => Ok(SetValue::from(body)),
            })
            .collect::<Result<Vec<_>>>()?;
        let keys = self.store_keys(keys).into_iter().map(Bytes::from).collect();
        self.client.call().put_values(keys, values)
    }

    /// One chunk, or `None` when it is missing or did not check out.
    pub fn get(&self, key: &ChunkKey) -> Result<Option<Chunk>> {
        let mut r = self.batched_get(std::slice::from_ref(key))?;
        r.pop().expect("one key, one result")
    }

    /// One result per chunk, in the order of `keys`: the chunk, `None` when missing or corrupt, or its error.
    pub fn batched_get(&self, keys: &[ChunkKey]) -> Result<Vec<Result<Option<Chunk>>>> {
        let values = self.reads().batched_get(&self.store_keys(keys))?;
        Ok(values
            .into_iter()
            .map(|v| v.map(|v| v.and_then(|v| self.decode(v))))
            .collect())
    }

    /// The number of consecutive chunks, from the first, that are present. (Presence only: a corrupt value
    /// counts until a read finds it out.)
    pub fn batched_contains(&self, keys: &[ChunkKey]) -> Result<usize> {
        self.client.batched_contains(&self.store_keys(keys))
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
    fn reads(&self) -> crate::client::Call<'_> {
        match self.layout {
            Layout::Framed => self.client.call().verify_frames(),
            Layout::Raw { .. } => self.client.call(),
        }
    }

    /// Checks a stored value against the layout (the checksum was checked while reading); a bad one is
    /// counted, logged and read as a miss.
    fn decode(&self, value: Bytes) -> Option<Chunk> {
        let checked = match self.layout {
            Layout::Framed => frame::decode_verified(value).map_err(|e| e.to_string()),
            Layout::Raw { size } if value.len() == size => Ok((value, None)),
            Layout::Raw { size } => Err(format!("{} bytes where a raw chunk has {size}", value.len())),
        };
        match checked {
            Ok((payload, meta)) => Some(Chunk { payload, meta }),
            Err(why) => {
                log::warn!("stored chunk rejected: {why}");
                self.client.count_corrupt();
                None
            }
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
        Some(values.map(|values| values.into_iter().map_while(|v| self.store.decode(v)).collect()))
    }

    /// The answer if it has arrived, without waiting.
    pub fn poll(&mut self) -> Option<Result<Vec<Chunk>>> {
        self.wait_timeout(Duration::ZERO)
    }
}
