//! Configuration: plain data with every default in one `impl Default`, parsed from a URL, adjusted by by-value
//! setters.

use std::fmt;
use std::time::Duration;

pub(crate) use crate::deployment::SentinelSettings;
pub use crate::deployment::{Mode, ReadFrom};
use crate::error::{Error, Result};
use crate::tls::TlsSettings;

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
/// * `DB` selects a database (in a Cluster: Valkey 9 with `cluster-databases` above it).
/// * Sentinel: `redis+sentinel://[USER[:PASSWORD]@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB][?OPTION=VALUE&...]`
///   (also `valkey+sentinel`, and `rediss+sentinel` / `valkeys+sentinel` for TLS everywhere): the hosts are
///   Sentinels (`PORT` defaults to 26379), `SERVICE` is the monitored master's name, the credentials are the data
///   nodes'; Sentinels with credentials of their own take the options `sentinel_user` and `sentinel_password`.
/// * Options: `mode` (`auto`, `standalone`, `cluster`), `workers`, `write_bytes_in_flight`, `timeout_ms`, `connect_timeout_ms`,
///   `stall_threshold_ms`, `silence_timeout_ms`, `drain_timeout_ms`, `batch_max_keys`, `batch_max_bytes`, `value_size_hint`, `ttl_secs`, `buffer_pool_bytes`,
///   `max_key_bytes`, `max_value_bytes`, `max_queued_parts`, `max_queued_bytes`, `fail_fast_when_full`, `direct_reads`, and for TLS `tls_ca`, `tls_cert`, `tls_key` (file paths,
///   percent-encoded), `tls_server_name`, `tls_insecure_skip_verify` (`true`/`false`), `read_from` (`primary`,
///   `replica`, `spread`, `az_affinity`, `az_affinity_replicas_and_primary`), `client_az`, `client_name`,
///   `sentinel_user`, `sentinel_password` (percent-encoded).
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
    pub(crate) direct_reads: bool,
    pub(crate) read_from: ReadFrom,
    pub(crate) client_az: Option<String>,
    pub(crate) client_name: Option<String>,
    pub(crate) sentinel: Option<SentinelSettings>,
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
            direct_reads: true,
            read_from: ReadFrom::Primary,
            client_az: None,
            client_name: None,
            sentinel: None,
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
            .field("client_az", &self.client_az)
            .field("client_name", &self.client_name)
            .field("max_queued_parts", &self.max_queued_parts)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("fail_fast_when_full", &self.fail_fast_when_full)
            .field("direct_reads", &self.direct_reads)
            .field("read_from", &self.read_from)
            .field(
                "sentinel",
                &self.sentinel.as_ref().map(|s| {
                    let password = s.password.as_ref().map(|_| "<redacted>");
                    format!(
                        "service {:?}, user {:?}, password {:?}",
                        s.service, s.username, password
                    )
                }),
            )
            .finish()
    }
}

impl Config {
    /// Parses a URL (see the type's docs for the syntax).
    pub fn from_url(url: &str) -> Result<Config> {
        url.parse()
    }

    /// Sets one option by its URL name, as `?name=value` would in a URL (see the type's docs for the names), but
    /// with `value` taken as it is (not percent-decoded); `db` selects the database. For settings that come as
    /// names and strings (environment variables, another language's keyword arguments).
    ///
    /// ```
    /// let config = kvcache_redis::Config::from_url("redis://127.0.0.1:6379")?
    ///     .option("workers", "8")?
    ///     .option("read_from", "primary")?;
    /// assert!(config.clone().option("colour", "blue").is_err());
    /// # Ok::<(), kvcache_redis::Error>(())
    /// ```
    pub fn option(mut self, name: &str, value: &str) -> Result<Config> {
        crate::url::apply_option(&mut self, name, value, crate::url::Source::Setter)
            .map_err(|why| Error::Config(format!("option {name}: {why}")))?;
        Ok(self)
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

    /// How long a Cluster or Sentinel-managed node may owe replies without sending a byte before it is suspected
    /// to have failed (a frozen process, a partition, a blackholed address). While any node is silent this long,
    /// or marked down, the slot map is re-read every 100 ms (in a Cluster from the other nodes, the silent
    /// primary's replicas first; under Sentinel from the Sentinels), so calls waiting on it move to a promoted
    /// replica as soon as the Cluster or a Sentinel names one, each within its own deadline; and what a node
    /// answers after such a silence is used only once a slot map read after the answer confirms that the node
    /// still serves those keys (a primary that was replaced while it was frozen can still acknowledge writes the
    /// moment it wakes, and they would be lost). A call whose deadline passes while its node is silent this long
    /// marks that node down (see [`Stats::nodes_down`](crate::Stats::nodes_down)). Shorter pauses (a fork, a
    /// `DEBUG SLEEP`, a slow command) cause nothing. Reads waiting on a *replica* are given up sooner (after
    /// 100 ms of silence, or this timeout if shorter; see [`ReadFrom`]); with replica reads, a primary silent this
    /// long is left for its replicas too. The silence is the node's: it may outlast the request timeout (the
    /// connections dropped unanswered at each deadline do not restart it). Defaults to 500 ms.
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

    /// Where reads go (see [`read_from`](Self::read_from)).
    pub fn reads_from(&self) -> ReadFrom {
        self.read_from
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

    /// Small reads (`get`, `batched_get` of up to 16 keys expected at most 64 KiB each) of a deployment with one
    /// primary (standalone, or Sentinel with reads from the primary), made while other reads are in progress, are
    /// carried by the calling threads themselves, on two connections of their own: a caller that finds no round trip in flight sends its keys
    /// itself, and the keys of callers that come meanwhile go out together in one `MGET` as soon as it is answered.
    /// [`Stats::direct_keys`](crate::Stats::direct_keys) counts the keys read this way.
    /// Many threads of small reads then cost no hand-off to a worker and back. Anything but a plain answer (an
    /// error reply, a lost connection, a reply slower than [`stall_threshold`](Self::stall_threshold), a node
    /// marked down or silent, a new primary) hands the calls to the workers, which handle every fault; after a
    /// fault, reads go through the workers for a second. Priorities are unchanged: the lane has its own
    /// connection. Defaults to true.
    pub fn direct_reads(mut self, on: bool) -> Self {
        self.direct_reads = on;
        self
    }

    /// Where reads go: the primary, its replicas, or both in turn. Replicas come from `CLUSTER SLOTS` (each Cluster
    /// connection then sends `READONLY`) or from the Sentinels; a replica that is down, loading or not linked to its
    /// primary is left out, and one that stops answering is avoided by the workers. Not for a plain standalone
    /// server (no replicas known): opening fails with a configuration error. Defaults to [`ReadFrom::Primary`].
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.read_from = read_from;
        self
    }

    /// The availability zone this client runs in, for the zone-aware read policies
    /// ([`ReadFrom::AzAffinity`], [`ReadFrom::AzAffinityReplicasAndPrimary`]): compared with the zone each node
    /// reports (Valkey 8+'s `availability-zone`, read from the node's `INFO`). Defaults to none.
    pub fn client_az(mut self, zone: &str) -> Self {
        self.client_az = Some(zone.to_string());
        self
    }

    /// A name every connection gives itself (`CLIENT SETNAME`), shown by `CLIENT LIST` beside the library's name
    /// and version (sent on every connection, on servers that know `CLIENT SETINFO`). Printable ASCII without
    /// spaces. Defaults to none.
    pub fn client_name(mut self, name: &str) -> Self {
        self.client_name = Some(name.to_string());
        self
    }

    /// The database every connection selects: `SELECT` on every connection to every node, replicas included, after
    /// every reconnect. In a Cluster this needs Valkey 9's numbered databases (`cluster-databases` above the
    /// number); a server without them makes opening fail with [`Error::Config`]. Defaults to 0.
    pub fn database(mut self, db: u32) -> Self {
        self.db = db;
        self
    }

    /// The database selected (see [`database`](Self::database)).
    pub fn selected_database(&self) -> u32 {
        self.db
    }

    /// Makes this a Sentinel-managed deployment of the master named `service`: the seeds are the Sentinels, which
    /// are asked for the primary and its replicas, and followed through failovers. (The `redis+sentinel://` URL
    /// sets this.) Defaults to none.
    pub fn sentinel(mut self, service: &str) -> Self {
        let current = self.sentinel.take();
        self.sentinel = Some(SentinelSettings {
            service: service.to_string(),
            username: current.as_ref().and_then(|s| s.username.clone()),
            password: current.and_then(|s| s.password),
        });
        self
    }

    /// Credentials for Sentinels that have their own (`requirepass` or ACL users on the Sentinels); the data nodes
    /// keep [`auth`](Self::auth)'s. Needs [`sentinel`](Self::sentinel) first. Defaults to none.
    pub fn sentinel_auth(mut self, username: Option<&str>, password: &str) -> Self {
        if let Some(s) = self.sentinel.as_mut() {
            s.username = username.map(str::to_string);
            s.password = Some(password.to_string());
        }
        self
    }

    /// The seed addresses, `host:port` (the Sentinels, for a Sentinel-managed deployment).
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
        if let Some(s) = &self.sentinel {
            if s.service.is_empty() {
                return Err(Error::Config(
                    "a Sentinel deployment needs a service (master) name".into(),
                ));
            }
            if self.mode != Mode::Auto {
                return Err(Error::Config(
                    "a Sentinel deployment is one primary with replicas: mode must stay auto".into(),
                ));
            }
        }
        if let Some(name) = &self.client_name
            && (name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(Error::Config(format!(
                "client_name {name:?} must be printable ASCII with no spaces (CLIENT SETNAME refuses others)"
            )));
        }
        if self.read_from.by_zone() && self.client_az.as_deref().is_none_or(str::is_empty) {
            return Err(Error::Config(format!(
                "read_from={:?} reads from the client's own zone first: set client_az too",
                self.read_from
            )));
        }
        if self.ttl_secs == Some(0) {
            return Err(Error::Config("ttl_secs must be positive".into()));
        }
        Ok(())
    }
}
