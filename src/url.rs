//! Connection URLs: `redis://`, `valkey://`, TLS and cluster schemes, Unix sockets, credentials, seeds, the
//! database and every option, checked as they are read; and URLs with their password redacted, for messages.

use std::str::FromStr;
use std::time::Duration;

use crate::config::{Config, Mode, ReadFrom, SentinelSettings};
use crate::error::{Error, Result};
use crate::tls::TlsSettings;

impl FromStr for Config {
    type Err = Error;

    fn from_str(url: &str) -> Result<Config> {
        parse_url(url)
    }
}

fn parse_url(url: &str) -> Result<Config> {
    let bad = |what: &str| Error::Config(format!("{what} in URL {}", redact_url(url)));
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
        "redis+sentinel" | "valkey+sentinel" => cfg.sentinel = Some(SentinelSettings::default()),
        "rediss+sentinel" | "valkeys+sentinel" => {
            cfg.tls = Some(TlsSettings::default());
            cfg.sentinel = Some(SentinelSettings::default());
        }
        "redis-sentinel" => {
            return Err(bad(
                "redis-sentinel:// is LMCache's spelling (read by Config::from_lmcache_yaml); here it is \
                 redis+sentinel://host[:port][,host...]/SERVICE",
            ));
        }
        other => return Err(bad(&format!("unknown scheme {other:?}"))),
    }
    let sentinel = cfg.sentinel.is_some();
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
        let port = if sentinel { SENTINEL_PORT } else { 6379 };
        cfg.seeds = hosts
            .split(',')
            .map(|h| parse_host(h, port).ok_or_else(|| bad(&format!("bad host {h:?}"))))
            .collect::<Result<_>>()?;
        let db = if sentinel {
            // /SERVICE[/DB]
            let (service, db) = path.split_once('/').unwrap_or((path, ""));
            let service = percent_decode(service).ok_or_else(|| bad("bad percent-encoding"))?;
            if service.is_empty() {
                return Err(bad(
                    "a Sentinel URL names the service: redis+sentinel://host[:port]/SERVICE",
                ));
            }
            cfg.sentinel.as_mut().expect("set above").service = service;
            db
        } else {
            path
        };
        if !db.is_empty() {
            cfg.db = db.parse().map_err(|_| bad(&format!("bad database {db:?}")))?;
        }
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad(&format!("option {pair:?} has no value")))?;
        apply_option(&mut cfg, k, v, Source::Url { unix }).map_err(|why| bad(&why))?;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Where an option's value comes from.
#[derive(Clone, Copy)]
pub(crate) enum Source {
    /// A URL's query (`unix`: a Unix socket's): values are percent-encoded, and the database is in the path
    /// except for Unix sockets.
    Url { unix: bool },
    /// [`Config::option`]: values as they are.
    Setter,
}

/// Sets option `k` to `v`; the error says what was wrong.
pub(crate) fn apply_option(cfg: &mut Config, k: &str, v: &str, source: Source) -> std::result::Result<(), String> {
    let sentinel_only = || format!("{k} is for Sentinel deployments (redis+sentinel://...)");
    let num =
        |v: &str| -> std::result::Result<u64, String> { v.parse().map_err(|_| format!("bad number for {k}: {v:?}")) };
    let decoded = |v: &str| match source {
        Source::Url { .. } => percent_decode(v).ok_or_else(|| "bad percent-encoding".to_string()),
        Source::Setter => Ok(v.to_string()),
    };
    let unix = match source {
        Source::Url { unix } => unix,
        Source::Setter => cfg.seeds.iter().any(|s| s.starts_with("unix:")),
    };
    match k {
        "db" => cfg.db = v.parse().map_err(|_| format!("bad database {v:?}"))?,
        "mode" if unix => return Err("a Unix socket is one standalone server".into()),
        "mode" => {
            cfg.mode = match v {
                "auto" => Mode::Auto,
                "standalone" => Mode::Standalone,
                "cluster" => Mode::Cluster,
                _ => return Err(format!("bad mode {v:?}")),
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
            *cfg = std::mem::take(cfg).wait_for_replicas(num(v)? as usize, timeout)
        }
        "wait_timeout_ms" => match cfg.wait_replicas.as_mut() {
            Some(w) => w.1 = Duration::from_millis(num(v)?),
            None => return Err("wait_timeout_ms needs wait_replicas before it".into()),
        },
        "batch_max_bytes" => cfg.batch_max_bytes = num(v)? as usize,
        "value_size_hint" => cfg.value_size_hint = num(v)? as usize,
        "ttl_secs" => cfg.ttl_secs = Some(num(v)?),
        "buffer_pool_bytes" => cfg.buffer_pool_bytes = num(v)? as usize,
        "max_key_bytes" => cfg.max_key_bytes = num(v)? as usize,
        "max_value_bytes" => cfg.max_value_bytes = num(v)? as usize,
        "max_queued_parts" => cfg.max_queued_parts = num(v)? as usize,
        "max_queued_bytes" => cfg.max_queued_bytes = num(v)? as usize,
        "direct_reads" => match v {
            "true" => cfg.direct_reads = true,
            "false" => cfg.direct_reads = false,
            _ => return Err(format!("bad boolean for {k}: {v:?}")),
        },
        "fail_fast_when_full" => match v {
            "true" => cfg.fail_fast_when_full = true,
            "false" => cfg.fail_fast_when_full = false,
            _ => return Err(format!("bad boolean for {k}: {v:?}")),
        },
        "tls_ca" => *cfg = std::mem::take(cfg).tls_ca_file(decoded(v)?),
        "tls_cert" => cfg.tls.get_or_insert_with(Default::default).cert_file = Some(decoded(v)?.into()),
        "tls_key" => cfg.tls.get_or_insert_with(Default::default).key_file = Some(decoded(v)?.into()),
        "tls_server_name" => *cfg = std::mem::take(cfg).tls_server_name(&decoded(v)?),
        "tls_insecure_skip_verify" => match v {
            "true" => *cfg = std::mem::take(cfg).tls_insecure_skip_verify(true),
            "false" => {}
            _ => return Err(format!("bad boolean for {k}: {v:?}")),
        },
        "read_from" => {
            cfg.read_from = match v {
                "primary" => ReadFrom::Primary,
                "replica" => ReadFrom::Replica,
                "spread" => ReadFrom::Spread,
                "az_affinity" => ReadFrom::AzAffinity,
                "az_affinity_replicas_and_primary" => ReadFrom::AzAffinityReplicasAndPrimary,
                _ => {
                    return Err(format!(
                        "bad read_from {v:?} (primary, replica, spread, az_affinity or \
                         az_affinity_replicas_and_primary)"
                    ));
                }
            }
        }
        "client_az" => cfg.client_az = Some(decoded(v)?),
        "client_name" => cfg.client_name = Some(decoded(v)?),
        "sentinel_user" => cfg.sentinel.as_mut().ok_or_else(sentinel_only)?.username = Some(decoded(v)?),
        "sentinel_password" => cfg.sentinel.as_mut().ok_or_else(sentinel_only)?.password = Some(decoded(v)?),
        _ => return Err(format!("unknown option {k:?}")),
    }
    Ok(())
}

/// Sentinel's default port.
const SENTINEL_PORT: u16 = 26379;

/// `host[:port]` or `[v6]:port` to `host:port` (`default_port` when none is given); `None` when malformed.
pub(crate) fn parse_host(h: &str, default_port: u16) -> Option<String> {
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
        None => default_port,
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

/// `url` with its password, and the value of every option whose name contains `password`, replaced by `***`
/// (the user name stays), for messages and logs.
///
/// ```
/// use kvcache_redis::redact_url;
/// assert_eq!(redact_url("redis://bob:s3cret@h:6379/2"), "redis://bob:***@h:6379/2");
/// assert_eq!(
///     redact_url("redis+sentinel://s1/svc?sentinel_password=x&read_from=spread"),
///     "redis+sentinel://s1/svc?sentinel_password=***&read_from=spread"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable URL>".into();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            // `redis://secret@host` is a password alone.
            None => format!("***@{hosts}"),
        },
        None => authority.to_string(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let options: Vec<String> = query
            .split('&')
            .map(|o| match o.split_once('=') {
                Some((name, _)) if name.contains("password") => format!("{name}=***"),
                _ => o.to_string(),
            })
            .collect();
        out = format!("{out}?{}", options.join("&"));
    }
    out
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
            ("redis-cluster://a:1/2", &["a:1"], Mode::Cluster, None, None, 2),
            ("redis://a:1?mode=cluster&db=4", &["a:1"], Mode::Cluster, None, None, 4),
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
    fn parses_sentinel_urls_and_read_from() {
        let c: Config = "redis+sentinel://u:p%40ss@s1,s2:5000,[::1]/my%2Dsvc/3?sentinel_user=su&sentinel_password=sp&read_from=spread"
            .parse()
            .unwrap();
        assert_eq!(c.seeds, ["s1:26379", "s2:5000", "[::1]:26379"]);
        let s = c.sentinel.as_ref().unwrap();
        assert_eq!(
            (s.service.as_str(), s.username.as_deref(), s.password.as_deref()),
            ("my-svc", Some("su"), Some("sp"))
        );
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref(), c.db),
            (Some("u"), Some("p@ss"), 3)
        );
        assert_eq!(c.read_from, ReadFrom::Spread);
        assert!(c.tls.is_none());
        let c: Config = "valkeys+sentinel://s1/svc".parse().unwrap();
        assert!(c.tls.is_some() && c.sentinel.as_ref().unwrap().password.is_none());
        assert_eq!(c.db, 0);
        let c: Config = "redis://h?read_from=az_affinity_replicas_and_primary&client_az=us%2Deast&client_name=cache-1"
            .parse()
            .unwrap();
        assert_eq!(
            (c.read_from, c.client_az.as_deref(), c.client_name.as_deref()),
            (ReadFrom::AzAffinityReplicasAndPrimary, Some("us-east"), Some("cache-1"))
        );
        let c: Config = "redis://h?read_from=replica".parse().unwrap();
        assert_eq!((c.read_from, c.sentinel.is_none()), (ReadFrom::Replica, true));
        let shown = format!(
            "{:?}",
            "redis+sentinel://:dpw@s/svc?sentinel_password=spw"
                .parse::<Config>()
                .unwrap()
        );
        assert!(!shown.contains("dpw") && !shown.contains("spw"), "{shown}");
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
            ("redis://h?client_name=a%20b", "no spaces"),
            ("redis://h?client_name=", "no spaces"),
            ("redis://h?read_from=az_affinity", "set client_az too"),
            ("unix://host/tmp/r.sock", "unix:///absolute/path"),
            ("unix://", "unix:///absolute/path"),
            ("unix:///tmp/r.sock?mode=cluster", "one standalone server"),
            ("unix:///tmp/r.sock?db=x", "bad database"),
            ("rediss://h?tls_insecure_skip_verify=maybe", "bad boolean"),
            ("redis+sentinel://h:26379", "names the service"),
            ("redis+sentinel://h/", "names the service"),
            ("redis+sentinel://h/svc/x", "bad database"),
            ("redis+sentinel://h/svc?mode=cluster", "mode must stay auto"),
            ("redis://h?sentinel_password=x", "is for Sentinel deployments"),
            ("redis://h?read_from=nearest", "bad read_from"),
            ("redis-sentinel://h:1,h:2", "LMCache's spelling"),
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
        let err = "redis+sentinel://h/svc?sentinel_password=hunter2&colour=x"
            .parse::<Config>()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn redacts_passwords_in_urls() {
        let cases = [
            ("redis://u:p%40ss@h:1/0", "redis://u:***@h:1/0"),
            ("rediss://secret@h:1", "rediss://***@h:1"),
            ("redis://h:1", "redis://h:1"),
            ("unix://:pw@/tmp/r.sock?db=2", "unix://:***@/tmp/r.sock?db=2"),
            (
                "redis+sentinel://u:p@h:1,h:2/svc?sentinel_password=s3&read_from=spread",
                "redis+sentinel://u:***@h:1,h:2/svc?sentinel_password=***&read_from=spread",
            ),
            ("no scheme:pw@h", "<unparsable URL>"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
