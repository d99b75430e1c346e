//! The crate's error type: one flat enum, cheap to clone so one node failure can be fanned out to every key it
//! concerned, with predicates callers can query.

use std::fmt;
use std::io;
use std::sync::Arc;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, for a whole call or for one key of a batch.
///
/// Messages never contain a password. Node addresses are `host:port`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The client was closed (by [`Client::close`](crate::Client::close) or by dropping its last clone), or the
    /// request was still queued when the drain deadline of a close passed.
    Closed,
    /// The request's deadline passed before its reply arrived.
    Timeout {
        /// The node that did not answer in time, when one is known.
        node: Option<String>,
    },
    /// Connecting to, writing to or reading from a node failed.
    Io {
        /// The node the connection was for.
        node: String,
        /// The underlying error.
        source: Arc<io::Error>,
    },
    /// The TLS handshake with a node failed (certificate not trusted, wrong host name, not a TLS port, ...).
    Tls {
        /// The node.
        node: String,
        /// What the TLS library said.
        detail: String,
    },
    /// The server answered with an error reply (e.g. `OOM`, `WRONGTYPE`, `NOPERM`).
    Server {
        /// The node that answered.
        node: String,
        /// The error code, the first word of the reply (`ERR`, `OOM`, ...).
        code: String,
        /// The rest of the reply.
        detail: String,
    },
    /// A key was redirected (MOVED / ASK / TRYAGAIN / CLUSTERDOWN ...) more often than the configured limit.
    TooManyRedirects {
        /// The node that sent the last redirect.
        node: String,
        /// The limit that was reached.
        limit: usize,
    },
    /// A node sent bytes that are not a valid reply to what was asked.
    Protocol {
        /// The node that sent them.
        node: String,
        /// What was wrong.
        detail: String,
    },
    /// The cluster could not be discovered or does not cover a slot.
    Topology(String),
    /// The client is at its queue limits and was configured to fail fast rather than wait.
    Overloaded(String),
    /// The caller passed something invalid; nothing was sent.
    InvalidInput(String),
    /// A URL or setting is invalid.
    Config(String),
    /// The worker that took the request stopped without answering (a bug: it panicked).
    WorkerLost,
    /// The caller's interrupt check (see [`Call::interruptible`](crate::Call::interruptible)) stopped the wait; what
    /// was queued may still be carried out, its answers dropped.
    Interrupted,
    /// A put was stored on its primary, but fewer replicas than asked for confirmed it within the wait timeout
    /// ([`Config::wait_for_replicas`](crate::Config::wait_for_replicas)). The value is not rolled back: it is
    /// readable, and may still reach the replicas later.
    NotReplicated {
        /// The primary that took the write.
        node: String,
        /// Replicas that confirmed it.
        acked: usize,
        /// Replicas asked for.
        wanted: usize,
    },
}

impl Error {
    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// True for [`Error::Io`].
    pub fn is_io(&self) -> bool {
        matches!(self, Error::Io { .. })
    }

    /// True for [`Error::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed)
    }

    /// The server's error code (`OOM`, `WRONGTYPE`, ...) for [`Error::Server`].
    pub fn server_code(&self) -> Option<&str> {
        match self {
            Error::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when the error concerns the input, not the servers.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Error::InvalidInput(_) | Error::Config(_))
    }

    pub(crate) fn io(node: &str, source: io::Error) -> Error {
        if matches!(source.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) {
            return Error::Timeout {
                node: Some(node.to_string()),
            };
        }
        Error::Io {
            node: node.to_string(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn protocol(node: &str, detail: impl Into<String>) -> Error {
        Error::Protocol {
            node: node.to_string(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Closed => write!(f, "client closed"),
            Error::Timeout { node: Some(n) } => write!(f, "timed out: waiting for {n}"),
            Error::Timeout { node: None } => write!(f, "timed out"),
            Error::Io { node, source } => write!(f, "i/o error: {node}: {source}"),
            Error::Tls { node, detail } => write!(f, "tls error: {node}: {detail}"),
            Error::Server { node, code, detail } => {
                write!(f, "server error: {node}: {code} {detail}")
            }
            Error::TooManyRedirects { node, limit } => {
                write!(f, "too many redirects: {limit} reached, last from {node}")
            }
            Error::Protocol { node, detail } => write!(f, "protocol error: {node}: {detail}"),
            Error::Topology(m) => write!(f, "cluster topology: {m}"),
            Error::Overloaded(m) => write!(f, "overloaded: {m}"),
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::Config(m) => write!(f, "invalid configuration: {m}"),
            Error::WorkerLost => write!(f, "worker lost: it stopped without answering"),
            Error::Interrupted => write!(f, "interrupted: the caller stopped waiting"),
            Error::NotReplicated { node, acked, wanted } => write!(
                f,
                "not replicated: {node} stored the write, but {acked} of the {wanted} replicas asked for confirmed it \
                 in time"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}
