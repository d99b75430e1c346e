//! One connection to one node: a TCP stream with its own read buffer. Commands are encoded by redis-rs, except
//! `SET`, whose payload is written straight from the caller's buffer; replies are decoded by redis-rs, except bulk
//! strings, whose payload is read straight into a buffer of exactly its size.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use redis::Value;

use crate::error::{Error, Result};
use crate::frame::{FRAME_HEADER, Verifier, header_checksum};
use crate::pool::{BufferPool, POOLED_VALUE};
use crate::request::{Fill, SetValue};
use crate::tls::{Stream, TlsClient};

/// Read buffer size; bulk payloads larger than what is buffered are read straight into their destination.
const READ_BUF: usize = 64 << 10;
/// The read buffer grows up to this for one structured reply (`CLUSTER SLOTS` of a large cluster) or line.
const MAX_READ_BUF: usize = 64 << 20;
/// Payloads at least this large are written from the caller's buffer instead of being copied into the command
/// buffer.
const ZERO_COPY_WRITE: usize = 16 << 10;
/// Values up to this size are copied into `ARENA_BLOCK`-sized shared blocks; a block is freed when the last value
/// cut from it is dropped.
const SMALL_VALUE: usize = 8 << 10;
const ARENA_BLOCK: usize = 128 << 10;
/// Largest bulk length accepted from a server: the servers' own default `proto-max-bulk-len`.
pub(crate) const MAX_BULK: usize = 512 << 20;

/// What authenticating and selecting a database needs.
#[derive(Clone)]
pub(crate) struct ConnectOptions {
    pub(crate) timeout: Duration,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: u32,
    pub(crate) tls: Option<TlsClient>,
}

/// A server error reply, split into its code and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerReply {
    pub(crate) code: String,
    pub(crate) detail: String,
}

impl ServerReply {
    fn parse(line: &[u8]) -> ServerReply {
        let text = String::from_utf8_lossy(line);
        let (code, detail) = text.split_once(' ').unwrap_or((&text, ""));
        ServerReply {
            code: code.to_string(),
            detail: detail.to_string(),
        }
    }

    pub(crate) fn into_error(self, node: &str) -> Error {
        Error::Server {
            node: node.to_string(),
            code: self.code,
            detail: self.detail,
        }
    }
}

/// A bulk reply read as a value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bulk {
    Nil,
    Value(Bytes),
    /// Asked to be verified as a chunk frame, and not a sound one.
    Corrupt,
}

/// A bulk reply read into a destination buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filled {
    Nil,
    /// The buffer now holds the value (or, framed, its payload) of this many bytes.
    Bytes(usize),
    /// Not a sound frame (framed fills only).
    Corrupt,
    /// The stored value does not fit the buffer: its size (payload size when framed). It was read and dropped.
    WrongSize(usize),
}

/// The head of one reply: its type and, for scalars, its value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    Simple(String),
    Error(ServerReply),
    Int(i64),
    /// A bulk string of this many bytes follows; `None` is the nil bulk.
    Bulk(Option<usize>),
    /// This many replies follow; `None` is the nil array.
    Array(Option<usize>),
}

/// Commands queued for one write, small ones copied together, large payloads referenced.
#[derive(Default)]
pub(crate) struct Outgoing {
    buf: Vec<u8>,
    /// (end offset in `buf` before this payload, payload)
    payloads: Vec<(usize, Bytes)>,
}

impl Outgoing {
    /// Appends a command encoded by redis-rs.
    pub(crate) fn push_cmd(&mut self, cmd: &redis::Cmd) {
        cmd.write_packed_command(&mut self.buf);
    }

    /// Appends `SET key value [EX ttl]`, referencing the value's body instead of copying it when it is large.
    pub(crate) fn push_set(&mut self, key: &[u8], value: &SetValue, ttl_secs: Option<u64>) {
        let ttl = ttl_secs.map(|t| t.to_string());
        let argc = if ttl.is_some() { 5 } else { 3 };
        let b = &mut self.buf;
        b.extend_from_slice(format!("*{argc}\r\n$3\r\nSET\r\n${}\r\n", key.len()).as_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(format!("\r\n${}\r\n", value.len()).as_bytes());
        b.extend_from_slice(&value.head);
        if value.body.len() >= ZERO_COPY_WRITE {
            self.payloads.push((b.len(), value.body.clone()));
        } else {
            b.extend_from_slice(&value.body);
        }
        b.extend_from_slice(b"\r\n");
        if let Some(t) = ttl {
            b.extend_from_slice(format!("$2\r\nEX\r\n${}\r\n{t}\r\n", t.len()).as_bytes());
        }
    }

    /// Total bytes that will be written.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buf.len() + self.payloads.iter().map(|(_, p)| p.len()).sum::<usize>()
    }
}

/// A connection to one node. After any I/O or protocol error the connection is out of step with the server
/// (replies are matched to requests by order only) and must be dropped.
pub(crate) struct Connection {
    node: String,
    stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Where small values are cut from.
    arena: BytesMut,
    /// Where large values are read into, when set.
    pool: Option<Arc<BufferPool>>,
    /// When reads and writes give up.
    timer: Timer,
}

impl Connection {
    /// Connects to `node` (`host:port`, or `unix:PATH`), authenticates and selects the database.
    pub(crate) fn connect(node: &str, opts: &ConnectOptions) -> Result<Connection> {
        if let Some(path) = node.strip_prefix("unix:") {
            if opts.tls.is_some() {
                return Err(Error::Config("TLS over a Unix socket is not supported".into()));
            }
            let unix = std::os::unix::net::UnixStream::connect(path).map_err(|e| Error::io(node, e))?;
            return Connection::setup(node, Stream::Unix(unix), opts);
        }
        let addrs = node.to_socket_addrs().map_err(|e| Error::io(node, e))?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, opts.timeout) {
                // A connect to a local port nobody listens on can pick that very port as its source and connect
                // to itself (TCP simultaneous open): it would read its own commands back as replies, and hold the
                // port a restarting server needs. Treated as the refusal it stands for.
                Ok(tcp) if tcp.local_addr().ok() == Some(addr) => {
                    last = io::Error::new(io::ErrorKind::ConnectionRefused, "connected to itself: nothing listens");
                }
                Ok(tcp) => {
                    tcp.set_nodelay(true).map_err(|e| Error::io(node, e))?;
                    // The TLS handshake is bounded by the connect timeout too.
                    tcp.set_read_timeout(Some(opts.timeout))
                        .map_err(|e| Error::io(node, e))?;
                    tcp.set_write_timeout(Some(opts.timeout))
                        .map_err(|e| Error::io(node, e))?;
                    let stream = Stream::open(node, tcp, opts.tls.as_ref())?;
                    return Connection::setup(node, stream, opts);
                }
                Err(e) => last = e,
            }
        }
        Err(Error::io(node, last))
    }

    fn setup(node: &str, stream: Stream, opts: &ConnectOptions) -> Result<Connection> {
        let mut conn = Connection {
            node: node.to_string(),
            stream,
            buf: vec![0; READ_BUF],
            pos: 0,
            end: 0,
            arena: BytesMut::new(),
            pool: None,
            timer: Timer {
                deadline: Instant::now() + opts.timeout,
                armed_for: None,
                armed_at: Instant::now(),
                wrote_at: None,
                heard: false,
            },
        };
        let mut out = Outgoing::default();
        let mut expected = 0;
        if let Some(password) = &opts.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &opts.username {
                auth.arg(user);
            }
            out.push_cmd(auth.arg(password));
            expected += 1;
        }
        if opts.db != 0 {
            out.push_cmd(redis::cmd("SELECT").arg(opts.db));
            expected += 1;
        }
        if expected > 0 {
            conn.write(&out)?;
            for _ in 0..expected {
                if let Head::Error(e) = conn.read_head()? {
                    return Err(e.into_error(node));
                }
            }
        }
        Ok(conn)
    }

    /// Reads large values into buffers from `pool`.
    pub(crate) fn with_pool(mut self, pool: Arc<BufferPool>) -> Connection {
        self.pool = Some(pool);
        self
    }

    /// Makes reads and writes give up at `deadline`.
    pub(crate) fn set_deadline(&mut self, deadline: Instant) {
        self.timer.deadline = deadline;
    }

    /// One `read` into `buf`, waiting no later than about the deadline. A socket timeout applies per call, so
    /// it is re-armed with the time left whenever it is older than `REARM` (a server that trickles bytes can
    /// stretch the wait by that much at most, and reads do not each cost a `setsockopt`).
    fn read_some(stream: &mut Stream, node: &str, timer: &mut Timer, buf: &mut [u8]) -> Result<usize> {
        loop {
            let now = Instant::now();
            let left = time_left(node, timer.deadline)?;
            if timer.armed_for != Some(timer.deadline) || now.duration_since(timer.armed_at) >= REARM {
                stream.set_read_timeout(Some(left)).map_err(|e| Error::io(node, e))?;
                timer.armed_for = Some(timer.deadline);
                timer.armed_at = now;
            }
            match stream.read(buf) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by the server");
                    return Err(Error::io(node, e));
                }
                Ok(n) => {
                    timer.heard = true;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(node, e)),
            }
        }
    }

    /// Writes everything queued in `out`, large payloads straight from their buffers.
    pub(crate) fn write(&mut self, out: &Outgoing) -> Result<()> {
        let mut slices = Vec::with_capacity(2 * out.payloads.len() + 1);
        let mut start = 0;
        for (at, payload) in &out.payloads {
            slices.push(IoSlice::new(&out.buf[start..*at]));
            slices.push(IoSlice::new(payload));
            start = *at;
        }
        slices.push(IoSlice::new(&out.buf[start..]));
        slices.retain(|s| !s.is_empty());
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            let left = time_left(&self.node, self.timer.deadline)?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|e| Error::io(&self.node, e))?;
            match self.stream.write_vectored(slices) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "connection closed while writing");
                    return Err(Error::io(&self.node, e));
                }
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.node, e)),
            }
        }
        self.timer.wrote_at = Some(Instant::now());
        self.timer.heard = false;
        Ok(())
    }

    /// How long the node has sent nothing since the last write, if it has sent nothing.
    pub(crate) fn silent_for(&self) -> Option<Duration> {
        self.timer.wrote_at.filter(|_| !self.timer.heard).map(|at| at.elapsed())
    }

    /// What to wait on before reading a reply without blocking on this node: `None` when there is no need to
    /// wait (bytes are buffered already, or the TLS layer may hold some that polling the socket cannot see).
    pub(crate) fn wait_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        if self.pos < self.end {
            return None;
        }
        match &self.stream {
            Stream::Plain(tcp) => Some(tcp.as_fd()),
            Stream::Unix(unix) => Some(unix.as_fd()),
            Stream::Tls(_) => None,
        }
    }

    /// Reads more bytes into the buffer, moving what is unread to its front first and growing the buffer when
    /// one reply does not fit.
    fn fill(&mut self) -> Result<()> {
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
        self.end += Connection::read_some(&mut self.stream, &self.node, &mut self.timer, &mut self.buf[self.end..])?;
        Ok(())
    }

    /// The next line without its CRLF, as a range of the buffer, consumed.
    fn line(&mut self) -> Result<(usize, usize)> {
        // Offset from `pos` up to which no CRLF was found; stays valid when `fill` moves the unread bytes.
        let mut searched = 0;
        loop {
            let unread = &self.buf[self.pos + searched..self.end];
            if let Some(i) = unread.windows(2).position(|w| w == b"\r\n") {
                let line = (self.pos, self.pos + searched + i);
                self.pos = line.1 + 2;
                return Ok(line);
            }
            searched = (self.end - self.pos).saturating_sub(1);
            self.fill()?;
        }
    }

    /// Reads the head of the next reply.
    pub(crate) fn read_head(&mut self) -> Result<Head> {
        let (start, end) = self.line()?;
        let line = &self.buf[start..end];
        let Some((&kind, rest)) = line.split_first() else {
            return Err(Error::protocol(&self.node, "empty reply line"));
        };
        let node = &self.node;
        let int = || -> Result<i64> {
            std::str::from_utf8(rest)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Error::protocol(node, format!("bad number {:?}", String::from_utf8_lossy(rest))))
        };
        let len = |n: i64| -> Result<Option<usize>> {
            match n {
                -1 => Ok(None),
                n if (0..=MAX_BULK as i64).contains(&n) => Ok(Some(n as usize)),
                n => Err(Error::protocol(
                    node,
                    format!("reply announces an impossible length {n}"),
                )),
            }
        };
        Ok(match kind {
            b'+' => Head::Simple(String::from_utf8_lossy(rest).into_owned()),
            b'-' => Head::Error(ServerReply::parse(rest)),
            b':' => Head::Int(int()?),
            b'$' => Head::Bulk(len(int()?)?),
            b'*' => Head::Array(len(int()?)?),
            other => {
                return Err(Error::protocol(
                    &self.node,
                    format!("unexpected reply type {:?}", other as char),
                ));
            }
        })
    }

    /// Reads a bulk payload of `len` bytes (after its head) into a buffer of exactly that size.
    /// Reads a bulk payload of `len` bytes (after its head). With `verify`, also checks it as a chunk frame
    /// while reading; the answer is then [`Bulk::Corrupt`] when it is not a sound one.
    pub(crate) fn read_payload(&mut self, len: usize, verify: bool) -> Result<Bulk> {
        self.read_payload_checked(len, verify.then(Verifier::default))
    }

    fn read_payload_checked(&mut self, len: usize, mut verifier: Option<Verifier>) -> Result<Bulk> {
        let done = |value: Bytes, verifier: Option<Verifier>| match verifier.map(|v| v.finish(&value)) {
            Some(false) => Bulk::Corrupt,
            _ => Bulk::Value(value),
        };
        if len <= SMALL_VALUE {
            // Small values are gathered in the read buffer and copied into a shared block: no allocation and no
            // zeroing per value.
            while self.end - self.pos < len {
                self.fill()?;
            }
            if self.arena.capacity() < len {
                self.arena.reserve(ARENA_BLOCK);
            }
            self.arena.extend_from_slice(&self.buf[self.pos..self.pos + len]);
            self.pos += len;
            let value = self.arena.split().freeze();
            self.expect_crlf()?;
            if let Some(v) = verifier.as_mut() {
                v.feed_value(&value);
            }
            return Ok(done(value, verifier));
        }
        let pool = self.pool.clone().filter(|_| len >= POOLED_VALUE);
        let mut value = match &pool {
            Some(pool) => pool.take(len),
            None => vec![0u8; len],
        };
        // Hashed piece by piece right after each copy, while the bytes are still in the CPU's caches.
        self.take_exact(&mut value[..len], |piece| {
            if let Some(v) = verifier.as_mut() {
                v.feed_value(piece);
            }
        })?;
        self.expect_crlf()?;
        let value = match pool {
            Some(pool) => pool.wrap(value, len),
            None => Bytes::from(value),
        };
        Ok(done(value, verifier))
    }

    fn expect_crlf(&mut self) -> Result<()> {
        while self.end - self.pos < 2 {
            self.fill()?;
        }
        if &self.buf[self.pos..self.pos + 2] != b"\r\n" {
            return Err(Error::protocol(&self.node, "bulk string not followed by CRLF"));
        }
        self.pos += 2;
        Ok(())
    }

    /// Reads a bulk reply straight into `dest`: the whole value (`Fill::Raw`) or, for a chunk frame, the payload
    /// after the header, which is read apart and checked along with the checksum (`Fill::Framed`).
    pub(crate) fn read_bulk_into(
        &mut self,
        dest: &mut [u8],
        fill: Fill,
    ) -> Result<std::result::Result<Filled, ServerReply>> {
        let len = match self.read_head()? {
            Head::Bulk(None) => return Ok(Ok(Filled::Nil)),
            Head::Bulk(Some(len)) => len,
            Head::Error(e) => return Ok(Err(e)),
            other => {
                return Err(Error::protocol(
                    &self.node,
                    format!("expected a bulk string, got {other:?}"),
                ));
            }
        };
        let header_len = if fill == Fill::Framed { FRAME_HEADER } else { 0 };
        if len != header_len + dest.len() {
            self.discard(len + 2)?;
            return Ok(Ok(Filled::WrongSize(len.saturating_sub(header_len))));
        }
        let result = if fill == Fill::Framed {
            let mut header = [0u8; FRAME_HEADER];
            self.take_exact(&mut header, |_| {})?;
            let mut verifier = Verifier::default();
            verifier.feed(&header[20..]);
            self.take_exact(dest, |piece| verifier.feed(piece))?;
            match header_checksum(&header, dest.len()) {
                Some(crc) if verifier.matches(crc) => Filled::Bytes(dest.len()),
                _ => Filled::Corrupt,
            }
        } else {
            self.take_exact(dest, |_| {})?;
            Filled::Bytes(dest.len())
        };
        self.expect_crlf()?;
        Ok(Ok(result))
    }

    /// Fills `dest` with the next bytes of the stream, buffered ones first; `piece` sees each newly filled part
    /// right after it is copied. A large remainder is read straight from the socket into `dest`; a small one goes
    /// through the read buffer, which also picks up the replies that follow.
    fn take_exact(&mut self, dest: &mut [u8], mut piece: impl FnMut(&[u8])) -> Result<()> {
        let buffered = (self.end - self.pos).min(dest.len());
        dest[..buffered].copy_from_slice(&self.buf[self.pos..self.pos + buffered]);
        self.pos += buffered;
        piece(&dest[..buffered]);
        let mut got = buffered;
        let through_buffer = dest.len() - got < READ_BUF / 2;
        while got < dest.len() {
            let n = if through_buffer {
                if self.pos == self.end {
                    self.fill()?;
                }
                let n = (self.end - self.pos).min(dest.len() - got);
                dest[got..got + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                n
            } else {
                Connection::read_some(&mut self.stream, &self.node, &mut self.timer, &mut dest[got..])?
            };
            piece(&dest[got..got + n]);
            got += n;
        }
        Ok(())
    }

    /// Reads and drops the next `n` bytes.
    fn discard(&mut self, mut n: usize) -> Result<()> {
        while n > 0 {
            if self.pos == self.end {
                self.fill()?;
            }
            let k = (self.end - self.pos).min(n);
            self.pos += k;
            n -= k;
        }
        Ok(())
    }

    /// Reads a reply that should be a bulk string or nil (`GET`, one element of `MGET`).
    pub(crate) fn read_bulk(&mut self, verify: bool) -> Result<std::result::Result<Bulk, ServerReply>> {
        match self.read_head()? {
            Head::Bulk(None) => Ok(Ok(Bulk::Nil)),
            Head::Bulk(Some(len)) => self.read_payload(len, verify).map(Ok),
            Head::Error(e) => Ok(Err(e)),
            other => Err(Error::protocol(
                &self.node,
                format!("expected a bulk string, got {other:?}"),
            )),
        }
    }

    /// Reads any reply whole and decodes it with redis-rs (for small structured replies such as `CLUSTER SLOTS`).
    pub(crate) fn read_value(&mut self) -> Result<Value> {
        let end = loop {
            match frame_end(&self.buf[self.pos..self.end]) {
                Ok(Some(n)) => break self.pos + n,
                Ok(None) => {
                    if self.pos == 0 && self.end == self.buf.len() {
                        return Err(Error::protocol(
                            &self.node,
                            "structured reply larger than the read buffer",
                        ));
                    }
                    self.fill()?;
                }
                Err(detail) => return Err(Error::protocol(&self.node, detail)),
            }
        };
        let value = redis::parse_redis_value(&self.buf[self.pos..end])
            .map_err(|e| Error::protocol(&self.node, e.to_string()))?;
        self.pos = end;
        Ok(value)
    }
}

/// A connection's deadline and the read timeout last armed for it.
struct Timer {
    deadline: Instant,
    armed_for: Option<Instant>,
    armed_at: Instant,
    /// When the last write ended, and whether any byte has been read since.
    wrote_at: Option<Instant>,
    heard: bool,
}

/// How stale an armed read timeout may get before it is re-armed.
const REARM: Duration = Duration::from_millis(10);

/// Time left before `deadline`, or a timeout error once it has (all but) passed.
fn time_left(node: &str, deadline: Instant) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_micros(100) {
        return Err(Error::Timeout {
            node: Some(node.to_string()),
        });
    }
    Ok(left)
}

/// Length of the first complete RESP2 reply in `bytes`, `None` when more bytes are needed.
fn frame_end(bytes: &[u8]) -> std::result::Result<Option<usize>, String> {
    let Some(eol) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let (kind, rest) = (bytes[0], &bytes[1..eol]);
    let head_len = eol + 2;
    let number = || -> std::result::Result<i64, String> {
        std::str::from_utf8(rest)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad number {:?}", String::from_utf8_lossy(rest)))
    };
    match kind {
        b'+' | b'-' | b':' => Ok(Some(head_len)),
        b'$' => match number()? {
            -1 => Ok(Some(head_len)),
            n if (0..=MAX_BULK as i64).contains(&n) => {
                let total = head_len + n as usize + 2;
                Ok((bytes.len() >= total).then_some(total))
            }
            n => Err(format!("impossible bulk length {n}")),
        },
        b'*' => {
            let n = number()?;
            let mut at = head_len;
            for _ in 0..n.max(0) {
                match frame_end(&bytes[at..])? {
                    Some(len) => at += len,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(format!("unexpected reply type {:?}", other as char)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_end_finds_whole_replies_only() {
        assert_eq!(frame_end(b"+OK\r\n+PONG\r\n"), Ok(Some(5)));
        assert_eq!(frame_end(b"$3\r\nabc\r\n"), Ok(Some(9)));
        assert_eq!(frame_end(b"$3\r\nab"), Ok(None));
        assert_eq!(frame_end(b"$-1\r\n"), Ok(Some(5)));
        assert_eq!(frame_end(b"*2\r\n:1\r\n$1\r\nx\r\n"), Ok(Some(15)));
        assert_eq!(frame_end(b"*2\r\n:1\r\n"), Ok(None));
        assert_eq!(frame_end(b"*2\r\n*1\r\n:1\r\n$0\r\n\r\n:9"), Ok(Some(18)));
        assert!(frame_end(b"$99999999999\r\n").is_err());
        assert!(frame_end(b"?x\r\n").is_err());
    }

    #[test]
    fn set_is_encoded_as_resp_with_large_payloads_referenced() {
        let mut out = Outgoing::default();
        out.push_set(b"k", &Bytes::from_static(b"v").into(), None);
        assert_eq!(out.buf, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
        let mut out = Outgoing::default();
        out.push_set(b"k", &Bytes::from_static(b"").into(), Some(60));
        assert_eq!(
            out.buf,
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$2\r\nEX\r\n$2\r\n60\r\n"
        );
        let big = Bytes::from(vec![7u8; ZERO_COPY_WRITE]);
        let mut out = Outgoing::default();
        out.push_set(b"k", &big.clone().into(), None);
        assert_eq!(out.payloads.len(), 1);
        assert_eq!(
            out.len(),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16384\r\n\r\n".len() + big.len()
        );
        assert!(out.payloads[0].1.as_ptr() == big.as_ptr(), "payload must not be copied");
        let mut out = Outgoing::default();
        let framed = SetValue {
            head: Bytes::from_static(b"HEAD"),
            body: Bytes::from_static(b"body"),
        };
        out.push_set(b"k", &framed, None);
        assert_eq!(out.buf, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8\r\nHEADbody\r\n");
    }
}
