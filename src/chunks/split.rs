//! LMCache's split layout: two keys per chunk, the kv bytes and LMCache's metadata (native-endian int32
//! `[length, fmt, dtype, shape x 4]` per group), in either naming. Written kv bytes first, so a reader never sees
//! metadata before its bytes; read as a pair that must agree; metadata left without its bytes (eviction) is a miss,
//! and is removed where that can be done atomically and safely.

use std::time::Instant;

use bytes::Bytes;

use super::{Chunk, ChunkStore, SplitNaming};
use crate::chunk_key::ChunkKey;
use crate::chunk_meta::{ChunkMeta, DtypeCode, MemoryFormat};
use crate::error::{Error, Result};
use crate::value::SetValue;

/// Length of LMCache's metadata for one group: 7 int32.
const SPLIT_META: usize = 28;

/// LMCache's metadata bytes for a chunk of `len` bytes.
fn split_meta(len: usize, meta: Option<ChunkMeta>) -> Vec<u8> {
    let m = meta.unwrap_or_default();
    let ints = [
        len as i32,
        m.fmt.code(),
        m.dtype.0,
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
    let len = usize::try_from(int(0)).map_err(|_| format!("negative length {}", int(0)))?;
    let meta = ChunkMeta {
        fmt: MemoryFormat::from_code(int(1)),
        dtype: DtypeCode(int(2)),
        shape: std::array::from_fn(|d| int(3 + d).max(0) as u32),
    };
    Ok((len, meta))
}

impl ChunkStore {
    /// kv_bytes first, then, for the chunks whose kv_bytes landed, their metadata: a reader never sees metadata
    /// before its bytes. Both calls share one deadline; metadata left unwritten when it has passed fails with a
    /// timeout (its kv_bytes alone read as a miss).
    pub(super) fn split_put(
        &self,
        keys: &[ChunkKey],
        payloads: Vec<Bytes>,
        meta: Option<ChunkMeta>,
        naming: SplitNaming,
    ) -> Result<Vec<Result<()>>> {
        if let Some(d) = meta.and_then(|m| m.shape.into_iter().find(|&d| i32::try_from(d).is_err())) {
            return Err(Error::InvalidInput(format!(
                "LMCache's metadata stores shape dimensions as int32: {d} does not fit"
            )));
        }
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
        let deadline = self.deadline();
        let mut results = self.call().put_values(kv_keys, kv_values)?;
        let landed: Vec<usize> = (0..keys.len()).filter(|&i| results[i].is_ok()).collect();
        if !landed.is_empty() {
            let keys = landed.iter().map(|&i| meta_keys[i].clone()).collect();
            let values = landed.iter().map(|&i| SetValue::from(metas[i].clone())).collect();
            let written = match self.call_by(deadline) {
                Some(call) => call.put_values(keys, values)?,
                None => vec![Err(Error::Timeout { node: None }); landed.len()],
            };
            for (i, r) in landed.iter().zip(written) {
                results[*i] = r;
            }
        }
        Ok(results)
    }

    /// Pairs up kv_bytes and metadata; removes orphans where that can be done safely and before `deadline` (the
    /// read's own; orphans left are removed by a later read).
    pub(super) fn split_get(
        &self,
        keys: &[ChunkKey],
        values: Vec<Result<Option<Bytes>>>,
        naming: SplitNaming,
        deadline: Instant,
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
        if let Some(call) = (!orphans.0.is_empty() && safe)
            .then(|| self.call_by(deadline))
            .flatten()
        {
            match call.delete_orphans(orphans.0, orphans.1, orphans.2) {
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
    pub(super) fn pair(&self, kv: Bytes, meta: &[u8]) -> Option<Chunk> {
        match parse_split_meta(meta) {
            Ok((len, m)) if len == kv.len() => Some(Chunk {
                payload: kv,
                meta: Some(m),
            }),
            Ok((len, _)) => self.reject(format!("metadata says {len} bytes, kv_bytes has {}", kv.len())),
            Err(why) => self.reject(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// LMCache's metadata bytes round-trip; any bytes never panic.
        #[test]
        fn fuzz_split_metadata_round_trips(
            len in 0usize..i32::MAX as usize,
            fmt in 0i32..6,
            dtype in 0i32..9,
            shape in proptest::array::uniform4(0u32..i32::MAX as u32),
            present in proptest::bool::ANY,
        ) {
            let meta = present.then_some(ChunkMeta { fmt: MemoryFormat::from_code(fmt), dtype: DtypeCode(dtype), shape });
            let (got_len, got) = parse_split_meta(&split_meta(len, meta)).unwrap();
            proptest::prop_assert_eq!((got_len, got), (len, meta.unwrap_or_default()));
        }

        #[test]
        fn fuzz_split_metadata_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_split_meta(&bytes);
        }
    }

    #[test]
    fn lmcache_metadata_round_trips_and_accepts_several_groups() {
        let meta = ChunkMeta::new(MemoryFormat::Kv2Ltd, crate::Dtype::Bfloat16, &[2, 32, 256, 1024]).unwrap();
        let bytes = split_meta(33_554_432, Some(meta));
        let ints: Vec<i32> = bytes
            .chunks(4)
            .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(
            ints,
            [33_554_432, 1, 3, 2, 32, 256, 1024],
            "LMCache's codes: KV_2LTD 1, bfloat16 3"
        );
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
        // Codes this version does not know are kept whole, and written back the same.
        let other: Vec<u8> = [10i32, 70_000, 4242, 1, 0, 0, 0]
            .iter()
            .flat_map(|i| i.to_ne_bytes())
            .collect();
        let (_, m) = parse_split_meta(&other).unwrap();
        assert_eq!((m.fmt, m.dtype), (MemoryFormat::Other(70_000), DtypeCode(4242)));
        assert_eq!(split_meta(10, Some(m)), other);
    }
}
