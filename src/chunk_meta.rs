//! What a chunk's tensors look like, in LMCache's own terms: its `MemoryFormat`, its metadata dtype codes, and a
//! shape of up to four dimensions. Pure.
//!
//! LMCache stores these as int32 codes. Codes this version does not know (written by a newer LMCache, or another
//! writer) are kept as they are, never rejected or narrowed, so a chunk read and written back keeps them.

use std::fmt;

use crate::chunk_key::Dtype;
use crate::error::{Error, Result};

/// Most dimensions a shape may have (LMCache pads shorter shapes with zeros).
pub const MAX_RANK: usize = 4;

/// LMCache's `MemoryFormat`: how the KV tensors of a chunk are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum MemoryFormat {
    /// `UNDEFINED` (0).
    #[default]
    Undefined,
    /// `KV_2LTD` (1): `[2, layers, tokens, hidden]`, the usual layout of a chunk.
    Kv2Ltd,
    /// `KV_T2D` (2): `[tokens, 2, hidden]`.
    KvT2D,
    /// `KV_2TD` (3): `[2, tokens, hidden]`.
    Kv2Td,
    /// `BINARY` (4): opaque bytes.
    Binary,
    /// `BINARY_BUFFER` (5): opaque bytes in a buffer.
    BinaryBuffer,
    /// `KV_MLA_FMT` (6): multi-head latent attention's compressed KV.
    KvMlaFmt,
    /// `EC_TD` (7).
    EcTd,
    /// `HS_TD` (8).
    HsTd,
    /// A code this version does not know, kept as it was read.
    Other(i32),
}

/// LMCache's names and codes, in order.
const FORMATS: [(MemoryFormat, &str, i32); 9] = [
    (MemoryFormat::Undefined, "UNDEFINED", 0),
    (MemoryFormat::Kv2Ltd, "KV_2LTD", 1),
    (MemoryFormat::KvT2D, "KV_T2D", 2),
    (MemoryFormat::Kv2Td, "KV_2TD", 3),
    (MemoryFormat::Binary, "BINARY", 4),
    (MemoryFormat::BinaryBuffer, "BINARY_BUFFER", 5),
    (MemoryFormat::KvMlaFmt, "KV_MLA_FMT", 6),
    (MemoryFormat::EcTd, "EC_TD", 7),
    (MemoryFormat::HsTd, "HS_TD", 8),
];

impl MemoryFormat {
    /// LMCache's int32 code.
    pub fn code(self) -> i32 {
        match self {
            MemoryFormat::Other(code) => code,
            known => FORMATS.iter().find(|(f, ..)| *f == known).map_or(0, |(_, _, c)| *c),
        }
    }

    /// The format of an LMCache code; an unknown code is kept as [`MemoryFormat::Other`].
    pub fn from_code(code: i32) -> MemoryFormat {
        FORMATS
            .iter()
            .find(|(_, _, c)| *c == code)
            .map_or(MemoryFormat::Other(code), |(f, ..)| *f)
    }

    /// LMCache's name (`KV_2LTD`, ...), `None` for an unknown code.
    pub fn name(self) -> Option<&'static str> {
        FORMATS.iter().find(|(f, ..)| *f == self).map(|(_, n, _)| *n)
    }
}

impl fmt::Display for MemoryFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "MemoryFormat({})", self.code()),
        }
    }
}

/// LMCache's metadata dtype codes: none 0, half 1, float16 2, bfloat16 3, float32 4, float64 5, uint8 6,
/// float8_e4m3fn 7, float8_e5m2 8. `half` and `float16` are one dtype, written as 2.
const DTYPE_CODES: [(Dtype, i32); 7] = [
    (Dtype::Half, 2),
    (Dtype::Bfloat16, 3),
    (Dtype::Float, 4),
    (Dtype::Double, 5),
    (Dtype::Uint8, 6),
    (Dtype::Fp8E4m3fn, 7),
    (Dtype::Fp8E5m2, 8),
];

/// The dtype code in LMCache's metadata, as read or written: any int32, known or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DtypeCode(pub i32);

impl DtypeCode {
    /// No dtype (0).
    pub const NONE: DtypeCode = DtypeCode(0);

    /// The code LMCache writes for `dtype`; `None` for the dtypes its metadata has no code for (`int8`,
    /// `int16`, `int32`, `int64`, `bool`, `fp8_e4m3fnuz`, `fp8_e5m2fnuz`).
    pub fn of(dtype: Dtype) -> Option<DtypeCode> {
        DTYPE_CODES
            .iter()
            .find(|(d, _)| *d == dtype)
            .map(|(_, c)| DtypeCode(*c))
    }

    /// The dtype this code names (1 and 2 are both `half`); `None` for 0 and for codes this version does not know.
    pub fn dtype(self) -> Option<Dtype> {
        match self.0 {
            1 => Some(Dtype::Half),
            code => DTYPE_CODES.iter().find(|(_, c)| *c == code).map(|(d, _)| *d),
        }
    }
}

/// What a chunk's tensors look like, in LMCache's metadata terms: stored with a chunk by the framed and split
/// layouts, returned with it by reads.
///
/// ```
/// use kvcache_redis::{ChunkMeta, Dtype, MemoryFormat};
/// let meta = ChunkMeta::new(MemoryFormat::Kv2Ltd, Dtype::Bfloat16, &[2, 32, 256, 1024])?;
/// assert_eq!((meta.fmt.code(), meta.dtype.0, meta.dims()), (1, 3, &[2, 32, 256, 1024][..]));
/// assert!(ChunkMeta::new(MemoryFormat::Kv2Ltd, Dtype::Int8, &[2]).is_err()); // no LMCache code for int8
/// # Ok::<(), kvcache_redis::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChunkMeta {
    /// LMCache's `MemoryFormat`.
    pub fmt: MemoryFormat,
    /// LMCache's dtype code; see [`DtypeCode::dtype`].
    pub dtype: DtypeCode,
    /// The shape, padded with zeros to four dimensions.
    pub shape: [u32; MAX_RANK],
}

impl ChunkMeta {
    /// Metadata for tensors of `dtype` laid out as `fmt`, of `shape` (at most four dimensions). An `InvalidInput`
    /// error for a longer shape, or a dtype LMCache's metadata has no code for.
    pub fn new(fmt: MemoryFormat, dtype: Dtype, shape: &[u32]) -> Result<ChunkMeta> {
        if shape.len() > MAX_RANK {
            return Err(Error::InvalidInput(format!(
                "a chunk shape has at most {MAX_RANK} dimensions, not {} ({shape:?})",
                shape.len()
            )));
        }
        let dtype = DtypeCode::of(dtype).ok_or_else(|| {
            Error::InvalidInput(format!(
                "LMCache's chunk metadata has no code for dtype {dtype} (it has half, bfloat16, float, double, \
                 uint8, fp8_e4m3fn, fp8_e5m2)"
            ))
        })?;
        let mut padded = [0; MAX_RANK];
        padded[..shape.len()].copy_from_slice(shape);
        Ok(ChunkMeta {
            fmt,
            dtype,
            shape: padded,
        })
    }

    /// The shape without its trailing zero padding.
    pub fn dims(&self) -> &[u32] {
        let rank = self.shape.iter().rposition(|&d| d != 0).map_or(0, |i| i + 1);
        &self.shape[..rank]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_formats_have_lmcache_codes() {
        let pinned = [
            ("UNDEFINED", 0),
            ("KV_2LTD", 1),
            ("KV_T2D", 2),
            ("KV_2TD", 3),
            ("BINARY", 4),
            ("BINARY_BUFFER", 5),
            ("KV_MLA_FMT", 6),
            ("EC_TD", 7),
            ("HS_TD", 8),
        ];
        for (name, code) in pinned {
            let f = MemoryFormat::from_code(code);
            assert_eq!(
                (f.name(), f.code(), f.to_string()),
                (Some(name), code, name.to_string())
            );
        }
        assert_eq!(MemoryFormat::Kv2Ltd.code(), 1);
        assert_eq!(MemoryFormat::KvMlaFmt.code(), 6);
        // Codes from other writers are kept, whatever their size.
        for code in [9, 255, 256, 70_000, -1, i32::MAX] {
            let f = MemoryFormat::from_code(code);
            assert_eq!((f, f.code(), f.name()), (MemoryFormat::Other(code), code, None));
        }
        assert_eq!(MemoryFormat::Other(300).to_string(), "MemoryFormat(300)");
    }

    #[test]
    fn dtypes_have_lmcache_codes() {
        let pinned = [
            (Dtype::Half, Some(2)),
            (Dtype::Bfloat16, Some(3)),
            (Dtype::Float, Some(4)),
            (Dtype::Double, Some(5)),
            (Dtype::Uint8, Some(6)),
            (Dtype::Fp8E4m3fn, Some(7)),
            (Dtype::Fp8E5m2, Some(8)),
            (Dtype::Int8, None),
            (Dtype::Int16, None),
            (Dtype::Int32, None),
            (Dtype::Int64, None),
            (Dtype::Bool, None),
            (Dtype::Fp8E4m3fnuz, None),
            (Dtype::Fp8E5m2fnuz, None),
        ];
        for (dtype, code) in pinned {
            assert_eq!(DtypeCode::of(dtype).map(|c| c.0), code, "{dtype}");
            if let Some(c) = code {
                assert_eq!(DtypeCode(c).dtype(), Some(dtype));
            }
        }
        assert_eq!(
            DtypeCode(1).dtype(),
            Some(Dtype::Half),
            "LMCache's 'half' code reads as half too"
        );
        assert_eq!(DtypeCode::NONE.dtype(), None);
        assert_eq!(DtypeCode(1000).dtype(), None);
    }

    #[test]
    fn shapes_up_to_four_dimensions() {
        let m = ChunkMeta::new(MemoryFormat::KvT2D, Dtype::Half, &[256, 2, 4096]).unwrap();
        assert_eq!((m.shape, m.dims()), ([256, 2, 4096, 0], &[256, 2, 4096][..]));
        assert_eq!(
            ChunkMeta::new(MemoryFormat::Binary, Dtype::Uint8, &[]).unwrap().dims(),
            &[] as &[u32]
        );
        let err = ChunkMeta::new(MemoryFormat::Kv2Ltd, Dtype::Half, &[1, 2, 3, 4, 5]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.contains("at most 4")),
            "{err}"
        );
        let err = ChunkMeta::new(MemoryFormat::Kv2Ltd, Dtype::Bool, &[1]).unwrap_err();
        assert!(matches!(&err, Error::InvalidInput(m) if m.contains("bool")), "{err}");
    }
}
