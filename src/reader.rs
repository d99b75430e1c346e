//! Reading replies without blocking: a resumable state machine over a read buffer. Each call reads what the source
//! has and returns `None` when it would have to wait, keeping a half-read reply (a 32 MiB value that arrived in
//! part) where it stopped. Small values are cut from shared blocks; large payloads are read straight from the
//! source into a buffer of exactly their size (pooled, or the caller's own), never through the read buffer.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::frame::{FRAME_HEADER, Verifier, header_checksum};
use crate::pool::{BufferPool, POOLED_VALUE};
use crate::request::{DestSlot, Fill};
use crate::resp::{Head, ServerReply, frame_end, parse_head};

/// Read buffer size; grows (up to `MAX_READ_BUF`) only for one structured reply or line that does not fit.
const READ_BUF: usize = 64 << 10;
const MAX_READ_BUF: usize = 64 << 20;
/// Values up to this size are gathered whole in the read buffer and copied into `ARENA_BLOCK`-sized shared
/// blocks; a block is freed when the last value cut from it is dropped.
const SMALL_VALUE: usize = 8 << 10;
const ARENA_BLOCK: usize = 128 << 10;
/// A payload with at least this much still to come, and nothing of it buffered, is read straight from the source.
const DIRECT: usize = 32 << 10;

/// Where reads come from: a socket, a TLS stream, or a test's script.
pub(crate) trait Source: Read {
    /// Whether bytes may be readable without the socket being readable (TLS records already decrypted).
    fn pending(&self) -> bool {
        false
    }
}

/// What the next reply should be, and where its payload goes.
#[derive(Clone)]
pub(crate) enum Expect {
    /// Any reply, decoded whole (`CLUSTER SLOTS`, `INFO`, `ROLE`, ...).
    Value,
    /// A status, an integer, an error or a nil (`SET`, `EXISTS`, `DEL`, `WAIT`, `ASKING`, `PING`, `AUTH`, ...).
    Scalar,
    /// A bulk string or nil (`GET`); `verify` checks it as a chunk frame while reading.
    Bulk { verify: bool },
    /// A bulk string read straight into a caller's buffer (`GET` into a destination).
    Fill { dest: DestSlot, fill: Fill },
    /// An array of `n` bulk strings (`MGET`).
    Bulks { n: usize, verify: bool },
}

/// A reply, shaped as its `Expect` asked.
#[derive(Debug)]
pub(crate) enum Reply {
    Scalar(Head),
    Bulk(std::result::Result<Bulk, ServerReply>),
    Filled(std::result::Result<Filled, ServerReply>),
    Bulks(std::result::Result<Vec<std::result::Result<Bulk, ServerReply>>, ServerReply>),
    Value(redis::Value),
}

/// A bulk reply read as a value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bulk {
    Nil,
    Value(Bytes),
    /// Asked to be verified as a chunk frame, and not a sound one.
    Corrupt,
}

/// A bulk reply read into a destination.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filled {
    Nil,
    /// The buffer now holds the value (or, framed, its payload) of this many bytes.
    Bytes(usize),
    /// Not a sound frame (framed fills only).
    Corrupt,
    /// The stored value does not fit the buffer: its size (payload size when framed). It was read and dropped.
    WrongSize(usize),
    /// The caller took its buffer back before the value arrived; it was read and dropped.
    Abandoned,
}

/// The reading side of one connection.
pub(crate) struct Reader {
    node: String,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Where small values are cut from.
    arena: BytesMut,
    /// Where large values are read into, when set.
    pool: Option<Arc<BufferPool>>,
    state: State,
    /// Bytes read so far.
    received: u64,
}

/// A reply read in part.
enum State {
    Idle,
    Single(Payload),
    /// An `MGET`: the elements so far, how many are left, and the one being read.
    Array {
        items: Vec<std::result::Result<Bulk, ServerReply>>,
        left: usize,
        verify: bool,
        current: Option<Payload>,
    },
}

/// What `advance` needs next.
enum Progress {
    Done(Reply),
    /// More bytes in the read buffer.
    Need,
    /// Bytes read straight into the payload being read.
    Direct,
}

impl Reader {
    pub(crate) fn new(node: &str) -> Reader {
        Reader {
            node: node.to_string(),
            buf: vec![0; READ_BUF],
            pos: 0,
            end: 0,
            arena: BytesMut::new(),
            pool: None,
            state: State::Idle,
            received: 0,
        }
    }

    /// Reads large values into buffers from `pool`.
    pub(crate) fn set_pool(&mut self, pool: Arc<BufferPool>) {
        self.pool = Some(pool);
    }

    /// Bytes read from the source so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Reads the next reply as far as `src` allows: `Ok(None)` when it would block (the reply, or what has come of
    /// it, is kept until the next call, which must pass the same `expect`). An `Err` leaves the connection out of
    /// step with the server: it must be dropped.
    pub(crate) fn read(&mut self, src: &mut impl Source, expect: &Expect) -> Result<Option<Reply>> {
        loop {
            match self.advance(expect) {
                Err(detail) => return Err(Error::protocol(&self.node, detail)),
                Ok(Progress::Done(reply)) => return Ok(Some(reply)),
                Ok(Progress::Need) => {
                    if !self.fill(src)? {
                        return Ok(None);
                    }
                }
                Ok(Progress::Direct) => {
                    let payload = match &mut self.state {
                        State::Single(p) => p,
                        State::Array { current: Some(p), .. } => p,
                        _ => unreachable!("direct reads happen inside a payload"),
                    };
                    let (n, asked) = match payload.read_direct(src) {
                        Ok(got) => got,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(Error::io(&self.node, e)),
                    };
                    if n == 0 {
                        return Err(closed(&self.node));
                    }
                    self.received += n as u64;
                    // A short read drained the socket: wait for it rather than ask again and be told to wait.
                    if n < asked && !src.pending() {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads once from `src` into the buffer; `false` when it would block.
    fn fill(&mut self, src: &mut impl Source) -> Result<bool> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_READ_BUF {
                return Err(Error::protocol(
                    &self.node,
                    "reply line or structured reply above 64 MiB",
                ));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            return match src.read(&mut self.buf[self.end..]) {
                Ok(0) => Err(closed(&self.node)),
                Ok(n) => {
                    self.end += n;
                    self.received += n as u64;
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(Error::io(&self.node, e)),
            };
        }
    }

    /// Moves the reply along with the bytes buffered. Pure: no I/O.
    fn advance(&mut self, expect: &Expect) -> std::result::Result<Progress, String> {
        loop {
            match &mut self.state {
                State::Idle => {
                    let avail = &self.buf[self.pos..self.end];
                    if let Expect::Value = expect {
                        let Some(n) = frame_end(avail)? else {
                            return Ok(Progress::Need);
                        };
                        let value = redis::parse_redis_value(&avail[..n]).map_err(|e| e.to_string())?;
                        self.pos += n;
                        return Ok(Progress::Done(Reply::Value(value)));
                    }
                    let Some((head, used)) = parse_head(avail)? else {
                        return Ok(Progress::Need);
                    };
                    match (expect, head) {
                        (
                            Expect::Scalar,
                            h
                            @ (Head::Simple(_) | Head::Error(_) | Head::Int(_) | Head::Bulk(None) | Head::Array(None)),
                        ) => {
                            self.pos += used;
                            return Ok(Progress::Done(Reply::Scalar(h)));
                        }
                        (Expect::Bulk { .. }, Head::Error(e)) => {
                            self.pos += used;
                            return Ok(Progress::Done(Reply::Bulk(Err(e))));
                        }
                        (Expect::Bulk { .. }, Head::Bulk(None)) => {
                            self.pos += used;
                            return Ok(Progress::Done(Reply::Bulk(Ok(Bulk::Nil))));
                        }
                        (Expect::Bulk { verify }, Head::Bulk(Some(len))) => {
                            if len <= SMALL_VALUE {
                                // Whole or not at all: the head stays unread until the value is buffered.
                                return match self.small_value(used, len, *verify)? {
                                    Some(bulk) => Ok(Progress::Done(Reply::Bulk(Ok(bulk)))),
                                    None => Ok(Progress::Need),
                                };
                            }
                            self.pos += used;
                            self.state = State::Single(Payload::owned(len, *verify, self.pool.as_ref()));
                        }
                        (Expect::Fill { .. }, Head::Error(e)) => {
                            self.pos += used;
                            return Ok(Progress::Done(Reply::Filled(Err(e))));
                        }
                        (Expect::Fill { .. }, Head::Bulk(None)) => {
                            self.pos += used;
                            return Ok(Progress::Done(Reply::Filled(Ok(Filled::Nil))));
                        }
                        (Expect::Fill { dest, fill }, Head::Bulk(Some(len))) => {
                            self.pos += used;
                            self.state = State::Single(Payload::fill(len, dest, *fill));
                        }
                        (Expect::Bulks { .. }, Head::Error(e)) => {
                            self.pos += used;
                            return Ok(Progress::Done(Reply::Bulks(Err(e))));
                        }
                        (Expect::Bulks { n, verify }, Head::Array(Some(m))) if m == *n => {
                            self.pos += used;
                            self.state = State::Array {
                                items: Vec::with_capacity(m),
                                left: m,
                                verify: *verify,
                                current: None,
                            };
                        }
                        (_, other) => return Err(format!("unexpected reply {other:?}")),
                    }
                }
                State::Single(payload) => {
                    match payload.advance(&self.buf[self.pos..self.end])? {
                        (used, Step::Complete) => self.pos += used,
                        (used, step) => {
                            self.pos += used;
                            return Ok(step.into());
                        }
                    }
                    let State::Single(payload) = std::mem::replace(&mut self.state, State::Idle) else {
                        unreachable!()
                    };
                    return Ok(Progress::Done(payload.finish(self.pool.as_ref())));
                }
                State::Array {
                    current: Some(payload), ..
                } => {
                    match payload.advance(&self.buf[self.pos..self.end])? {
                        (used, Step::Complete) => self.pos += used,
                        (used, step) => {
                            self.pos += used;
                            return Ok(step.into());
                        }
                    }
                    let State::Array {
                        items, left, current, ..
                    } = &mut self.state
                    else {
                        unreachable!()
                    };
                    let Reply::Bulk(item) = current.take().expect("checked").finish(self.pool.as_ref()) else {
                        unreachable!("an owned payload finishes as a bulk")
                    };
                    items.push(item);
                    *left -= 1;
                }
                State::Array { left: 0, .. } => {
                    let State::Array { items, .. } = std::mem::replace(&mut self.state, State::Idle) else {
                        unreachable!()
                    };
                    return Ok(Progress::Done(Reply::Bulks(Ok(items))));
                }
                State::Array { verify, .. } => {
                    let verify = *verify;
                    let Some((head, used)) = parse_head(&self.buf[self.pos..self.end])? else {
                        return Ok(Progress::Need);
                    };
                    let item = match head {
                        Head::Bulk(None) => {
                            self.pos += used;
                            Ok(Bulk::Nil)
                        }
                        Head::Error(e) => {
                            self.pos += used;
                            Err(e)
                        }
                        Head::Bulk(Some(len)) if len <= SMALL_VALUE => match self.small_value(used, len, verify)? {
                            Some(bulk) => Ok(bulk),
                            None => return Ok(Progress::Need),
                        },
                        Head::Bulk(Some(len)) => {
                            self.pos += used;
                            let payload = Payload::owned(len, verify, self.pool.as_ref());
                            let State::Array { current, .. } = &mut self.state else {
                                unreachable!()
                            };
                            *current = Some(payload);
                            continue;
                        }
                        other => return Err(format!("unexpected element {other:?} in an array of values")),
                    };
                    let State::Array { items, left, .. } = &mut self.state else {
                        unreachable!()
                    };
                    items.push(item);
                    *left -= 1;
                }
            }
        }
    }

    /// A small value whose head is `head_len` bytes, taken whole from the buffer (head included) into a shared
    /// block; `None` when it is not all buffered yet.
    fn small_value(&mut self, head_len: usize, len: usize, verify: bool) -> std::result::Result<Option<Bulk>, String> {
        let start = self.pos + head_len;
        if self.end < start + len + 2 {
            return Ok(None);
        }
        if &self.buf[start + len..start + len + 2] != b"\r\n" {
            return Err("bulk string not followed by CRLF".into());
        }
        if self.arena.capacity() < len {
            self.arena.reserve(ARENA_BLOCK);
        }
        self.arena.extend_from_slice(&self.buf[start..start + len]);
        self.pos = start + len + 2;
        let value = self.arena.split().freeze();
        Ok(Some(checked(value, verify.then(Verifier::default), false)))
    }
}

fn closed(node: &str) -> Error {
    Error::io(
        node,
        io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by the server"),
    )
}

/// A value read whole, checked as a chunk frame when asked (`fed`: whether the verifier has seen it already).
fn checked(value: Bytes, verifier: Option<Verifier>, fed: bool) -> Bulk {
    match verifier {
        None => Bulk::Value(value),
        Some(mut v) => {
            if !fed {
                v.feed_value(&value);
            }
            if v.finish(&value) {
                Bulk::Value(value)
            } else {
                Bulk::Corrupt
            }
        }
    }
}

/// What a payload needs after taking what was buffered.
enum Step {
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
struct Payload {
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
    fn owned(len: usize, verify: bool, pool: Option<&Arc<BufferPool>>) -> Payload {
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

    fn fill(len: usize, dest: &DestSlot, fill: Fill) -> Payload {
        let framed = fill == Fill::Framed;
        let header_len = if framed { FRAME_HEADER } else { 0 };
        let size = dest.lock().as_mut().map(|d| d.bytes().len());
        let sink = match size {
            None => Sink::Discard {
                outcome: Filled::Abandoned,
            },
            Some(size) if size + header_len != len => Sink::Discard {
                outcome: Filled::WrongSize(len.saturating_sub(header_len)),
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
    fn header_left(&self) -> usize {
        match &self.sink {
            Sink::Fill { framed: true, .. } => FRAME_HEADER.saturating_sub(self.got),
            _ => 0,
        }
    }

    /// Takes what it needs of `avail` (its bytes, then the CRLF); returns how much it took and what it needs next.
    fn advance(&mut self, avail: &[u8]) -> std::result::Result<(usize, Step), String> {
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
    fn absorb(&mut self, mut bytes: &[u8]) {
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
    fn read_direct(&mut self, src: &mut impl Source) -> io::Result<(usize, usize)> {
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
    fn finish(self, pool: Option<&Arc<BufferPool>>) -> Reply {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Destination;
    use parking_lot::Mutex;

    /// Yields `data` in pieces of at most `chunk` bytes, answering `WouldBlock` before each piece.
    struct Script {
        data: Vec<u8>,
        at: usize,
        chunk: usize,
        blocked: bool,
    }

    impl Script {
        fn new(data: &[u8], chunk: usize) -> Script {
            Script {
                data: data.to_vec(),
                at: 0,
                chunk,
                blocked: false,
            }
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if !self.blocked {
                self.blocked = true;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.blocked = false;
            let n = self.chunk.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Source for Script {}

    impl Source for io::Cursor<Vec<u8>> {}

    /// Reads one reply per `expect` from `data` delivered `chunk` bytes at a time, retrying after each `None`.
    fn read_all(data: &[u8], chunk: usize, expects: &[Expect]) -> Vec<Reply> {
        let mut src = Script::new(data, chunk);
        let mut reader = Reader::new("n:1");
        reader.set_pool(BufferPool::new(64 << 20));
        let mut out = Vec::new();
        for expect in expects {
            let mut spins = 0;
            loop {
                match reader.read(&mut src, expect).unwrap() {
                    Some(r) => break out.push(r),
                    None => {
                        spins += 1;
                        assert!(spins < 10_000_000, "no progress");
                    }
                }
            }
        }
        assert_eq!(reader.received(), data.len() as u64);
        out
    }

    fn bulk(v: &[u8]) -> Vec<u8> {
        let mut out = format!("${}\r\n", v.len()).into_bytes();
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
        out
    }

    fn value_of(r: &Reply) -> Vec<u8> {
        match r {
            Reply::Bulk(Ok(Bulk::Value(v))) => v.to_vec(),
            other => panic!("not a value: {other:?}"),
        }
    }

    #[test]
    fn every_split_point_gives_the_same_replies() {
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mid: Vec<u8> = (0..20_000u32).map(|i| (i * 3) as u8).collect();
        let mut data = b"+OK\r\n:42\r\n-MOVED 7 h:2\r\n$-1\r\n".to_vec();
        data.extend(bulk(b"small"));
        data.extend(bulk(&big));
        data.extend(b"*4\r\n");
        data.extend(bulk(b"a"));
        data.extend(b"$-1\r\n");
        data.extend(bulk(&mid));
        data.extend(bulk(&big));
        data.extend(b"*2\r\n:1\r\n*1\r\n+x\r\n");
        let expects = [
            Expect::Scalar,
            Expect::Scalar,
            Expect::Bulk { verify: false },
            Expect::Bulk { verify: false },
            Expect::Bulk { verify: false },
            Expect::Bulk { verify: false },
            Expect::Bulks { n: 4, verify: false },
            Expect::Value,
        ];
        for chunk in [1, 2, 3, 5, 7, 13, 64, 1000, 4096, 70_000, 1 << 20] {
            let r = read_all(&data, chunk, &expects);
            assert!(matches!(&r[0], Reply::Scalar(Head::Simple(s)) if s == "OK"));
            assert!(matches!(&r[1], Reply::Scalar(Head::Int(42))));
            assert!(matches!(&r[2], Reply::Bulk(Err(e)) if e.code == "MOVED" && e.detail == "7 h:2"));
            assert!(matches!(&r[3], Reply::Bulk(Ok(Bulk::Nil))));
            assert_eq!(value_of(&r[4]), b"small");
            assert_eq!(value_of(&r[5]), big, "chunk {chunk}");
            let Reply::Bulks(Ok(items)) = &r[6] else {
                panic!("{:?}", r[6])
            };
            assert_eq!(items.len(), 4);
            assert_eq!(items[0], Ok(Bulk::Value(Bytes::from_static(b"a"))));
            assert_eq!(items[1], Ok(Bulk::Nil));
            assert_eq!(items[2], Ok(Bulk::Value(Bytes::from(mid.clone()))));
            assert_eq!(items[3], Ok(Bulk::Value(Bytes::from(big.clone()))));
            let Reply::Value(redis::Value::Array(v)) = &r[7] else {
                panic!("{:?}", r[7])
            };
            assert_eq!(v[0], redis::Value::Int(1));
        }
    }

    /// A chunk frame: header, then payload.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = crate::frame::encode(payload, None).to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn dest(len: usize) -> DestSlot {
        Arc::new(Mutex::new(Some(Box::new(vec![0u8; len]) as Box<dyn Destination>)))
    }

    fn contents(d: &DestSlot) -> Vec<u8> {
        let b = d.lock().take().unwrap();
        *b.into_any().downcast::<Vec<u8>>().unwrap()
    }

    #[test]
    fn fills_go_into_the_callers_buffer_and_check_frames() {
        let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let framed = frame(&payload);
        let mut bad = framed.clone();
        bad[FRAME_HEADER + 10] ^= 1;
        let mut data = bulk(&framed);
        data.extend(bulk(&bad));
        data.extend(bulk(&payload));
        data.extend(bulk(&payload[..10]));
        data.extend(b"$-1\r\n-ERR no\r\n");
        for chunk in [1, 7, 4096, 1 << 20] {
            let dests: Vec<DestSlot> = (0..6).map(|_| dest(payload.len())).collect();
            let fill = |i: usize, f| Expect::Fill {
                dest: dests[i].clone(),
                fill: f,
            };
            let r = read_all(
                &data,
                chunk,
                &[
                    fill(0, Fill::Framed),
                    fill(1, Fill::Framed),
                    fill(2, Fill::Raw),
                    fill(3, Fill::Raw),
                    fill(4, Fill::Raw),
                    fill(5, Fill::Raw),
                ],
            );
            let outcome = |i: usize| match &r[i] {
                Reply::Filled(Ok(f)) => format!("{f:?}"),
                Reply::Filled(Err(e)) => e.code.clone(),
                other => panic!("{other:?}"),
            };
            assert_eq!(outcome(0), format!("{:?}", Filled::Bytes(payload.len())));
            assert_eq!(contents(&dests[0]), payload);
            assert_eq!(outcome(1), "Corrupt");
            assert_eq!(outcome(2), format!("{:?}", Filled::Bytes(payload.len())));
            assert_eq!(contents(&dests[2]), payload);
            assert_eq!(outcome(3), "WrongSize(10)");
            assert_eq!(outcome(4), "Nil");
            assert_eq!(outcome(5), "ERR");
        }
    }

    #[test]
    fn a_buffer_taken_back_midway_is_let_go() {
        let payload = vec![9u8; 200_000];
        let data = bulk(&payload);
        let d = dest(payload.len());
        let expect = Expect::Fill {
            dest: d.clone(),
            fill: Fill::Raw,
        };
        let mut src = Script::new(&data, 50_000);
        let mut reader = Reader::new("n:1");
        let mut taken = false;
        let reply = loop {
            if let Some(r) = reader.read(&mut src, &expect).unwrap() {
                break r;
            }
            if src.at > 60_000 && !taken {
                taken = d.lock().take().is_some();
            }
        };
        assert!(taken);
        assert!(matches!(reply, Reply::Filled(Ok(Filled::Abandoned))), "{reply:?}");
    }

    #[test]
    fn verified_values_that_are_not_frames_read_as_corrupt() {
        let good = frame(&[5u8; 40_000]);
        let small = frame(b"tiny");
        let mut data = bulk(&good);
        data.extend(bulk(b"not a frame"));
        data.extend(bulk(&small));
        let r = read_all(&data, 333, &vec![Expect::Bulk { verify: true }; 3]);
        assert_eq!(value_of(&r[0]), good);
        assert!(matches!(r[1], Reply::Bulk(Ok(Bulk::Corrupt))));
        assert_eq!(value_of(&r[2]), small);
    }

    #[test]
    fn broken_replies_are_protocol_errors() {
        let cases: [(&[u8], Expect); 6] = [
            (b"$3\r\nabcXY", Expect::Bulk { verify: false }),
            (b"*2\r\n$1\r\na\r\n", Expect::Bulks { n: 3, verify: false }),
            (b"*1\r\n:5\r\n", Expect::Bulks { n: 1, verify: false }),
            (b"$2\r\nab\r\n", Expect::Scalar),
            (b"!oops\r\n", Expect::Scalar),
            (b"$99999999999\r\n", Expect::Bulk { verify: false }),
        ];
        for (data, expect) in cases {
            let mut src = Script::new(data, 1 << 20);
            let mut reader = Reader::new("n:1");
            let err = loop {
                match reader.read(&mut src, &expect) {
                    Ok(None) if src.at < src.data.len() => continue,
                    Ok(other) => panic!("{:?}: {other:?}", String::from_utf8_lossy(data)),
                    Err(e) => break e,
                }
            };
            assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        }
    }

    #[test]
    fn a_closed_source_is_an_io_error() {
        let mut src = io::Cursor::new(b"$10\r\nabc".to_vec());
        let mut reader = Reader::new("n:1");
        let err = reader.read(&mut src, &Expect::Bulk { verify: false }).unwrap_err();
        assert!(err.is_io(), "{err:?}");
    }
}
