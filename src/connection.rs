//! One connection to one node: a non-blocking stream, the reader of its replies and the queue of its writes.
//! Workers drive many of them from one `poll`; tools, probes and slot-map refreshes use `round_trip`, which waits
//! on this one alone. Connecting (TCP or Unix, TLS, `AUTH`, `SELECT`) blocks, bounded by the connect timeout, and
//! is never done on a worker thread.

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::pool::BufferPool;
use crate::reader::{Expect, Reader, Reply};
use crate::resp::{Head, Outgoing, WriteQueue};
use crate::tls::{Stream, TlsClient};

/// The library name every connection gives the server (`CLIENT SETINFO LIB-NAME`, shown by `CLIENT LIST`).
pub(crate) const LIB_NAME: &str = "kvcache-redis";
/// The version given with it (`LIB-VER`).
pub(crate) const LIB_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What opening a connection needs.
#[derive(Clone)]
pub(crate) struct ConnectOptions {
    pub(crate) timeout: Duration,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: u32,
    /// `CLIENT SETNAME` on every connection, when set.
    pub(crate) client_name: Option<String>,
    pub(crate) tls: Option<TlsClient>,
    /// Send `READONLY` (a Cluster connection that may read from replicas).
    pub(crate) readonly: bool,
}

/// A connection to one node. Replies are matched to requests by order only: after an error, or once a reply is
/// no longer wanted by anyone, the connection is out of step or useless and is dropped.
pub(crate) struct Connection {
    node: String,
    stream: Stream,
    reader: Reader,
    writes: WriteQueue,
    /// When bytes last moved in either direction.
    last_io: Instant,
}

impl Connection {
    /// Connects to `node` (`host:port`, or `unix:PATH`), authenticates and selects the database, all within
    /// `opts.timeout`.
    pub(crate) fn connect(node: &str, opts: &ConnectOptions) -> Result<Connection> {
        Connection::connect_with(node, opts, opts.timeout)
    }

    /// Like `connect`, with the TCP connect itself bounded by `tcp_timeout` (a probe's fresh SYNs notice a healed
    /// partition sooner than a retransmitted one).
    pub(crate) fn connect_with(node: &str, opts: &ConnectOptions, tcp_timeout: Duration) -> Result<Connection> {
        let deadline = Instant::now() + opts.timeout;
        let stream = if let Some(path) = node.strip_prefix("unix:") {
            if opts.tls.is_some() {
                return Err(Error::Config("TLS over a Unix socket is not supported".into()));
            }
            Stream::Unix(std::os::unix::net::UnixStream::connect(path).map_err(|e| Error::io(node, e))?)
        } else {
            connect_tcp(node, opts, tcp_timeout.min(opts.timeout))?
        };
        stream.set_nonblocking().map_err(|e| Error::io(node, e))?;
        let mut conn = Connection {
            node: node.to_string(),
            stream,
            reader: Reader::new(node),
            writes: WriteQueue::default(),
            last_io: Instant::now(),
        };
        // The whole handshake is one round trip. Each step is either required (its error fails the connect) or
        // not: `CLIENT SETINFO` is new in Redis / Valkey 7.2, and older servers answer it with an error.
        let mut out = Outgoing::default();
        let mut required = Vec::new();
        if let Some(password) = &opts.password {
            match &opts.username {
                Some(user) => out.push(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => out.push(&[b"AUTH", password.as_bytes()]),
            }
            required.push(true);
        }
        out.push(&[b"CLIENT", b"SETINFO", b"LIB-NAME", LIB_NAME.as_bytes()]);
        out.push(&[b"CLIENT", b"SETINFO", b"LIB-VER", LIB_VERSION.as_bytes()]);
        required.extend([false, false]);
        if let Some(name) = &opts.client_name {
            out.push(&[b"CLIENT", b"SETNAME", name.as_bytes()]);
            required.push(true);
        }
        if opts.db != 0 {
            out.push(&[b"SELECT", opts.db.to_string().as_bytes()]);
            required.push(true);
        }
        if opts.readonly {
            out.push(&[b"READONLY"]);
            required.push(true);
        }
        let expects = vec![Expect::Scalar; required.len()];
        for (reply, required) in conn.round_trip(out, &expects, deadline)?.into_iter().zip(required) {
            if let Reply::Scalar(Head::Error(e)) = reply
                && required
            {
                return Err(e.into_error(node));
            }
        }
        Ok(conn)
    }

    /// Reads large values into buffers from `pool`.
    pub(crate) fn with_pool(mut self, pool: Arc<BufferPool>) -> Connection {
        self.reader.set_pool(pool);
        self
    }

    /// What to poll.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// Makes dropping this connection abortive (`SO_LINGER` 0): data not yet delivered is discarded and the peer
    /// gets a reset, instead of the kernel retransmitting it until the peer is reachable again.
    pub(crate) fn abort(&self) {
        let _ = rustix::net::sockopt::set_socket_linger(self.fd(), Some(std::time::Duration::ZERO));
    }

    /// When bytes last moved in either direction.
    pub(crate) fn last_io(&self) -> Instant {
        self.last_io
    }

    /// Queues commands to be written by `flush`.
    pub(crate) fn send(&mut self, out: Outgoing) {
        self.writes.push(out);
    }

    /// Whether queued bytes remain to be written.
    pub(crate) fn wants_write(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Writes what is queued until done or the socket is full; large payloads go from their own buffers.
    pub(crate) fn flush(&mut self) -> Result<()> {
        while !self.writes.is_empty() {
            let n = {
                let slices = self.writes.slices();
                match self.stream.write_vectored(&slices) {
                    Ok(0) => {
                        let e = io::Error::new(io::ErrorKind::WriteZero, "connection closed while writing");
                        return Err(Error::io(&self.node, e));
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(&self.node, e)),
                }
            };
            self.writes.advance(n);
            self.last_io = Instant::now();
        }
        Ok(())
    }

    /// Bytes received that no reply returned so far has used.
    pub(crate) fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// Whether anything has arrived that no request asked for, or the peer closed: bytes buffered, decrypted or
    /// waiting in the socket (one non-blocking peek). Asked of a connection that owes no reply. Over TLS only what
    /// was already decrypted counts: a socket may hold TLS records that carry no data (session tickets).
    pub(crate) fn has_unread(&self) -> bool {
        use crate::reader::Source;
        use rustix::net::{RecvFlags, recv};
        if self.buffered() > 0 || self.stream.pending() {
            return true;
        }
        if matches!(self.stream, Stream::Tls(_)) {
            return false;
        }
        let mut byte = [0u8; 1];
        // A byte, or 0 (closed): either way something is there; `WouldBlock`: nothing.
        recv(self.fd(), &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT).is_ok()
    }

    /// Reads the next reply as far as the socket allows; `None` when it would block (see [`Reader::read`]).
    pub(crate) fn read(&mut self, expect: &Expect) -> Result<Option<Reply>> {
        let before = self.reader.received();
        let reply = self.reader.read(&mut self.stream, expect);
        if self.reader.received() != before {
            self.last_io = Instant::now();
        }
        reply
    }

    /// Sends `out` and reads one reply per `expects`, waiting on this connection alone until `deadline`.
    pub(crate) fn round_trip(&mut self, out: Outgoing, expects: &[Expect], deadline: Instant) -> Result<Vec<Reply>> {
        self.write_all(out, deadline)?;
        expects.iter().map(|expect| self.receive(expect, deadline)).collect()
    }

    /// Writes `out` whole, waiting on this connection alone until `deadline`.
    pub(crate) fn write_all(&mut self, out: Outgoing, deadline: Instant) -> Result<()> {
        self.send(out);
        loop {
            self.flush()?;
            if !self.wants_write() {
                return Ok(());
            }
            self.wait(Interest::Write, deadline)?;
        }
    }

    /// Reads the next reply whole, waiting on this connection alone until `deadline`. Sleeps before the first
    /// read when nothing has arrived yet (a reply asked for a moment ago rarely has), saving a read that would
    /// only be told to wait.
    pub(crate) fn receive(&mut self, expect: &Expect, deadline: Instant) -> Result<Reply> {
        use crate::reader::Source;
        if self.buffered() == 0 && !self.stream.pending() {
            self.wait(Interest::Read, deadline)?;
        }
        loop {
            if let Some(reply) = self.read(expect)? {
                return Ok(reply);
            }
            self.wait(Interest::Read, deadline)?;
        }
    }

    /// Sends one command and reads its reply whole, within `timeout`.
    pub(crate) fn call(&mut self, args: &[&[u8]], timeout: Duration) -> Result<redis::Value> {
        let mut out = Outgoing::default();
        out.push(args);
        match self.round_trip(out, &[Expect::Value], Instant::now() + timeout)?.pop() {
            Some(Reply::Value(v)) => Ok(v),
            other => unreachable!("one Value reply asked, got {other:?}"),
        }
    }

    fn wait(&self, interest: Interest, deadline: Instant) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                node: Some(self.node.clone()),
            });
        }
        poll_one(self.fd(), interest, left).map_err(|e| Error::io(&self.node, e))
    }
}

/// Connects to `node` (large values read into buffers from `pool`) on a short-lived thread named `thread`, since a
/// connect to a partitioned host hangs, and hands the result to `done` on that thread. `Err` when no thread could
/// be started (`done` is then never called).
pub(crate) fn connect_in_background(
    node: String,
    opts: ConnectOptions,
    pool: Arc<BufferPool>,
    thread: &str,
    done: impl FnOnce(Result<Connection>) + Send + 'static,
) -> io::Result<()> {
    std::thread::Builder::new().name(thread.into()).spawn(move || {
        done(Connection::connect(&node, &opts).map(|c| c.with_pool(pool)));
    })?;
    Ok(())
}

/// Which way a connection is waited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// Waits until `fd` is ready for `interest` or `timeout` passes (returning normally either way; the caller looks
/// again and checks its own deadline).
fn poll_one(fd: BorrowedFd<'_>, interest: Interest, timeout: Duration) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    let flags = match interest {
        Interest::Read => PollFlags::IN,
        Interest::Write => PollFlags::OUT,
    };
    let mut fds = [PollFd::new(&fd, flags)];
    match poll(&mut fds, Some(&timespec(timeout))) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A poll timeout, rounded up to whole microseconds so a short wait is not a busy loop.
pub(crate) fn timespec(d: Duration) -> rustix::event::Timespec {
    let d = d.max(Duration::from_micros(1));
    rustix::event::Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

fn connect_tcp(node: &str, opts: &ConnectOptions, tcp_timeout: Duration) -> Result<Stream> {
    let addrs = node.to_socket_addrs().map_err(|e| Error::io(node, e))?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, tcp_timeout) {
            // A connect to a local port nobody listens on can pick that very port as its source and connect to
            // itself (TCP simultaneous open): it would read its own commands back as replies, and hold the port a
            // restarting server needs. Treated as the refusal it stands for.
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
                return Stream::open(node, tcp, opts.tls.as_ref());
            }
            Err(e) => last = e,
        }
    }
    Err(Error::io(node, last))
}
