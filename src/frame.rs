//! The framed layout's value format: a 40-byte header, then the payload. Pure.
//!
//! ```text
//! offset size  field (little-endian)
//!  0     4     magic "KVCR"
//!  4     1     version (1)
//!  5     1     flags: bit 0 = metadata present
//!  6     2     reserved, 0
//!  8     8     payload length in bytes
//! 16     4     CRC-32 (IEEE) of bytes 20..40 followed by the payload
//! 20     1     fmt: LMCache MemoryFormat code (0 when no metadata)
//! 21     1     dtype: LMCache metadata dtype code (0 when no metadata)
//! 22     2     reserved, 0
//! 24    16     shape: 4 x u32, unused dimensions 0
//! 40     n     payload
//! ```

use bytes::Bytes;

use crate::chunk_meta::{ChunkMeta, DtypeCode, MemoryFormat};
use crate::error::{Error, Result as CrateResult};

/// Length of the header before the payload.
pub const FRAME_HEADER: usize = 40;
const MAGIC: &[u8; 4] = b"KVCR";
const VERSION: u8 = 1;

/// Why a stored value was not accepted as a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Corrupt {
    Short(usize),
    Magic,
    Version(u8),
    Length {
        header: u64,
        actual: usize,
    },
    /// Flags or reserved bytes this version never writes, or metadata bytes without the flag that says they are.
    Header,
    /// Found by the whole-value check; reads check the sum with a `Verifier` instead.
    #[cfg(test)]
    Checksum,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Corrupt::Short(n) => write!(f, "{n} bytes, shorter than a frame header"),
            Corrupt::Magic => write!(f, "no frame magic"),
            Corrupt::Version(v) => write!(f, "unknown frame version {v}"),
            Corrupt::Length { header, actual } => write!(f, "header says {header} payload bytes, value has {actual}"),
            Corrupt::Header => write!(f, "header bits this version never sets"),
            #[cfg(test)]
            Corrupt::Checksum => write!(f, "checksum mismatch"),
        }
    }
}

/// Whether `meta` fits the header, whose codes are one byte each (LMCache's codes are 0-8 today; a code from
/// another writer outside 0-255 can be stored by the split layout, not this one).
pub(crate) fn fits(meta: &ChunkMeta) -> CrateResult<()> {
    for (what, code) in [("MemoryFormat", meta.fmt.code()), ("dtype", meta.dtype.0)] {
        if !(0..=255).contains(&code) {
            return Err(Error::InvalidInput(format!(
                "the framed layout stores {what} codes 0-255, not {code}"
            )));
        }
    }
    Ok(())
}

/// The header for `payload`.
pub(crate) fn encode(payload: &[u8], meta: Option<ChunkMeta>) -> Bytes {
    let mut h = [0u8; FRAME_HEADER];
    h[0..4].copy_from_slice(MAGIC);
    h[4] = VERSION;
    h[5] = u8::from(meta.is_some());
    h[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let m = meta.unwrap_or_default();
    // `fits` was checked before: each code is one byte here.
    h[20] = m.fmt.code() as u8;
    h[21] = m.dtype.0 as u8;
    for (i, d) in m.shape.iter().enumerate() {
        h[24 + 4 * i..28 + 4 * i].copy_from_slice(&d.to_le_bytes());
    }
    let crc = checksum(&h[20..], payload);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    Bytes::copy_from_slice(&h)
}

/// Checks a framed value's checksum while it is being read, a piece at a time, so the bytes are hashed while
/// they are still in the CPU's caches. The checksum covers the value from offset 20 on, contiguously.
#[derive(Default)]
pub(crate) struct Verifier {
    hasher: crc32fast::Hasher,
    /// Bytes of the value seen so far (by `feed_value`).
    seen: usize,
}

impl Verifier {
    /// Hashes the next piece of a whole framed value, leaving out its first 20 bytes (magic to checksum).
    pub(crate) fn feed_value(&mut self, piece: &[u8]) {
        let skip = 20usize.saturating_sub(self.seen).min(piece.len());
        self.hasher.update(&piece[skip..]);
        self.seen += piece.len();
    }

    /// Hashes bytes that follow the ones fed before (for a header and a payload read into separate buffers).
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// Whether what was fed hashes to `crc`.
    pub(crate) fn matches(self, crc: u32) -> bool {
        self.hasher.finalize() == crc
    }

    /// Whether the whole `value`, all of it fed with `feed_value`, is a sound frame.
    pub(crate) fn finish(self, value: &[u8]) -> bool {
        value.len() >= FRAME_HEADER
            && check_header(value).is_ok()
            && self.matches(u32::from_le_bytes(value[16..20].try_into().expect("4 bytes")))
    }
}

/// Whether a frame header announces a sound frame of `payload_len` bytes; its checksum when so.
pub(crate) fn header_checksum(header: &[u8; FRAME_HEADER], payload_len: usize) -> Option<u32> {
    let sound = &header[0..4] == MAGIC
        && header[4] == VERSION
        && spare_bits_clear(header)
        && u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")) == payload_len as u64;
    sound.then(|| u32::from_le_bytes(header[16..20].try_into().expect("4 bytes")))
}

/// The bytes the checksum does not cover, beside magic, version and length, are as this version writes them:
/// flags 0 or 1, reserved bytes 0, and no metadata bytes without the flag (a flag flipped off would otherwise
/// hide metadata; one flipped on shows all-zero metadata, which reads as none).
fn spare_bits_clear(h: &[u8]) -> bool {
    h[5] <= 1 && h[6] == 0 && h[7] == 0 && (h[5] == 1 || h[20..FRAME_HEADER].iter().all(|&b| b == 0))
}

fn check_header(value: &[u8]) -> Result<(), Corrupt> {
    if value.len() < FRAME_HEADER {
        return Err(Corrupt::Short(value.len()));
    }
    let h = &value[..FRAME_HEADER];
    if &h[0..4] != MAGIC {
        return Err(Corrupt::Magic);
    }
    if h[4] != VERSION {
        return Err(Corrupt::Version(h[4]));
    }
    if !spare_bits_clear(h) {
        return Err(Corrupt::Header);
    }
    let len = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    let actual = value.len() - FRAME_HEADER;
    if len != actual as u64 {
        return Err(Corrupt::Length { header: len, actual });
    }
    Ok(())
}

/// Like `decode`, for a value whose checksum a [`Verifier`] has already checked while reading it.
pub(crate) fn decode_verified(value: Bytes) -> Result<(Bytes, Option<ChunkMeta>), Corrupt> {
    check_header(&value)?;
    Ok(split(value))
}

fn split(value: Bytes) -> (Bytes, Option<ChunkMeta>) {
    let h = &value[..FRAME_HEADER];
    let meta = (h[5] & 1 == 1).then(|| ChunkMeta {
        fmt: MemoryFormat::from_code(h[20].into()),
        dtype: DtypeCode(h[21].into()),
        shape: std::array::from_fn(|i| u32::from_le_bytes(h[24 + 4 * i..28 + 4 * i].try_into().expect("4 bytes"))),
    });
    // All-zero metadata is no metadata (see `spare_bits_clear`).
    let meta = meta.filter(|m| *m != ChunkMeta::default());
    (value.slice(FRAME_HEADER..), meta)
}

/// The payload and metadata of a framed value, without copying the payload.
#[cfg(test)]
pub(crate) fn decode(value: Bytes) -> Result<(Bytes, Option<ChunkMeta>), Corrupt> {
    check_header(&value)?;
    let crc = u32::from_le_bytes(value[16..20].try_into().expect("4 bytes"));
    if checksum(&value[20..FRAME_HEADER], &value[FRAME_HEADER..]) != crc {
        return Err(Corrupt::Checksum);
    }
    Ok(split(value))
}

fn checksum(meta: &[u8], payload: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(meta);
    c.update(payload);
    c.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8], meta: Option<ChunkMeta>) -> Bytes {
        [&encode(payload, meta)[..], payload].concat().into()
    }

    #[test]
    fn round_trips_with_and_without_metadata() {
        let meta = ChunkMeta::new(MemoryFormat::Kv2Ltd, crate::Dtype::Bfloat16, &[2, 32, 256, 1024]).unwrap();
        assert_eq!((meta.fmt.code(), meta.dtype.0), (1, 3));
        assert!(fits(&meta).is_ok());
        let foreign = ChunkMeta {
            fmt: MemoryFormat::Other(300),
            ..meta
        };
        assert!(matches!(fits(&foreign), Err(Error::InvalidInput(m)) if m.contains("300")));
        let (p, m) = decode(framed(b"kv bytes", Some(meta))).unwrap();
        assert_eq!((&p[..], m), (&b"kv bytes"[..], Some(meta)));
        let (p, m) = decode(framed(b"", None)).unwrap();
        assert_eq!((p.len(), m), (0, None));
    }

    #[test]
    fn golden_header() {
        let h = encode(b"abc", None);
        // CRC-32 of 20 zero bytes then "abc", as any CRC-32 (IEEE) implementation computes it.
        let crc = crc32fast::hash(&[&[0u8; 20][..], b"abc"].concat());
        let mut expected = b"KVCR\x01\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00".to_vec();
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&[0u8; 20]);
        assert_eq!(&h[..], &expected[..]);
    }

    #[test]
    fn the_piecewise_verifier_agrees_with_decode() {
        let good = framed(&[5u8; 100_000], Some(ChunkMeta::default()));
        for step in [1, 7, 40, 4096, 100_040] {
            let mut v = Verifier::default();
            for piece in good.chunks(step) {
                v.feed_value(piece);
            }
            assert!(v.finish(&good), "step {step}");
        }
        let mut bad = good.to_vec();
        bad[60_000] ^= 1;
        let mut v = Verifier::default();
        v.feed_value(&bad);
        assert!(!v.finish(&bad));
        let mut v = Verifier::default();
        v.feed_value(b"short");
        assert!(!v.finish(b"short"));
        assert_eq!(decode_verified(good.clone()).unwrap().0.len(), 100_000);
    }

    #[test]
    fn every_kind_of_damage_is_caught() {
        let good = framed(&[7u8; 1000], None);
        let flip = |at: usize| {
            let mut v = good.to_vec();
            v[at] ^= 1;
            Bytes::from(v)
        };
        assert_eq!(decode(good.slice(..30)), Err(Corrupt::Short(30)));
        assert_eq!(decode(flip(0)), Err(Corrupt::Magic));
        assert_eq!(decode(flip(4)), Err(Corrupt::Version(0)));
        assert_eq!(decode(flip(6)), Err(Corrupt::Header));
        // The metadata flag is outside the checksum: flipped on, all-zero metadata reads as none (as written);
        // flipped off under real metadata, the frame is refused.
        assert_eq!(decode(flip(5)).unwrap().1, None);
        let with_meta = framed(
            &[7u8; 10],
            Some(ChunkMeta::new(MemoryFormat::Kv2Ltd, crate::chunk_key::Dtype::Half, &[2, 4]).unwrap()),
        );
        let mut off = with_meta.to_vec();
        off[5] = 0;
        assert_eq!(decode(Bytes::from(off)), Err(Corrupt::Header));
        assert!(matches!(
            decode(good.slice(..good.len() - 1)),
            Err(Corrupt::Length {
                header: 1000,
                actual: 999
            })
        ));
        assert_eq!(decode(flip(FRAME_HEADER + 500)), Err(Corrupt::Checksum));
        assert_eq!(decode(flip(17)), Err(Corrupt::Checksum));
        // Metadata bytes where the flag says there are none are refused; real metadata is covered by the sum.
        assert_eq!(decode(flip(21)), Err(Corrupt::Header));
        let mut damaged = with_meta.to_vec();
        damaged[21] ^= 1;
        assert_eq!(
            decode(Bytes::from(damaged)),
            Err(Corrupt::Checksum),
            "metadata is covered too"
        );
        assert!(
            decode(Bytes::from_static(
                b"plain raw bytes that are long enough to pass the length"
            ))
            .is_err()
        );
    }
}
