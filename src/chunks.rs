//! The chunk-level API: KV-cache chunks by [`ChunkKey`], stored in a chosen layout over the byte-level
//! [`Client`], with LMCache's contract (positional batched get, prefix counts, prefix results).

use std::time::Duration;

use bytes::Bytes;
use rayon::prelude::*;

use crate::call::Call;
use crate::chunk_key::ChunkKey;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::frame::{self, ChunkMeta};
use crate::pending::PendingGet;
use crate::pending::REPLY_GRACE;
use crate::request::{DestSlot, Destination, Fill, KeyReply, SetValue};
use parking_lot::Mutex;
use std::sync::Arc;

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

/// The two key namings of LMCache's split layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SplitNaming {
    /// `{key}:kv_bytes` and `{key}:metadata`: a hash tag puts both keys in one slot, so one `MGET` reads both.
    HashTagged,
    /// `key` + `kv_bytes` and `key` + `metadata`, no separator (LMCache's `RedisConnector`).
    Plain,
}

/// Length of LMCache's metadata for one group: 7 int32.
const SPLIT_META: usize = 28;

/// LMCache's metadata bytes for a chunk of `len` bytes.
fn split_meta(len: usize, meta: Option<ChunkMeta>) -> Vec<u8> {
    let m = meta.unwrap_or_default();
    let ints = [
        len as i32,
        m.fmt.into(),
        m.dtype.into(),
        m.shape[0] as i32,
        m.shape[1] as i32,
        m.shape[2] as i32,
        m.shape[3] as i32,
    ];
    ints.iter().flat_map(|i| i.to_ne_bytes()).collect()
}

/// The payload length and (first group's) metadata of LMCache's metadata bytes.
fn parse_split_meta(bytes: &[u8]) -> std::result::Result<(usize, ChunkMeta), String> {
    if bytes.len() < SPLIT_META || !bytes.len().is_multiple_of(4) || !(bytes.len() / 4 - 2).is_multiple_of(5) {
        return Err(format!("{} bytes of metadata, not 2 + 5 x groups int32", bytes.len()));
    }
    let int = |i: usize| i32::from_ne_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let small = |i: usize| u8::try_from(int(i)).map_err(|_| format!("code {} out of range", int(i)));
    let len = usize::try_from(int(0)).map_err(|_| format!("negative length {}", int(0)))?;
    let meta = ChunkMeta {
        fmt: small(1)?,
        dtype: small(2)?,
        shape: std::array::from_fn(|d| int(3 + d).max(0) as u32),
    };
    Ok((len, meta))
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
    /// `Some` overrides the client's TTL for writes through this store.
    ttl_secs: Option<Option<u64>>,
}

impl ChunkStore {
    /// Chunks in `layout` over `client`.
    pub fn new(client: Client, layout: Layout) -> ChunkStore {
        ChunkStore {
            client,
            layout,
            namespace: String::new(),
            ttl_secs: None,
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
        ChunkStore {
            ttl_secs: Some(ttl_secs),
            ..self.clone()
        }
    }

    /// A write call with this store's TTL.
    fn writes(&self) -> Call<'_> {
        match self.ttl_secs {
            Some(ttl) => self.client.call().ttl_secs(ttl),
            None => self.client.call(),
        }
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
        self.writes().put_values(keys, values)
    }

    /// kv_bytes first, then, for the chunks whose kv_bytes landed, their metadata: a reader never sees metadata
    /// before its bytes.
    fn split_put(
        &self,
        keys: &[ChunkKey],
        payloads: Vec<Bytes>,
        meta: Option<ChunkMeta>,
        naming: SplitNaming,
    ) -> Result<Vec<Result<()>>> {
        let (kv_keys, meta_keys): (Vec<Bytes>, Vec<Bytes>) = keys
            .iter()
            .map(|k| {
                let (kv, m) = self.split_keys(k, naming);
                (Bytes::from(kv), Bytes::from(m))
            })
            .unzip();
        let metas: Vec<Bytes> = payloads
            .iter()
            .map(|p| Bytes::from(split_meta(p.len(), meta)))
            .collect();
        let kv_values = payloads.into_iter().map(SetValue::from).collect();
        let mut results = self.writes().put_values(kv_keys, kv_values)?;
        let landed: Vec<usize> = (0..keys.len()).filter(|&i| results[i].is_ok()).collect();
        if !landed.is_empty() {
            let keys = landed.iter().map(|&i| meta_keys[i].clone()).collect();
            let values = landed.iter().map(|&i| SetValue::from(metas[i].clone())).collect();
            for (i, r) in landed.iter().zip(self.writes().put_values(keys, values)?) {
                results[*i] = r;
            }
        }
        Ok(results)
    }

    /// One chunk, or `None` when it is missing or did not check out.
    pub fn get(&self, key: &ChunkKey) -> Result<Option<Chunk>> {
        let mut r = self.batched_get(std::slice::from_ref(key))?;
        r.pop().expect("one key, one result")
    }

    /// One result per chunk, in the order of `keys`: the chunk, `None` when missing or corrupt, or its error.
    pub fn batched_get(&self, keys: &[ChunkKey]) -> Result<Vec<Result<Option<Chunk>>>> {
        let values = self.reads().batched_get(&self.store_keys(keys))?;
        if let Layout::Split { naming } = self.layout {
            return Ok(self.split_get(keys, values, naming));
        }
        Ok(values
            .into_iter()
            .map(|v| v.map(|v| v.and_then(|v| self.decode(v))))
            .collect())
    }

    /// Reads chunks straight into caller-owned buffers (pre-allocated or pinned slabs: anything
    /// `AsMut<[u8]> + Send`): the payload of `keys[i]` goes from the socket into `bufs[i]`, whose length must be
    /// the chunk's payload length, with no copy in between (framed chunks have their header read apart and their
    /// checksum checked on the way). Every buffer comes back with its result, in order. Priority
    /// [`Priority::Get`](crate::Priority::Get). Not available for the split layout yet.
    pub fn batched_get_into<B: AsMut<[u8]> + Send + 'static>(
        &self,
        keys: &[ChunkKey],
        mut bufs: Vec<B>,
    ) -> Vec<FillResult<B>> {
        let refuse = |bufs: Vec<B>, why: String| {
            bufs.into_iter()
                .map(|b| FillResult {
                    buf: Some(b),
                    result: Err(Error::InvalidInput(why.clone())),
                })
                .collect()
        };
        let fill = match self.layout {
            Layout::Framed => Fill::Framed,
            Layout::Raw { size } => match bufs.iter_mut().position(|b| b.as_mut().len() != size) {
                Some(i) => return refuse(bufs, format!("buffer {i} is not the raw layout's {size} bytes")),
                None => Fill::Raw,
            },
            Layout::Split { .. } => {
                return refuse(
                    bufs,
                    "reading into buffers is not available for the split layout yet".into(),
                );
            }
        };
        if keys.len() != bufs.len() {
            let why = format!("{} chunk keys but {} buffers", keys.len(), bufs.len());
            return refuse(bufs, why);
        }
        let slots: Vec<DestSlot> = bufs
            .into_iter()
            .map(|b| Arc::new(Mutex::new(Some(Box::new(b) as Box<dyn Destination>))))
            .collect();
        let keys = self.store_keys(keys).into_iter().map(Bytes::from).collect();
        let replies = self.client.call().get_into(keys, slots.clone(), fill);
        slots
            .into_iter()
            .enumerate()
            .map(|(i, slot)| {
                // Free at once unless the call gave up while a worker was still reading into it; that worker
                // lets go within its own deadline, so this wait is bounded.
                let buf = slot
                    .try_lock_for(REPLY_GRACE + Duration::from_secs(1))
                    .and_then(|mut b| b.take())
                    .and_then(|b| b.into_any().downcast::<B>().ok())
                    .map(|b| *b);
                let result = match &replies {
                    Err(e) => Err(e.clone()),
                    Ok(r) => match &r[i] {
                        Ok(KeyReply::Filled(n)) => Ok(Some(*n)),
                        Ok(_) => Ok(None),
                        Err(e) => Err(e.clone()),
                    },
                };
                FillResult { buf, result }
            })
            .collect()
    }

    /// Pairs up kv_bytes and metadata; removes orphans where that can be done safely.
    fn split_get(
        &self,
        keys: &[ChunkKey],
        values: Vec<Result<Option<Bytes>>>,
        naming: SplitNaming,
    ) -> Vec<Result<Option<Chunk>>> {
        let mut out = Vec::with_capacity(keys.len());
        let mut orphans = (Vec::new(), Vec::new(), Vec::new());
        let mut values = values.into_iter();
        for key in keys {
            let (kv, meta) = (
                values.next().expect("two per chunk"),
                values.next().expect("two per chunk"),
            );
            out.push(match (kv, meta) {
                (Err(e), _) | (_, Err(e)) => Err(e),
                (Ok(Some(kv)), Ok(Some(meta))) => Ok(self.pair(kv, &meta)),
                (Ok(None), Ok(Some(meta))) => {
                    let (kv_key, meta_key) = self.split_keys(key, naming);
                    orphans.0.push(Bytes::from(meta_key));
                    orphans.1.push(Bytes::from(kv_key));
                    orphans.2.push(meta);
                    Ok(None)
                }
                _ => Ok(None),
            });
        }
        let safe = naming == SplitNaming::HashTagged || !self.client.is_cluster();
        if !orphans.0.is_empty() && safe {
            match self.client.call().delete_orphans(orphans.0, orphans.1, orphans.2) {
                Ok(r) => log::info!(
                    "removed {} of {} orphaned metadata keys",
                    r.iter().filter(|d| matches!(d, Ok(true))).count(),
                    r.len()
                ),
                Err(e) => log::warn!("removing orphaned metadata: {e}"),
            }
        }
        out
    }

    /// A chunk from its kv_bytes and metadata, if they agree.
    fn pair(&self, kv: Bytes, meta: &[u8]) -> Option<Chunk> {
        match parse_split_meta(meta) {
            Ok((len, m)) if len == kv.len() => Some(Chunk {
                payload: kv,
                meta: Some(m),
            }),
            Ok((len, _)) => self.reject(format!("metadata says {len} bytes, kv_bytes has {}", kv.len())),
            Err(why) => self.reject(why),
        }
    }

    fn reject(&self, why: String) -> Option<Chunk> {
        log::warn!("stored chunk rejected: {why}");
        self.client.count_corrupt();
        None
    }

    /// The number of consecutive chunks, from the first, that are present (in the split layout, both keys).
    /// Presence only: a damaged value counts until a read finds it out.
    pub fn batched_contains(&self, keys: &[ChunkKey]) -> Result<usize> {
        let present = self.client.batched_contains(&self.store_keys(keys))?;
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
        match self.layout {
            Layout::Framed => self.client.call().verify_frames(),
            Layout::Raw { .. } | Layout::Split { .. } => self.client.call(),
        }
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

/// What became of one buffer given to [`ChunkStore::batched_get_into`].
#[derive(Debug)]
pub struct FillResult<B> {
    /// The buffer, handed back. `None` only when the call gave up on its deadline while a worker was still
    /// writing into it (the worker drops it when done).
    pub buf: Option<B>,
    /// `Ok(Some(n))`: the chunk's payload, `n` bytes, fills the buffer; `Ok(None)`: missing (or damaged, counted);
    /// `Err`: this chunk's error, e.g. [`Error::InvalidInput`] when the buffer is not the chunk's size.
    pub result: Result<Option<usize>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lmcache_metadata_round_trips_and_accepts_several_groups() {
        let meta = ChunkMeta {
            fmt: 1,
            dtype: 3,
            shape: [2, 32, 256, 1024],
        };
        let bytes = split_meta(33_554_432, Some(meta));
        assert_eq!(bytes.len(), SPLIT_META);
        assert_eq!(&bytes[..4], &33_554_432i32.to_ne_bytes());
        assert_eq!(parse_split_meta(&bytes), Ok((33_554_432, meta)));
        // Two groups: [length, fmt, (dtype, s0..s3) x 2]; the first group is taken.
        let two: Vec<u8> = [100i32, 1, 3, 2, 32, 256, 1024, 2, 1, 1, 1, 1]
            .iter()
            .flat_map(|i| i.to_ne_bytes())
            .collect();
        assert_eq!(parse_split_meta(&two).unwrap().0, 100);
        for bad in [&bytes[..27], &bytes[..24], &[0u8; 32][..]] {
            assert!(parse_split_meta(bad).is_err(), "{} bytes", bad.len());
        }
        let negative: Vec<u8> = [-1i32, 1, 3, 0, 0, 0, 0].iter().flat_map(|i| i.to_ne_bytes()).collect();
        assert!(parse_split_meta(&negative).unwrap_err().contains("negative length"));
    }
}
