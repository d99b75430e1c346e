//! Reading replies without blocking: a resumable state machine over a read buffer. Each call reads what the source
//! has and returns `None` when it would have to wait, keeping a half-read reply (a 32 MiB value that arrived in
//! part) where it stopped. Small values are cut from shared blocks; large payloads are read straight from the
//! source into a buffer of exactly their size (pooled, or the caller's own), never through the read buffer.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

mod payload;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use crate::frame::Verifier;
use crate::pool::BufferPool;
use crate::resp::{Head, ServerReply, frame_end, parse_head};
use crate::value::{DestSlot, Fill};
use payload::{Payload, Step};

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
    /// An array of bulk strings (`MGET`), each read straight into its caller's buffer.
    Fills { dests: Vec<DestSlot>, fill: Fill },
}

/// A reply, shaped as its `Expect` asked.
#[derive(Debug)]
pub(crate) enum Reply {
    Scalar(Head),
    Bulk(std::result::Result<Bulk, ServerReply>),
    Filled(std::result::Result<Filled, ServerReply>),
    Bulks(std::result::Result<Vec<std::result::Result<Bulk, ServerReply>>, ServerReply>),
    Fills(std::result::Result<Vec<std::result::Result<Filled, ServerReply>>, ServerReply>),
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
    /// The stored value is not the buffer's size: its size (payload size when framed). It was read and dropped.
    WrongSize(usize),
    /// The stored value is larger than the buffer (`Fill::Fit`): its size. It was read and dropped.
    TooLarge(usize),
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
        items: Items,
        left: usize,
        verify: bool,
        current: Option<Payload>,
    },
}

/// The elements of an `MGET` read so far: values, or values read into caller buffers (the next one's buffer is
/// `dests[got.len()]`).
enum Items {
    Bulks(Vec<std::result::Result<Bulk, ServerReply>>),
    Fills {
        dests: Vec<DestSlot>,
        fill: Fill,
        got: Vec<std::result::Result<Filled, ServerReply>>,
    },
}

impl Items {
    /// A nil element.
    fn nil(&mut self) {
        match self {
            Items::Bulks(items) => items.push(Ok(Bulk::Nil)),
            Items::Fills { got, .. } => got.push(Ok(Filled::Nil)),
        }
    }

    /// An error element.
    fn error(&mut self, e: ServerReply) {
        match self {
            Items::Bulks(items) => items.push(Err(e)),
            Items::Fills { got, .. } => got.push(Err(e)),
        }
    }

    /// A finished payload's reply, as the next element.
    fn finished(&mut self, reply: Reply) {
        match (self, reply) {
            (Items::Bulks(items), Reply::Bulk(item)) => items.push(item),
            (Items::Fills { got, .. }, Reply::Filled(item)) => got.push(item),
            _ => unreachable!("a payload finishes as its items expect"),
        }
    }

    fn into_reply(self) -> Reply {
        match self {
            Items::Bulks(items) => Reply::Bulks(Ok(items)),
            Items::Fills { got, .. } => Reply::Fills(Ok(got)),
        }
    }
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

    /// Bytes read from the source and not yet part of a reply returned.
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.pos
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
                                let (pos, end) = (self.pos, self.end);
                                return match small_value(&self.buf[pos..end], &mut self.arena, used, len, *verify)? {
                                    Some((bulk, taken)) => {
                                        self.pos += taken;
                                        Ok(Progress::Done(Reply::Bulk(Ok(bulk))))
                                    }
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
                        (Expect::Fills { .. }, Head::Error(e)) => {
                            self.pos += used;
                            return Ok(Progress::Done(Reply::Fills(Err(e))));
                        }
                        (Expect::Bulks { n, verify }, Head::Array(Some(m))) if m == *n => {
                            self.pos += used;
                            self.state = State::Array {
                                items: Items::Bulks(Vec::with_capacity(m)),
                                left: m,
                                verify: *verify,
                                current: None,
                            };
                        }
                        (Expect::Fills { dests, fill }, Head::Array(Some(m))) if m == dests.len() => {
                            self.pos += used;
                            self.state = State::Array {
                                items: Items::Fills {
                                    dests: dests.clone(),
                                    fill: *fill,
                                    got: Vec::with_capacity(m),
                                },
                                left: m,
                                verify: false,
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
                    items.finished(current.take().expect("checked").finish(self.pool.as_ref()));
                    *left -= 1;
                }
                State::Array { left: 0, .. } => {
                    let State::Array { items, .. } = std::mem::replace(&mut self.state, State::Idle) else {
                        unreachable!()
                    };
                    return Ok(Progress::Done(items.into_reply()));
                }
                State::Array { verify, items, .. } => {
                    let verify = *verify;
                    let filling = matches!(items, Items::Fills { .. });
                    let Some((head, used)) = parse_head(&self.buf[self.pos..self.end])? else {
                        return Ok(Progress::Need);
                    };
                    let State::Array {
                        items, left, current, ..
                    } = &mut self.state
                    else {
                        unreachable!()
                    };
                    match head {
                        Head::Bulk(None) => {
                            self.pos += used;
                            items.nil();
                        }
                        Head::Error(e) => {
                            self.pos += used;
                            items.error(e);
                        }
                        Head::Bulk(Some(len)) if !filling && len <= SMALL_VALUE => {
                            let (pos, end) = (self.pos, self.end);
                            match small_value(&self.buf[pos..end], &mut self.arena, used, len, verify)? {
                                Some((bulk, taken)) => {
                                    self.pos += taken;
                                    items.finished(Reply::Bulk(Ok(bulk)));
                                }
                                None => return Ok(Progress::Need),
                            }
                        }
                        Head::Bulk(Some(len)) => {
                            self.pos += used;
                            *current = Some(match items {
                                Items::Bulks(_) => Payload::owned(len, verify, self.pool.as_ref()),
                                Items::Fills { dests, fill, got } => Payload::fill(len, &dests[got.len()], *fill),
                            });
                            continue;
                        }
                        other => return Err(format!("unexpected element {other:?} in an array of values")),
                    }
                    *left -= 1;
                }
            }
        }
    }
}

/// A small value whose head is `head_len` bytes at the start of `avail`, taken whole (head included) into a shared
/// block of `arena`: the value and the bytes it took; `None` when it is not all buffered yet.
fn small_value(
    avail: &[u8],
    arena: &mut BytesMut,
    head_len: usize,
    len: usize,
    verify: bool,
) -> std::result::Result<Option<(Bulk, usize)>, String> {
    let start = head_len;
    if avail.len() < start + len + 2 {
        return Ok(None);
    }
    if &avail[start + len..start + len + 2] != b"\r\n" {
        return Err("bulk string not followed by CRLF".into());
    }
    if arena.capacity() < len {
        arena.reserve(ARENA_BLOCK);
    }
    arena.extend_from_slice(&avail[start..start + len]);
    let value = arena.split().freeze();
    Ok(Some((
        checked(value, verify.then(Verifier::default), false),
        start + len + 2,
    )))
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
