//! Reads an LMCache configuration file (YAML) so that an existing LMCache deployment's settings can be reused as
//! they are: `remote_url`, `blocking_timeout_secs` and the `extra_config` keys of LMCache's Valkey connector
//! (`valkey_*`) and of the Redis connector this project is modelled on (`redis_*`).

use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

use crate::config::{Config, Mode, ReadFrom};
use crate::error::{Error, Result};

/// Top-level LMCache keys that concern the engine, not the remote store: accepted, and listed as not applied.
const ENGINE_KEYS: &[&str] = &[
    "chunk_size",
    "local_cpu",
    "max_local_cpu_size",
    "local_disk",
    "max_local_disk_size",
    "remote_serde",
    "save_unfull_chunk",
    "use_layerwise",
    "enable_blending",
    "pipelined_backend",
    "save_decode_cache",
    "enable_p2p",
    "enable_controller",
    "lmcache_instance_id",
    "cache_policy",
    "numa_mode",
];

/// What was read from an LMCache configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LmcacheConfig {
    /// The client configuration the file describes.
    pub config: Config,
    /// Keys this crate does not know: most likely typos; nothing was done with them.
    pub unknown: Vec<String>,
    /// Known connector keys that do not apply to this client (connection-pool sizes, a database in cluster mode...),
    /// with why: worth telling the user.
    pub not_applied: Vec<String>,
    /// Top-level keys that configure the engine, not the remote store (`chunk_size`, `local_cpu`...): expected in
    /// every file, not applied here.
    pub engine: Vec<String>,
}

impl Config {
    /// Reads an LMCache YAML configuration: `remote_url`, `blocking_timeout_secs`, and in `extra_config` the
    /// keys `valkey_mode` / `redis_mode`, `valkey_username` / `redis_username`, `valkey_password` /
    /// `redis_password`, `valkey_database` / `redis_database`, `valkey_num_workers` (alias
    /// `valkey_sync_num_workers`), `request_timeout`, `connection_timeout`, `valkey_enable_ttl` +
    /// `valkey_ttl_sec`, `tls_enable` / `use_tls`, `chunk_size` (keys per `MGET`), `max_connections` and
    /// `save_chunk_meta`. Unknown keys are returned in [`LmcacheConfig::unknown`], never silently ignored.
    pub fn from_lmcache_yaml(text: &str) -> Result<LmcacheConfig> {
        let bad = |why: String| Error::Config(format!("LMCache config: {why}"));
        let docs = YamlLoader::load_from_str(text).map_err(|e| bad(e.to_string()))?;
        let Some(Yaml::Hash(top)) = docs.first() else {
            return Err(bad("not a YAML mapping".into()));
        };
        let (mut unknown, mut not_applied, mut engine) = (Vec::new(), Vec::new(), Vec::new());
        let mut url = None;
        let mut blocking_timeout = None;
        let mut extra = None;
        for (k, v) in top {
            let key = k.as_str().unwrap_or("?");
            match key {
                "remote_url" => url = Some(string(v).ok_or_else(|| bad("remote_url must be a string".into()))?),
                "blocking_timeout_secs" => {
                    blocking_timeout = Some(seconds(v).ok_or_else(|| bad(format!("{key} must be a number")))?)
                }
                "extra_config" => extra = Some(v),
                k if ENGINE_KEYS.contains(&k) => engine.push(k.to_string()),
                k => unknown.push(k.to_string()),
            }
        }
        let url = url.ok_or_else(|| bad("no remote_url".into()))?;
        let mut config = match url.strip_prefix("redis-sentinel://") {
            // LMCache's Sentinel connector reads from a replica (`slave_for`) and writes to the primary.
            Some(rest) => Config::from_url(&sentinel_url(rest, std::env::var("REDIS_SERVICE_NAME").ok()))?
                .read_from(ReadFrom::Replica),
            None => Config::from_url(&url)?,
        };
        if let Some(t) = blocking_timeout {
            config = config.request_timeout(t);
        }
        let Some(extra) = extra else {
            return Ok(LmcacheConfig {
                config,
                unknown,
                not_applied,
                engine,
            });
        };
        let Yaml::Hash(extra) = extra else {
            return Err(bad("extra_config must be a mapping".into()));
        };
        let (mut user, mut password, mut ttl_enabled, mut ttl) = (None, None, false, None);
        for (k, v) in extra {
            let key = k.as_str().unwrap_or("?");
            let need = |what: &str| bad(format!("extra_config.{key} must be {what}"));
            match key {
                "valkey_mode" | "redis_mode" => {
                    config = config.mode(match string(v).as_deref() {
                        Some("standalone") => Mode::Standalone,
                        Some("cluster") => Mode::Cluster,
                        _ => return Err(need("standalone or cluster")),
                    })
                }
                "valkey_username" | "redis_username" => user = Some(string(v).ok_or_else(|| need("a string"))?),
                "valkey_password" | "redis_password" => password = Some(string(v).ok_or_else(|| need("a string"))?),
                "valkey_database" | "redis_database" => {
                    let db = integer(v)
                        .filter(|d| (0..=u32::MAX as i64).contains(d))
                        .ok_or_else(|| need("a database number"))?;
                    config.db = db as u32;
                }
                "valkey_num_workers" | "valkey_sync_num_workers" => {
                    let n = integer(v)
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| need("a positive integer"))?;
                    config = config.workers(n as usize);
                }
                "request_timeout" => config = config.request_timeout(seconds(v).ok_or_else(|| need("seconds"))?),
                "connection_timeout" => config = config.connect_timeout(seconds(v).ok_or_else(|| need("seconds"))?),
                "valkey_enable_ttl" => ttl_enabled = boolean(v).ok_or_else(|| need("true or false"))?,
                // LMCache: a positive integer, booleans rejected.
                "valkey_ttl_sec" => {
                    ttl = Some(
                        integer(v)
                            .filter(|t| *t > 0)
                            .ok_or_else(|| need("a positive integer"))?,
                    )
                }
                "tls_enable" | "use_tls" => {
                    if boolean(v).ok_or_else(|| need("true or false"))? {
                        config = config.tls(true);
                    }
                }
                "chunk_size" => {
                    let n = integer(v)
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| need("a positive integer (keys per MGET)"))?;
                    config = config.batch_max_keys(n as usize);
                }
                "max_connections" => {
                    not_applied.push(format!("extra_config.{key}: each worker keeps one connection per node"))
                }
                "save_chunk_meta" => {
                    not_applied.push(format!("extra_config.{key}: chunk metadata is the layout's business"))
                }
                k => unknown.push(format!("extra_config.{k}")),
            }
        }
        if let Some(pw) = password {
            config = config.auth(user.as_deref(), &pw);
        } else if user.is_some() {
            return Err(bad("a username without a password".into()));
        }
        match (ttl_enabled, ttl) {
            (true, t) => config = config.ttl_secs(Some(t.unwrap_or(86_400) as u64)),
            (false, Some(_)) => not_applied.push("extra_config.valkey_ttl_sec: valkey_enable_ttl is false".into()),
            (false, None) => {}
        }
        config.validate()?;
        Ok(LmcacheConfig {
            config,
            unknown,
            not_applied,
            engine,
        })
    }
}

fn string(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

fn integer(v: &Yaml) -> Option<i64> {
    match v {
        Yaml::Integer(i) => Some(*i),
        Yaml::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean, also from LMCache's accepted strings ("true", "false", "1", "0", "yes", "no").
fn boolean(v: &Yaml) -> Option<bool> {
    match v {
        Yaml::Boolean(b) => Some(*b),
        Yaml::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        },
        Yaml::Integer(i) => Some(*i != 0),
        _ => None,
    }
}

fn seconds(v: &Yaml) -> Option<Duration> {
    let s = match v {
        Yaml::Real(r) => r.parse().ok()?,
        Yaml::Integer(i) => *i as f64,
        Yaml::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    // Too large for a Duration (about 1.8e19 s) is refused too, not a panic.
    (s > 0.0).then(|| Duration::try_from_secs_f64(s).ok()).flatten()
}

/// LMCache's `redis-sentinel://[user:password@]h1:p1,h2:p2[/...]` as our own Sentinel URL: as in LMCache 0.5.6, the
/// path is ignored, the service (master) name is `service` (the environment's `REDIS_SERVICE_NAME`), `redismaster`
/// when unset, and the credentials are the data nodes' (Sentinels without credentials of their own).
fn sentinel_url(rest: &str, service: Option<String>) -> String {
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let service = service
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "redismaster".into());
    let encoded: String = service
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect();
    format!("redis+sentinel://{authority}/{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lmcache_sentinel_urls_take_the_service_from_the_environment() {
        assert_eq!(
            sentinel_url("u:pw@h1:1,h2:2/ignored/0", None),
            "redis+sentinel://u:pw@h1:1,h2:2/redismaster"
        );
        assert_eq!(
            sentinel_url("h1:1", Some("my svc".into())),
            "redis+sentinel://h1:1/my%20svc"
        );
        assert_eq!(
            sentinel_url("h1:1?x=y", Some(String::new())),
            "redis+sentinel://h1:1/redismaster"
        );
        let c = Config::from_url(&sentinel_url("u:pw@h1:1,h2/ignored", None)).unwrap();
        assert_eq!(c.seeds, ["h1:1", "h2:26379"]);
        assert_eq!(
            c.sentinel.as_ref().map(|s| (s.service.as_str(), s.password.is_none())),
            Some(("redismaster", true))
        );
        assert_eq!(c.password.as_deref(), Some("pw"));
        let from_yaml = Config::from_lmcache_yaml("remote_url: redis-sentinel://h1:1,h2:2\n").unwrap();
        assert!(from_yaml.config.sentinel.is_some());
        assert_eq!(from_yaml.config.read_from, ReadFrom::Replica);
    }

    #[test]
    fn reads_the_valkey_connectors_settings() {
        let yaml = r#"
chunk_size: 256
local_cpu: false
remote_url: "valkey://10.0.0.5:6379"
remote_serde: "naive"
blocking_timeout_secs: 7
extra_config:
  valkey_mode: cluster
  valkey_username: lmcache
  valkey_password: "p@ss:word"
  valkey_database: 3
  tls_enable: "false"
  valkey_num_workers: 16
  request_timeout: 2.5
  connection_timeout: 10
  valkey_enable_ttl: true
  valkey_ttl_sec: 3600
  save_chunk_meta: false
  colour: blue
"#;
        let r = Config::from_lmcache_yaml(yaml).unwrap();
        let c = &r.config;
        assert_eq!(c.seeds, vec!["10.0.0.5:6379"]);
        // Kept in cluster mode too (LMCache's connector drops it there): Valkey 9 serves it.
        assert_eq!((c.mode, c.workers, c.db), (Mode::Cluster, 16, 3));
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("lmcache"), Some("p@ss:word"))
        );
        assert_eq!(
            (c.request_timeout, c.connect_timeout),
            (Duration::from_millis(2500), Duration::from_secs(10))
        );
        assert_eq!(c.ttl_secs, Some(3600));
        assert_eq!(r.unknown, vec!["extra_config.colour"]);
        assert_eq!(r.engine, vec!["chunk_size", "local_cpu", "remote_serde"]);
        assert!(!format!("{r:?}").contains("p@ss:word"), "password in Debug");
    }

    #[test]
    fn reads_the_redis_connectors_settings() {
        let yaml = "remote_url: redis-cluster://a:7000,b:7001\nextra_config:\n  redis_password: pw\n  use_tls: false\n  chunk_size: 100\n  max_connections: 150\n";
        let r = Config::from_lmcache_yaml(yaml).unwrap();
        assert_eq!(r.config.seeds, vec!["a:7000", "b:7001"]);
        assert_eq!((r.config.mode, r.config.batch_max_keys), (Mode::Cluster, 100));
        assert_eq!(
            (r.config.username.as_deref(), r.config.password.as_deref()),
            (None, Some("pw"))
        );
        assert!(r.unknown.is_empty());
        assert_eq!(r.not_applied.len(), 1);
        let r = Config::from_lmcache_yaml("remote_url: redis://h:1\nblocking_timeout_secs: 3\n").unwrap();
        assert_eq!(r.config.request_timeout, Duration::from_secs(3));
        assert_eq!(r.config.ttl_secs, None);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            ("just a string", "not a YAML mapping"),
            ("chunk_size: 256", "no remote_url"),
            ("remote_url: [1]", "remote_url must be a string"),
            (
                "remote_url: redis://h\nextra_config: 3",
                "extra_config must be a mapping",
            ),
            (
                "remote_url: redis://h\nextra_config:\n  valkey_mode: ring",
                "standalone or cluster",
            ),
            (
                "remote_url: redis://h\nextra_config:\n  valkey_ttl_sec: true",
                "positive integer",
            ),
            (
                "remote_url: redis://h\nextra_config:\n  valkey_ttl_sec: 0",
                "positive integer",
            ),
            // Found by `properties::fuzz_lmcache_yaml_fields_never_panic`: seconds past what a Duration holds
            // panicked in `Duration::from_secs_f64`.
            (
                "remote_url: valkey://h:1\nextra_config:\n  request_timeout: '18500000000000000000'",
                "seconds",
            ),
            ("remote_url: valkey://h:1\nblocking_timeout_secs: 1e300", "number"),
            (
                "remote_url: redis://h\nextra_config:\n  tls_enable: 'maybe'",
                "true or false",
            ),
            (
                "remote_url: redis://h\nextra_config:\n  valkey_num_workers: 0",
                "positive integer",
            ),
            ("remote_url: redis://h\nextra_config:\n  request_timeout: -1", "seconds"),
            (
                "remote_url: redis://h\nextra_config:\n  valkey_username: u",
                "username without a password",
            ),
            ("remote_url: 'redis://h:1:2'", "bad host"),
            ("remote_url: redis://h\n  bad: [indent", "LMCache config"),
        ];
        for (yaml, why) in cases {
            match Config::from_lmcache_yaml(yaml) {
                Err(Error::Config(m)) => assert!(m.contains(why), "{yaml:?}: {m}"),
                other => panic!("{yaml:?}: expected a config error, got {other:?}"),
            }
        }
    }
}
