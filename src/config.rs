//! Configuration: plain data with every default in one `impl Default`, parsed from a URL, adjusted by by-value
//! setters.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::tls::TlsSettings;

/// How the client finds out whether it talks to a Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Ask the first reachable seed (`CLUSTER SLOTS`); a server without cluster support means standalone.
    Auto,
    /// One server owns every key.
    Standalone,
    /// A Redis / Valkey Cluster; the slot map is discovered from the seeds.
    Cluster,
}

/// Client configuration. Build it from a URL with [`str::parse`] / [`Config::from_url`], then adjust it with the
/// by-value setters, e.g. `Config::from_url("redis://127.0.0.1:6379")?.workers(4)`.
///
/// # URL syntax
/// `SCHEME://[USER[:PASSWORD]@]HOST[:PORT][,HOST[:PORT]...][/DB][?OPTION=VALUE&...]`
///
/// * `SCHEME`: `redis` or `valkey`; `rediss` / `valkeys` for TLS; `redis-cluster`, `valkey-cluster`,
///   `rediss-cluster`, `valkeys-cluster` also force cluster mode.
/// * `USER` and `PASSWORD` are percent-decoded; a password alone is written `:PASSWORD@`.
/// * Several seeds are separated by commas; `PORT` defaults to 6379; IPv6 hosts go in brackets.
/// * A Unix socket: `unix:///path/to/socket` (also `redis+unix://`, `valkey+unix://`), with the database as a
///   `db=N` option; always standalone.
/// * `DB` selects a database (standalone only).
/// * Options: `mode` (`auto`, `standalone`, `cluster`), `workers`, `write_bytes_in_flight`, `timeout_ms`, `connect_timeout_ms`,
///   `stall_threshold_ms`, `silence_timeout_ms`, `drain_timeout_ms`, `batch_max_keys`, `batch_max_bytes`, `value_size_hint`, `ttl_secs`, `buffer_pool_bytes`,
///   `max_key_bytes`, `max_value_bytes`, `max_queued_parts`, `max_queued_bytes`, `fail_fast_when_full`, and for TLS `tls_ca`, `tls_cert`, `tls_key` (file paths,
///   percent-encoded), `tls_server_name`, `tls_insecure_skip_verify` (`true`/`false`).
///   Any other option is an error.
#[derive(Clone)]
pub struct Config {
    pub(crate) seeds: Vec<String>,
    pub(crate) mode: Mode,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: u32,
    pub(crate) workers: usize,
    pub(crate) write_bytes_in_flight: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) stall_threshold: Duration,
    pub(crate) silence_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) batch_max_keys: usize,
    pub(crate) batch_max_bytes: usize,
    pub(crate) mget_max_value_size: usize,
    pub(crate) value_size_hint: usize,
    pub(crate) max_redirects: usize,
    pub(crate) max_retries: usize,
    pub(crate) wait_replicas: Option<(usize, Duration)>,
    pub(crate) ttl_secs: Option<u64>,
    pub(crate) buffer_pool_bytes: usize,
    pub(crate) max_key_bytes: usize,
    pub(crate) max_value_bytes: usize,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) max_queued_parts: usize,
    pub(crate) max_queued_bytes: usize,
    pub(crate) fail_fast_when_full: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seeds: vec!["127.0.0.1:6379".to_string()],
            mode: Mode::Auto,
            username: None,
            password: None,
            db: 0,
            workers: 4,
            write_bytes_in_flight: 8 << 20,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            stall_threshold: Duration::from_millis(20),
            silence_timeout: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(2),
            batch_max_keys: 512,
            batch_max_bytes: 2 << 20,
            mget_max_value_size: 128 << 10,
            value_size_hint: 16 << 10,
            max_redirects: 5,
            max_retries: 20,
            wait_replicas: None,
            ttl_secs: None,
            buffer_pool_bytes: 256 << 20,
            max_key_bytes: 512 << 20,
            max_value_bytes: 512 << 20,
            tls: None,
            max_queued_parts: 65_536,
            max_queued_bytes: 1 << 30,
            fail_fast_when_full: false,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("seeds", &self.seeds)
            .field("mode", &self.mode)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("workers", &self.workers)
            .field("write_bytes_in_flight", &self.write_bytes_in_flight)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("stall_threshold", &self.stall_threshold)
            .field("silence_timeout", &self.silence_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("batch_max_keys", &self.batch_max_keys)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .field("mget_max_value_size", &self.mget_max_value_size)
            .field("value_size_hint", &self.value_size_hint)
            .field("max_redirects", &self.max_redirects)
            .field("max_retries", &self.max_retries)
            .field("wait_replicas", &self.wait_replicas)
            .field("ttl_secs", &self.ttl_secs)
            .field("buffer_pool_bytes", &self.buffer_pool_bytes)
            .field("max_key_bytes", &self.max_key_bytes)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("tls", &self.tls)
            .field("max_queued_parts", &self.max_queued_parts)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("fail_fast_when_full", &self.fail_fast_when_full)
            .finish()
    }
}

impl FromStr for Config {
    type Err = Error;

    fn from_str(url: &str) -> Result<Config> {
        parse_url(url)
    }
}

impl Config {
    /// Parses a URL (see the type's docs for the syntax).
    pub fn from_url(url: &str) -> Result<Config> {
        url.parse()
    }

    /// Forces standalone or cluster mode. Defaults to [`Mode::Auto`].
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// ACL user name and password (`AUTH user pass`), or the legacy password alone when `username` is `None`.
    /// Defaults to no authentication.
    pub fn auth(mut self, username: Option<&str>, password: &str) -> Self {
        self.username = username.map(str::to_string);
        self.password = Some(password.to_string());
        self
    }

    /// Number of worker threads, each with its own connections. Defaults to 4.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Writes (`Put` priority) stream on one worker at least; another worker starts writing only while the
    /// bytes being written are under this budget, and never do all workers write at once. Mid-size writes thus
    /// go out over several connections, while a flood of huge ones keeps to one and leaves the server free to
    /// answer reads (measured here: a `Peek`'s p99 during a flood of 32 MiB writes was about 3 ms with one
    /// writer, 9 ms with two, 14 ms with three). Defaults to 8 MiB.
    pub fn write_bytes_in_flight(mut self, n: usize) -> Self {
        self.write_bytes_in_flight = n;
        self
    }

    /// Deadline of each call, from submission to reply. Defaults to 5 s.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Timeout of one TCP connect (plus authentication). Defaults to 5 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long a node may owe replies without sending a byte before a worker waiting on it turns to other queued
    /// calls. With several nodes (a Cluster), their keys on the other nodes then go out at once, while this
    /// node's keys wait their turn in priority order; with one node, queued calls stay queued. Nothing fails and
    /// nothing is re-read because of it: a busy server (a fork, a slow command) only stops holding up the rest.
    /// Defaults to 20 ms.
    pub fn stall_threshold(mut self, d: Duration) -> Self {
        self.stall_threshold = d;
        self
    }

    /// How long a Cluster node may owe replies without sending a byte before it is suspected to have failed (a
    /// frozen process, a partition, a blackholed address). While any node is silent this long, or marked down, the
    /// slot map is re-read from the other nodes (its replicas first) every 100 ms, so calls waiting on it move to
    /// a promoted replica as soon as the Cluster shows one, each within its own deadline; and what a node
    /// answers after such a silence is used only once a slot map read after the answer confirms that the node
    /// still serves those keys (a primary that was replaced while it was frozen can still acknowledge writes the
    /// moment it wakes, and they would be lost). A call whose deadline passes while its node is silent this long
    /// marks that node down (see [`Stats::nodes_down`](crate::Stats::nodes_down)). Shorter pauses (a fork, a
    /// `DEBUG SLEEP`, a slow command) cause nothing. Defaults to 500 ms.
    pub fn silence_timeout(mut self, d: Duration) -> Self {
        self.silence_timeout = d;
        self
    }

    /// How long [`Client::close`](crate::Client::close) keeps executing requests that were already queued before
    /// answering the rest with [`Error::Closed`]. Defaults to 2 s.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.drain_timeout = d;
        self
    }

    /// Most keys in one round trip to one node (and in one queued part of a call). Defaults to 512: a larger call
    /// is split into parts that several workers carry in parallel.
    pub fn batch_max_keys(mut self, n: usize) -> Self {
        self.batch_max_keys = n;
        self
    }

    /// Most payload bytes in one round trip: actual bytes for writes, expected bytes for reads. Defaults to
    /// 2 MiB: servers answer deep pipelines of large values slowly, and several connections carry more.
    pub fn batch_max_bytes(mut self, n: usize) -> Self {
        self.batch_max_bytes = n;
        self
    }

    /// Values expected to be larger than this are read with one `GET` each rather than inside an `MGET`, since
    /// servers build huge aggregate replies slowly. Defaults to 128 KiB.
    pub fn mget_max_value_size(mut self, n: usize) -> Self {
        self.mget_max_value_size = n;
        self
    }

    /// Expected size of a value before the client has learned it from replies; used to bound reads. Defaults
    /// to 16 KiB.
    pub fn value_size_hint(mut self, n: usize) -> Self {
        self.value_size_hint = n;
        self
    }

    /// Most redirects (`MOVED`, `ASK`) followed for one key; past it the key fails with
    /// [`Error::TooManyRedirects`](crate::Error::TooManyRedirects). Defaults to 5.
    pub fn max_redirects(mut self, n: usize) -> Self {
        self.max_redirects = n;
        self
    }

    /// After the puts of a pipeline, waits (`WAIT replicas timeout`) until `replicas` replicas of that primary
    /// confirm them, for at most `timeout`; a put that fewer replicas confirmed in time fails with
    /// [`Error::NotReplicated`](crate::Error::NotReplicated). Off by default (a cache can lose a chunk).
    ///
    /// Limits: the write is *not* rolled back when it fails this way (it is readable on the primary and may reach
    /// the replicas later); `WAIT` confirms receipt by the replicas, not persistence, so a failover can still lose
    /// a confirmed write in rare cases (Redis and Valkey replication stays asynchronous); every put to a node
    /// pays one replication round trip; `timeout` must be shorter than the request timeout.
    pub fn wait_for_replicas(mut self, replicas: usize, timeout: Duration) -> Self {
        self.wait_replicas = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// Most retries of one key after a transient refusal (`TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `MASTERDOWN`),
    /// each after a back-off that doubles from 10 ms up to 320 ms; past it the key fails with that server error.
    /// Defaults to 20, so that in practice the call's deadline ends the retries: a failover makes a Cluster answer
    /// `CLUSTERDOWN` for about a second, and callers should not see it.
    pub fn max_retries(mut self, n: usize) -> Self {
        self.max_retries = n;
        self
    }

    /// Time to live of every stored value, in seconds (`SET ... EX`). Defaults to none.
    pub fn ttl_secs(mut self, ttl: Option<u64>) -> Self {
        self.ttl_secs = ttl;
        self
    }

    /// Most bytes of idle buffers kept for reading large values (256 KiB and up) into. A large value returned
    /// by a read lends its buffer to the caller; once every reference to it is dropped, the buffer is kept for the
    /// next read, which then skips the page faults of a fresh allocation. 0 turns pooling off. Defaults to
    /// 256 MiB.
    pub fn buffer_pool_bytes(mut self, n: usize) -> Self {
        self.buffer_pool_bytes = n;
        self
    }

    /// Largest key accepted; a longer one fails the call with [`Error::InvalidInput`] before anything is sent.
    /// Defaults to 512 MiB, the servers' own default limit (`proto-max-bulk-len`).
    pub fn max_key_bytes(mut self, n: usize) -> Self {
        self.max_key_bytes = n;
        self
    }

    /// Largest value accepted for writing; a larger one fails the call with [`Error::InvalidInput`] before anything
    /// is sent (a server would drop the connection on it). Defaults to 512 MiB, the servers' own default limit.
    pub fn max_value_bytes(mut self, n: usize) -> Self {
        self.max_value_bytes = n;
        self
    }

    /// Connects with TLS (native-tls; TLS 1.2 at least; certificates and host names verified against the system
    /// roots and any [`tls_ca_file`](Self::tls_ca_file)). Set by the `rediss://` and `valkeys://` schemes.
    /// Defaults to off.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on.then(|| self.tls.take().unwrap_or_default());
        self
    }

    /// Whether connections use TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A PEM file of CA certificates to trust, beside the system roots; turns TLS on. Defaults to none.
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.get_or_insert_with(Default::default).ca_file = Some(path.into());
        self
    }

    /// A client certificate and its PKCS#8 key, both PEM, for servers that require mutual TLS; turns TLS on.
    /// Defaults to none.
    pub fn tls_client_cert(mut self, cert: impl Into<std::path::PathBuf>, key: impl Into<std::path::PathBuf>) -> Self {
        let tls = self.tls.get_or_insert_with(Default::default);
        tls.cert_file = Some(cert.into());
        tls.key_file = Some(key.into());
        self
    }

    /// The name every node's certificate is verified against (and sent as SNI), instead of the host the node is
    /// reached at: for Clusters that announce IP addresses while their certificates name a host. Turns TLS on.
    /// Defaults to the host of each node's address.
    pub fn tls_server_name(mut self, name: &str) -> Self {
        self.tls.get_or_insert_with(Default::default).server_name = Some(name.to_string());
        self
    }

    /// Accepts any certificate and host name: no protection against a man in the middle. Logged as a warning.
    /// Defaults to false.
    pub fn tls_insecure_skip_verify(mut self, skip: bool) -> Self {
        self.tls.get_or_insert_with(Default::default).insecure_skip_verify = skip;
        self
    }

    /// Most parts (calls are split into parts of `batch_max_keys` keys / `batch_max_bytes` bytes) queued or in
    /// flight at once. Defaults to 65536.
    pub fn max_queued_parts(mut self, n: usize) -> Self {
        self.max_queued_parts = n;
        self
    }

    /// Most bytes queued or in flight at once: values being written, expected sizes of values being read. A call
    /// that finds no room waits for it up to its deadline (or fails at once, see
    /// [`fail_fast_when_full`](Self::fail_fast_when_full)); a single call larger than this goes when nothing else is
    /// queued. Bounds the memory the client holds for its callers. Defaults to 1 GiB.
    pub fn max_queued_bytes(mut self, n: usize) -> Self {
        self.max_queued_bytes = n;
        self
    }

    /// When the queue is full: fail the call at once with [`Error::Overloaded`] (true) or wait for room up to the
    /// call's deadline (false). Defaults to false.
    pub fn fail_fast_when_full(mut self, fail_fast: bool) -> Self {
        self.fail_fast_when_full = fail_fast;
        self
    }

    /// The seed addresses, `host:port`.
    pub fn seeds(&self) -> &[String] {
        &self.seeds
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let positive = [
            ("workers", self.workers),
            ("batch_max_keys", self.batch_max_keys),
            ("batch_max_bytes", self.batch_max_bytes),
            ("value_size_hint", self.value_size_hint),
            ("max_key_bytes", self.max_key_bytes),
            ("max_value_bytes", self.max_value_bytes),
            ("max_queued_parts", self.max_queued_parts),
            ("max_queued_bytes", self.max_queued_bytes),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::Config("timeouts must be positive".into()));
        }
        if self.stall_threshold.is_zero() || self.silence_timeout < self.stall_threshold {
            return Err(Error::Config(format!(
                "stall_threshold ({:?}) must be positive and at most silence_timeout ({:?})",
                self.stall_threshold, self.silence_timeout
            )));
        }
        if let Some((_, wait)) = self.wait_replicas
            && (wait.is_zero() || wait >= self.request_timeout)
        {
            return Err(Error::Config(format!(
                "the replica wait timeout ({wait:?}) must be positive and shorter than the request timeout ({:?})",
                self.request_timeout
            )));
        }
        if self.seeds.is_empty() {
            return Err(Error::Config("no seed address".into()));
        }
        if self.ttl_secs == Some(0) {
            return Err(Error::Config("ttl_secs must be positive".into()));
        }
        Ok(())
    }
}

fn parse_url(url: &str) -> Result<Config> {
    let bad = |what: &str| Error::Config(format!("{what} in URL {}", redact(url)));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let mut cfg = Config::default();
    match scheme {
        "redis" | "valkey" => {}
        "redis-cluster" | "valkey-cluster" => cfg.mode = Mode::Cluster,
        "rediss" | "valkeys" => cfg.tls = Some(TlsSettings::default()),
        "rediss-cluster" | "valkeys-cluster" => {
            cfg.tls = Some(TlsSettings::default());
            cfg.mode = Mode::Cluster;
        }
        "unix" | "redis+unix" | "valkey+unix" => cfg.mode = Mode::Standalone,
        other => return Err(bad(&format!("unknown scheme {other:?}"))),
    }
    let unix = cfg.mode == Mode::Standalone;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, p),
        None => (rest, ""),
    };
    let hosts = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, pass) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            let user = percent_decode(user).ok_or_else(|| bad("bad percent-encoding"))?;
            let pass = match pass {
                Some(p) => Some(percent_decode(p).ok_or_else(|| bad("bad percent-encoding"))?),
                None => None,
            };
            match pass {
                // `user@host` alone carries a password-less user name: LMCache treats it as the password.
                None => cfg.password = Some(user),
                Some(p) => {
                    cfg.username = (!user.is_empty()).then_some(user);
                    cfg.password = Some(p);
                }
            }
            hosts
        }
        None => authority,
    };
    if unix {
        // unix://[user:password@]/path/to/socket[?db=N&...]: the path is the socket, the database an option.
        if !hosts.is_empty() || path.is_empty() {
            return Err(bad("a Unix socket URL is unix:///absolute/path/to/socket"));
        }
        let socket = percent_decode(path).ok_or_else(|| bad("bad percent-encoding"))?;
        cfg.seeds = vec![format!("unix:/{socket}")];
    } else {
        cfg.seeds = hosts
            .split(',')
            .map(|h| parse_host(h).ok_or_else(|| bad(&format!("bad host {h:?}"))))
            .collect::<Result<_>>()?;
        if !path.is_empty() {
            cfg.db = path.parse().map_err(|_| bad(&format!("bad database {path:?}")))?;
        }
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad(&format!("option {pair:?} has no value")))?;
        let num = |v: &str| -> Result<u64> { v.parse().map_err(|_| bad(&format!("bad number for {k}: {v:?}"))) };
        match k {
            "db" if unix => cfg.db = v.parse().map_err(|_| bad(&format!("bad database {v:?}")))?,
            "mode" if unix => return Err(bad("a Unix socket is one standalone server")),
            "mode" => {
                cfg.mode = match v {
                    "auto" => Mode::Auto,
                    "standalone" => Mode::Standalone,
                    "cluster" => Mode::Cluster,
                    _ => return Err(bad(&format!("bad mode {v:?}"))),
                }
            }
            "workers" => cfg.workers = num(v)? as usize,
            "write_bytes_in_flight" => cfg.write_bytes_in_flight = num(v)? as usize,
            "timeout_ms" => cfg.request_timeout = Duration::from_millis(num(v)?),
            "connect_timeout_ms" => cfg.connect_timeout = Duration::from_millis(num(v)?),
            "stall_threshold_ms" => cfg.stall_threshold = Duration::from_millis(num(v)?),
            "silence_timeout_ms" => cfg.silence_timeout = Duration::from_millis(num(v)?),
            "drain_timeout_ms" => cfg.drain_timeout = Duration::from_millis(num(v)?),
            "batch_max_keys" => cfg.batch_max_keys = num(v)? as usize,
            "max_redirects" => cfg.max_redirects = num(v)? as usize,
            "max_retries" => cfg.max_retries = num(v)? as usize,
            "wait_replicas" => {
                let timeout = cfg.wait_replicas.map_or(Duration::from_millis(100), |w| w.1);
                cfg = cfg.wait_for_replicas(num(v)? as usize, timeout)
            }
            "wait_timeout_ms" => match cfg.wait_replicas.as_mut() {
                Some(w) => w.1 = Duration::from_millis(num(v)?),
                None => return Err(bad("wait_timeout_ms needs wait_replicas before it")),
            },
            "batch_max_bytes" => cfg.batch_max_bytes = num(v)? as usize,
            "value_size_hint" => cfg.value_size_hint = num(v)? as usize,
            "ttl_secs" => cfg.ttl_secs = Some(num(v)?),
            "buffer_pool_bytes" => cfg.buffer_pool_bytes = num(v)? as usize,
            "max_key_bytes" => cfg.max_key_bytes = num(v)? as usize,
            "max_value_bytes" => cfg.max_value_bytes = num(v)? as usize,
            "max_queued_parts" => cfg.max_queued_parts = num(v)? as usize,
            "max_queued_bytes" => cfg.max_queued_bytes = num(v)? as usize,
            "fail_fast_when_full" => match v {
                "true" => cfg.fail_fast_when_full = true,
                "false" => cfg.fail_fast_when_full = false,
                _ => return Err(bad(&format!("bad boolean for {k}: {v:?}"))),
            },
            "tls_ca" => cfg = cfg.tls_ca_file(percent_decode(v).ok_or_else(|| bad("bad percent-encoding"))?),
            "tls_cert" => {
                cfg.tls.get_or_insert_with(Default::default).cert_file =
                    Some(percent_decode(v).ok_or_else(|| bad("bad percent-encoding"))?.into())
            }
            "tls_key" => {
                cfg.tls.get_or_insert_with(Default::default).key_file =
                    Some(percent_decode(v).ok_or_else(|| bad("bad percent-encoding"))?.into())
            }
            "tls_server_name" => cfg = cfg.tls_server_name(v),
            "tls_insecure_skip_verify" => match v {
                "true" => cfg = cfg.tls_insecure_skip_verify(true),
                "false" => {}
                _ => return Err(bad(&format!("bad boolean for {k}: {v:?}"))),
            },
            _ => return Err(bad(&format!("unknown option {k:?}"))),
        }
    }
    if cfg.mode == Mode::Cluster && cfg.db != 0 {
        return Err(bad("a database number is not allowed in cluster mode"));
    }
    cfg.validate()?;
    Ok(cfg)
}

/// `host[:port]` or `[v6]:port` to `host:port`; `None` when malformed.
fn parse_host(h: &str) -> Option<String> {
    let (host, port) = if let Some(v6) = h.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{host}]"), port)
    } else {
        match h.split_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (h.to_string(), None),
        }
    };
    let port: u16 = match port {
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
        None => 6379,
    };
    let valid = !host.is_empty()
        && host != "*"
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_[]:".contains(&b));
    valid.then(|| format!("{host}:{port}"))
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// The URL with any password replaced, for error messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable URL>".into();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((_, hosts)) => format!("{scheme}://<redacted>@{hosts}{}", &rest[authority_end..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// URL, seeds, mode, user, password, database.
    type Case<'a> = (&'a str, &'a [&'a str], Mode, Option<&'a str>, Option<&'a str>, u32);

    #[test]
    fn parses_good_urls() {
        let cases: &[Case] = &[
            ("redis://127.0.0.1:6379", &["127.0.0.1:6379"], Mode::Auto, None, None, 0),
            ("valkey://localhost", &["localhost:6379"], Mode::Auto, None, None, 0),
            ("redis://h:7000/3", &["h:7000"], Mode::Auto, None, None, 3),
            ("redis://:s%40cret@h:1", &["h:1"], Mode::Auto, None, Some("s@cret"), 0),
            ("redis://bob:pw@h:1", &["h:1"], Mode::Auto, Some("bob"), Some("pw"), 0),
            ("redis-cluster://a:1,b:2", &["a:1", "b:2"], Mode::Cluster, None, None, 0),
            (
                "redis://a:1,b:2?mode=cluster",
                &["a:1", "b:2"],
                Mode::Cluster,
                None,
                None,
                0,
            ),
            ("redis://[::1]:7000", &["[::1]:7000"], Mode::Auto, None, None, 0),
            (
                "redis://h?mode=standalone&workers=2",
                &["h:6379"],
                Mode::Standalone,
                None,
                None,
                0,
            ),
        ];
        for (url, seeds, mode, user, pass, db) in cases {
            let c: Config = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(c.seeds, *seeds, "{url}");
            assert_eq!(c.mode, *mode, "{url}");
            assert_eq!(c.username.as_deref(), *user, "{url}");
            assert_eq!(c.password.as_deref(), *pass, "{url}");
            assert_eq!(c.db, *db, "{url}");
        }
        let c: Config = "redis://h?workers=2&timeout_ms=250&ttl_secs=60".parse().unwrap();
        assert_eq!(
            (c.workers, c.request_timeout, c.ttl_secs),
            (2, Duration::from_millis(250), Some(60))
        );
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("127.0.0.1:6379", "no scheme"),
            ("http://h:1", "unknown scheme"),
            ("redis://", "bad host"),
            ("redis://h:99999", "bad host"),
            ("redis://h:0", "bad host"),
            ("redis://h:x", "bad host"),
            ("redis://*:6379", "bad host"),
            ("redis://h/abc", "bad database"),
            ("redis://:%zz@h", "bad percent-encoding"),
            ("redis://h?colour=blue", "unknown option"),
            ("redis://h?workers=0", "workers must be at least 1"),
            ("redis://h?workers=x", "bad number"),
            ("redis://h?mode=ring", "bad mode"),
            ("redis-cluster://h/2", "not allowed in cluster mode"),
            ("unix://host/tmp/r.sock", "unix:///absolute/path"),
            ("unix://", "unix:///absolute/path"),
            ("unix:///tmp/r.sock?mode=cluster", "one standalone server"),
            ("unix:///tmp/r.sock?db=x", "bad database"),
            ("rediss://h?tls_insecure_skip_verify=maybe", "bad boolean"),
        ];
        for (url, reason) in cases {
            match url.parse::<Config>() {
                Err(Error::Config(m)) => assert!(m.contains(reason), "{url}: {m}"),
                other => panic!("{url}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn passwords_never_print() {
        let url = "redis://bob:hunter2@h:1?colour=x";
        let err = url.parse::<Config>().unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let cfg: Config = "redis://bob:hunter2@h:1".parse().unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2") && dbg.contains("<redacted>"), "{dbg}");
    }
}
