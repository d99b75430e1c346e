//! LMCache's chunk keys: `model@world_size@worker_id@chunk_hash@dtype[@layer_id][@tag%value...]`, formatted and
//! parsed exactly as LMCache (0.5.6) does. Pure.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The tensor dtype of a chunk, by LMCache's names for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// `half` (float16; LMCache writes `torch.float16` as `half` too).
    Half,
    /// `bfloat16`.
    Bfloat16,
    /// `float` (float32).
    Float,
    /// `double` (float64).
    Double,
    /// `int8`.
    Int8,
    /// `uint8`.
    Uint8,
    /// `int16`.
    Int16,
    /// `int32`.
    Int32,
    /// `int64`.
    Int64,
    /// `bool`.
    Bool,
    /// `fp8_e4m3fn`.
    Fp8E4m3fn,
    /// `fp8_e4m3fnuz`.
    Fp8E4m3fnuz,
    /// `fp8_e5m2`.
    Fp8E5m2,
    /// `fp8_e5m2fnuz`.
    Fp8E5m2fnuz,
}

pub(crate) const DTYPES: [(Dtype, &str); 14] = [
    (Dtype::Half, "half"),
    (Dtype::Bfloat16, "bfloat16"),
    (Dtype::Float, "float"),
    (Dtype::Double, "double"),
    (Dtype::Int8, "int8"),
    (Dtype::Uint8, "uint8"),
    (Dtype::Int16, "int16"),
    (Dtype::Int32, "int32"),
    (Dtype::Int64, "int64"),
    (Dtype::Bool, "bool"),
    (Dtype::Fp8E4m3fn, "fp8_e4m3fn"),
    (Dtype::Fp8E4m3fnuz, "fp8_e4m3fnuz"),
    (Dtype::Fp8E5m2, "fp8_e5m2"),
    (Dtype::Fp8E5m2fnuz, "fp8_e5m2fnuz"),
];

impl Dtype {
    /// LMCache's name for it, as in keys.
    pub fn as_str(self) -> &'static str {
        DTYPES.iter().find(|(d, _)| *d == self).map(|(_, s)| *s).unwrap_or("?")
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dtype {
    type Err = Error;

    fn from_str(s: &str) -> Result<Dtype> {
        DTYPES
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(d, _)| *d)
            .ok_or_else(|| Error::InvalidInput(format!("unknown dtype {s:?}")))
    }
}

/// The key of one KV-cache chunk, as LMCache names it.
///
/// ```
/// use kvcache_redis::{ChunkKey, Dtype};
/// let key: ChunkKey = "meta-llama/Llama-3.1-8B-Instruct@1@0@1a2b3c@bfloat16".parse()?;
/// assert_eq!((key.model.as_str(), key.dtype, key.layer), ("meta-llama/Llama-3.1-8B-Instruct", Dtype::Bfloat16, None));
/// assert_eq!(key.to_string(), "meta-llama/Llama-3.1-8B-Instruct@1@0@1a2b3c@bfloat16");
/// # Ok::<(), kvcache_redis::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    /// Model name; may contain `/`, never `@`.
    pub model: String,
    /// Tensor-parallel world size.
    pub world_size: u32,
    /// This worker's rank.
    pub worker_id: u32,
    /// The chunk hash in LMCache's hex form: an int hash as `format(h, 'x')` (no padding, `-` when negative),
    /// a bytes hash as lowercase hex of the bytes. See [`ChunkKey::hash_of_int`] and [`ChunkKey::hash_of_bytes`].
    pub chunk_hash: String,
    /// The dtype of the cached tensors.
    pub dtype: Dtype,
    /// The layer, for layer-wise keys.
    pub layer: Option<u32>,
    /// LMCache's request tags (`lmcache.tag.*`), in order.
    pub tags: Vec<(String, String)>,
}

impl ChunkKey {
    /// A whole-chunk key without tags; `chunk_hash` is in LMCache's hex form.
    pub fn new(model: &str, world_size: u32, worker_id: u32, chunk_hash: &str, dtype: Dtype) -> Result<ChunkKey> {
        let key = ChunkKey {
            model: model.to_string(),
            world_size,
            worker_id,
            chunk_hash: chunk_hash.to_string(),
            dtype,
            layer: None,
            tags: Vec::new(),
        };
        key.validate()?;
        Ok(key)
    }

    /// LMCache's hex form of an int chunk hash (`format(h, 'x')`).
    pub fn hash_of_int(h: i128) -> String {
        if h < 0 {
            format!("-{:x}", h.unsigned_abs())
        } else {
            format!("{h:x}")
        }
    }

    /// LMCache's hex form of a bytes chunk hash (`bytes.hex()`).
    pub fn hash_of_bytes(h: &[u8]) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks that the key formats to a string that parses back to it.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidInput(format!("chunk key: {why}")));
        if self.model.is_empty() || self.model.contains('@') {
            return bad(format!("model name {:?} is empty or contains '@'", self.model));
        }
        let digits = self.chunk_hash.strip_prefix('-').unwrap_or(&self.chunk_hash);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return bad(format!("chunk hash {:?} is not lowercase hex", self.chunk_hash));
        }
        for (k, v) in &self.tags {
            if k.is_empty() || k.contains(['@', '%']) || v.contains('@') {
                return bad(format!(
                    "tag {k:?}={v:?}: '@' is not allowed, nor '%' or emptiness in a name"
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for ChunkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}@{}@{}@{}",
            self.model, self.world_size, self.worker_id, self.chunk_hash, self.dtype
        )?;
        if let Some(layer) = self.layer {
            write!(f, "@{layer}")?;
        }
        for (k, v) in &self.tags {
            write!(f, "@{k}%{v}")?;
        }
        Ok(())
    }
}

impl FromStr for ChunkKey {
    type Err = Error;

    /// Parses LMCache's key string; a sixth field of digits only is a layer id, the rest are `tag%value`.
    fn from_str(s: &str) -> Result<ChunkKey> {
        let bad = |why: &str| Error::InvalidInput(format!("chunk key {s:?}: {why}"));
        let parts: Vec<&str> = s.split('@').collect();
        if parts.len() < 5 {
            return Err(bad("expected model@world_size@worker_id@chunk_hash@dtype"));
        }
        let number = |i: usize, what: &str| -> Result<u32> {
            parts[i]
                .parse()
                .map_err(|_| bad(&format!("{what} {:?} is not a number", parts[i])))
        };
        let mut rest = &parts[5..];
        let layer = match rest.first() {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                rest = &rest[1..];
                Some(p.parse().map_err(|_| bad("layer id out of range"))?)
            }
            _ => None,
        };
        let tags = rest
            .iter()
            .map(|t| {
                t.split_once('%')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| bad(&format!("tag {t:?} is not name%value")))
            })
            .collect::<Result<_>>()?;
        let key = ChunkKey {
            model: parts[0].to_string(),
            world_size: number(1, "world size")?,
            worker_id: number(2, "worker id")?,
            chunk_hash: parts[3].to_string(),
            dtype: parts[4].parse().map_err(|e: Error| bad(&e.to_string()))?,
            layer,
            tags,
        };
        key.validate().map_err(|e| bad(&e.to_string()))?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_lmcache_strings() {
        let cases = [
            "meta-llama/Llama-3.1-8B-Instruct@1@0@1a2b3c@bfloat16",
            "m@8@7@-1f@half",
            "org/sub/model@2@1@00ff@fp8_e4m3fn@31",
            "m@1@0@abc@float@cache_salt%xyz@user%a%b",
            "m@1@0@abc@int8@12@tenant%t1",
        ];
        for s in cases {
            let key: ChunkKey = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(key.to_string(), s);
        }
        let k: ChunkKey = "m@1@0@abc@float@cache_salt%xyz@user%a%b".parse().unwrap();
        assert_eq!(
            k.tags,
            vec![("cache_salt".into(), "xyz".into()), ("user".into(), "a%b".into())]
        );
        let k: ChunkKey = "org/sub/model@2@1@00ff@fp8_e4m3fn@31".parse().unwrap();
        assert_eq!(
            (k.layer, k.dtype, k.world_size, k.worker_id),
            (Some(31), Dtype::Fp8E4m3fn, 2, 1)
        );
    }

    #[test]
    fn hashes_are_written_as_lmcache_writes_them() {
        assert_eq!(ChunkKey::hash_of_int(0x1a2b3c), "1a2b3c");
        assert_eq!(ChunkKey::hash_of_int(-31), "-1f");
        assert_eq!(ChunkKey::hash_of_bytes(&[0x00, 0xff, 0x10]), "00ff10");
        let key = ChunkKey::new("m", 1, 0, &ChunkKey::hash_of_int(255), Dtype::Half).unwrap();
        assert_eq!(key.to_string(), "m@1@0@ff@half");
    }

    #[test]
    fn malformed_strings_say_what_is_wrong() {
        let cases = [
            ("m@1@0@abc", "expected model@"),
            ("m@x@0@abc@half", "world size"),
            ("m@1@-2@abc@half", "worker id"),
            ("m@1@0@ABC@half", "not lowercase hex"),
            ("m@1@0@@half", "not lowercase hex"),
            ("m@1@0@abc@float16", "unknown dtype"),
            ("m@1@0@abc@half@notatag", "not name%value"),
            ("@1@0@abc@half", "model name"),
            ("m@1@0@abc@half@99999999999", "layer id out of range"),
        ];
        for (s, why) in cases {
            match s.parse::<ChunkKey>() {
                Err(Error::InvalidInput(m)) => assert!(m.contains(why), "{s}: {m}"),
                other => panic!("{s}: expected an error, got {other:?}"),
            }
        }
        assert!(ChunkKey::new("a@b", 1, 0, "1", Dtype::Half).is_err());
    }

    #[test]
    fn every_dtype_name_round_trips() {
        for (d, name) in DTYPES {
            assert_eq!(d.as_str(), name);
            assert_eq!(name.parse::<Dtype>().unwrap(), d);
        }
    }
}
