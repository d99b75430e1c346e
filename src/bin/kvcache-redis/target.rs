//! The deployment to talk to: URL plus flags for authentication and TLS, turned into a connected client, and the
//! errors every subcommand reports the same way.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kvcache_redis::{Client, Config, Error, ReadFrom};

/// Where to connect, and how.
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// The deployment: redis://, valkey://, rediss:// (TLS), redis-cluster://, redis+sentinel://HOST,HOST/SERVICE,
    /// unix:// ... with options after `?` as in the library's README.
    #[arg(env = "KVCACHE_URL")]
    pub url: String,
    /// ACL user name (overrides the URL's).
    #[arg(long, env = "KVCACHE_USER")]
    pub user: Option<String>,
    /// Password (overrides the URL's); better from the environment than on the command line.
    #[arg(long, env = "KVCACHE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// CA certificate (PEM) to verify the servers with; turns TLS on.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name every node's certificate is checked against (when nodes are reached by IP address).
    #[arg(long)]
    pub tls_server_name: Option<String>,
    /// Do not verify the servers' certificates (testing only).
    #[arg(long)]
    pub tls_insecure: bool,
    /// Where reads go: primary, replica (replicas when any is up), spread (primary and replicas in turn),
    /// az-affinity (replicas in --client-az first) or az-affinity-replicas-and-primary (then the primary if it is
    /// in that zone); overrides the URL's `read_from`. Needs replicas (a Cluster with replicas, or a Sentinel URL).
    #[arg(long, value_enum)]
    pub read_from: Option<ReadFromArg>,
    /// The availability zone this client runs in, for the az-affinity read policies (overrides the URL's
    /// `client_az`).
    #[arg(long)]
    pub client_az: Option<String>,
    /// Deadline of every request, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

/// `--read-from` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ReadFromArg {
    Primary,
    Replica,
    Spread,
    AzAffinity,
    AzAffinityReplicasAndPrimary,
}

/// A failure that ends the command, with its exit code.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    pub fn unreachable(message: impl Into<String>) -> Failure {
        Failure {
            code: 3,
            message: message.into(),
        }
    }
}

/// Exit code 1 when anything failed.
pub fn exit(failed: bool) -> ExitCode {
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

impl Target {
    pub fn config(&self) -> Result<Config, Failure> {
        let mut config = Config::from_url(&self.url).map_err(|e| Failure::usage(e.to_string()))?;
        if let Some(password) = &self.password {
            config = config.auth(self.user.as_deref(), password);
        } else if self.user.is_some() {
            return Err(Failure::usage(
                "--user needs a password (--password or KVCACHE_PASSWORD)",
            ));
        }
        if let Some(ca) = &self.tls_ca {
            config = config.tls_ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config = config.tls_client_cert(cert, key);
        }
        if let Some(name) = &self.tls_server_name {
            config = config.tls_server_name(name);
        }
        if self.tls_insecure {
            config = config.tls_insecure_skip_verify(true);
        }
        if let Some(read_from) = self.read_from {
            config = config.read_from(match read_from {
                ReadFromArg::Primary => ReadFrom::Primary,
                ReadFromArg::Replica => ReadFrom::Replica,
                ReadFromArg::Spread => ReadFrom::Spread,
                ReadFromArg::AzAffinity => ReadFrom::AzAffinity,
                ReadFromArg::AzAffinityReplicasAndPrimary => ReadFrom::AzAffinityReplicasAndPrimary,
            });
        }
        if let Some(zone) = &self.client_az {
            config = config.client_az(zone);
        }
        Ok(config
            .request_timeout(Duration::from_millis(self.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(self.timeout_ms.clamp(1, 5000))))
    }

    /// Connects, turning each kind of failure into a message that says what to look at.
    pub fn connect(&self) -> Result<Client, Failure> {
        self.connect_with(self.config()?)
    }

    /// Connects with `config` (this target's, adjusted), failures explained as by [`Target::connect`].
    pub fn connect_with(&self, config: Config) -> Result<Client, Failure> {
        let tls = config.uses_tls();
        Client::with_config(config).map_err(|e| {
            let mut failure = describe(&self.redacted(), &e);
            if tls && e.is_timeout() {
                failure.message += " (no answer to the TLS handshake: is this a TLS port?)";
            }
            failure
        })
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        kvcache_redis::redact_url(&self.url)
    }
}

/// A connection failure, explained.
pub fn describe(target: &str, e: &Error) -> Failure {
    let hint = match e {
        Error::Tls { .. } => "TLS handshake failed (check --tls-ca, the certificate's host names, --tls-server-name)",
        Error::Server { code, .. } if code == "WRONGPASS" || code == "NOAUTH" || code == "NOPERM" => {
            "authentication failed (check the user and password)"
        }
        Error::Io { .. } | Error::Timeout { .. } => "cannot connect (is the server up and reachable from here?)",
        Error::Config(_) | Error::InvalidInput(_) => return Failure::usage(format!("{target}: {e}")),
        _ => "cannot use the deployment",
    };
    Failure::unreachable(format!("{target}: {hint}: {e}"))
}

/// Parses sizes such as `4096`, `64KiB`, `4MiB`, `1GiB` (also `k`, `m`, `g`, `KB`, `MB`).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("bad size unit in {s:?} (use B, KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))
}

/// Bytes in a human unit.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The ending of "primar_" for `n` of them.
pub fn plural_y(n: usize) -> &'static str {
    if n == 1 { "y" } else { "ies" }
}

/// A key prefix of this run alone.
pub fn run_namespace(tool: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("kvcache-{tool}:{}:{nanos:08x}:", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("4XB").is_err());
        assert!(parse_size("").is_err());
    }
}
