//! A bulk payload being read: into a buffer of its own (pooled when large), into a caller's buffer (a chunk
//! frame's header read apart and checked with the rest), or read and dropped; then its CRLF.

use std::io;
use std::sync::Arc;

use bytes::Bytes;

use super::{DIRECT, Filled, Progress, READ_BUF, Reply, Source, checked};
use crate::frame::{FRAME_HEADER, Verifier, header_checksum};
use crate::pool::{BufferPool, POOLED_VALUE};
use crate::value::{DestSlot, Fill};

/// What a payload needs after taking what was buffered.
pub(super) enum Step {
    Complete,
    Need,
    Direct,
}

impl From<Step> for Progress {
    fn from(step: Step) -> Progress {
        match step {
            Step::Need => Progress::Need,
            Step::Direct => Progress::Direct,
            Step::Complete => unreachable!("handled by the caller"),
        }
    }
}

/// A bulk payload being read: `len` bytes (then CRLF), `got` so far.
pub(super) struct Payload {
    len: usize,
    got: usize,
    sink: Sink,
}

enum Sink {
    /// Into a buffer of its own.
    Owned {
        buf: Vec<u8>,
        pooled: bool,
        verifier: Option<Verifier>,
    },
    /// Into a caller's buffer; framed, the first `FRAME_HEADER` bytes go to `header` and are checked with the rest.
    Fill {
        dest: DestSlot,
        framed: bool,
        header: [u8; FRAME_HEADER],
        verifier: Verifier,
        abandoned: bool,
    },
    /// Read and dropped; the reply is `outcome`.
    Discard { outcome: Filled },
}

impl Payload {
    pub(super) fn owned(len: usize, verify: bool, pool: Option<&Arc<BufferPool>>) -> Payload {
        let pool = pool.filter(|_| len >= POOLED_VALUE);
        Payload {
            len,
            got: 0,
            sink: Sink::Owned {
                buf: match pool {
                    Some(pool) => pool.take(len),
                    None => vec![0; len],
                },
                pooled: pool.is_some(),
                verifier: verify.then(Verifier::default),
            },
        }
    }

    pub(super) fn fill(len: usize, dest: &DestSlot, fill: Fill) -> Payload {
        let framed = fill == Fill::Framed;
        let header_len = if framed { FRAME_HEADER } else { 0 };
        let size = dest.lock().as_mut().map(|d| d.bytes().len());
        let sink = match size {
            None => Sink::Discard {
                outcome: Filled::Abandoned,
            },
            // Fit and framed: the value (the payload, framed) may be shorter than the buffer, never longer; raw
            // chunks are exactly the buffer's size (another size is another configuration's chunk).
            Some(size) if fill != Fill::Raw && len > size + header_len => Sink::Discard {
                outcome: Filled::TooLarge(len - header_len),
            },
            Some(_) if framed && len < FRAME_HEADER => Sink::Discard {
                outcome: Filled::Corrupt,
            },
            Some(size) if fill == Fill::Raw && size != len => Sink::Discard {
                outcome: Filled::WrongSize(len),
            },
            Some(_) => Sink::Fill {
                dest: dest.clone(),
                framed,
                header: [0; FRAME_HEADER],
                verifier: Verifier::default(),
                abandoned: false,
            },
        };
        Payload { len, got: 0, sink }
    }

    /// Bytes of the header still to come (framed fills), which are always taken from the read buffer.
    pub(super) fn header_left(&self) -> usize {
        match &self.sink {
            Sink::Fill { framed: true, .. } => FRAME_HEADER.saturating_sub(self.got),
            _ => 0,
        }
    }

    /// Takes what it needs of `avail` (its bytes, then the CRLF); returns how much it took and what it needs next.
    pub(super) fn advance(&mut self, avail: &[u8]) -> std::result::Result<(usize, Step), String> {
        let take = (self.len - self.got).min(avail.len());
        if take > 0 {
            self.absorb(&avail[..take]);
        }
        if self.got < self.len {
            let direct = self.len - self.got >= DIRECT && self.header_left() == 0;
            let direct = direct && !matches!(self.sink, Sink::Discard { .. });
            return Ok((take, if direct { Step::Direct } else { Step::Need }));
        }
        let rest = &avail[take..];
        if rest.len() < 2 {
            return Ok((take, Step::Need));
        }
        if &rest[..2] != b"\r\n" {
            return Err("bulk string not followed by CRLF".into());
        }
        Ok((take + 2, Step::Complete))
    }

    /// Stores the next bytes of the payload.
    pub(super) fn absorb(&mut self, mut bytes: &[u8]) {
        let got = self.got;
        self.got += bytes.len();
        match &mut self.sink {
            Sink::Owned { buf, verifier, .. } => {
                buf[got..got + bytes.len()].copy_from_slice(bytes);
                if let Some(v) = verifier {
                    v.feed_value(bytes);
                }
            }
            Sink::Fill {
                dest,
                framed,
                header,
                verifier,
                abandoned,
            } => {
                let mut at = got;
                if *framed && at < FRAME_HEADER {
                    let k = (FRAME_HEADER - at).min(bytes.len());
                    header[at..at + k].copy_from_slice(&bytes[..k]);
                    at += k;
                    bytes = &bytes[k..];
                    if at == FRAME_HEADER {
                        verifier.feed(&header[20..]);
                    }
                }
                if bytes.is_empty() {
                    return;
                }
                let skip = if *framed { FRAME_HEADER } else { 0 };
                match dest.lock().as_mut() {
                    Some(d) => d.bytes()[at - skip..at - skip + bytes.len()].copy_from_slice(bytes),
                    None => *abandoned = true,
                }
                verifier.feed(bytes);
            }
            Sink::Discard { .. } => {}
        }
    }

    /// Reads straight from `src` into the payload's buffer; returns (bytes read, bytes asked).
    pub(super) fn read_direct(&mut self, src: &mut impl Source) -> io::Result<(usize, usize)> {
        let (got, len) = (self.got, self.len);
        let asked = len - got;
        let n = match &mut self.sink {
            Sink::Owned { buf, verifier, .. } => {
                let n = src.read(&mut buf[got..len])?;
                if let Some(v) = verifier {
                    v.feed_value(&buf[got..got + n]);
                }
                n
            }
            Sink::Fill {
                dest,
                framed,
                verifier,
                abandoned,
                ..
            } => {
                let skip = if *framed { FRAME_HEADER } else { 0 };
                let mut guard = dest.lock();
                match guard.as_mut() {
                    Some(d) => {
                        let target = &mut d.bytes()[got - skip..len - skip];
                        let n = src.read(target)?;
                        verifier.feed(&target[..n]);
                        n
                    }
                    None => {
                        // The caller took its buffer back: read into a scratch buffer and drop.
                        *abandoned = true;
                        drop(guard);
                        let mut scratch = vec![0u8; asked.min(READ_BUF)];
                        src.read(&mut scratch)?
                    }
                }
            }
            Sink::Discard { .. } => unreachable!("discarded payloads go through the read buffer"),
        };
        self.got += n;
        Ok((n, asked))
    }

    /// The reply, once every byte and the CRLF are in.
    pub(super) fn finish(self, pool: Option<&Arc<BufferPool>>) -> Reply {
        match self.sink {
            Sink::Owned { buf, pooled, verifier } => {
                let value = match (pooled, pool) {
                    (true, Some(pool)) => pool.wrap(buf, self.len),
                    _ => Bytes::from(buf),
                };
                Reply::Bulk(Ok(checked(value, verifier, true)))
            }
            Sink::Fill {
                framed,
                header,
                verifier,
                abandoned,
                ..
            } => Reply::Filled(Ok(if abandoned {
                Filled::Abandoned
            } else if framed {
                match header_checksum(&header, self.len - FRAME_HEADER) {
                    Some(crc) if verifier.matches(crc) => Filled::Bytes(self.len - FRAME_HEADER),
                    _ => Filled::Corrupt,
                }
            } else {
                Filled::Bytes(self.len)
            })),
            Sink::Discard { outcome } => Reply::Filled(Ok(outcome)),
        }
    }
}
