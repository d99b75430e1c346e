//! What a Sentinel says of a service (`SENTINEL MASTER`, `SENTINEL REPLICAS`, `SENTINEL GET-MASTER-ADDR-BY-NAME`),
//! read from its replies; public, so that tools can show it (see [`Client::sentinels`](crate::Client::sentinels)).

use redis::Value;

use crate::error::{Error, Result};

/// What one Sentinel says of the service it was asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentinelView {
    /// The primary, `host:port`: the address `SENTINEL GET-MASTER-ADDR-BY-NAME` gives (during a failover, the
    /// promoted replica as soon as the Sentinel leading it has promoted it).
    pub primary: String,
    /// The configuration epoch of the service on this Sentinel; the highest epoch any Sentinel reports wins.
    pub epoch: i64,
    /// The primary's flags as the Sentinel sees it (`master`, `s_down`, `o_down`, `failover_in_progress`...).
    pub flags: String,
    /// The replicas this Sentinel knows of (never the primary).
    pub replicas: Vec<SentinelReplica>,
}

/// One replica as a Sentinel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentinelReplica {
    /// `host:port`.
    pub addr: String,
    /// Its flags (`slave`, `s_down`, `disconnected`...).
    pub flags: String,
    /// Whether its `master-link-status` is `ok` (linked to its primary).
    pub link_ok: bool,
}

impl SentinelReplica {
    /// Whether reads may go to it: up, connected, and linked to its primary.
    pub fn usable(&self) -> bool {
        self.link_ok
            && !["s_down", "o_down", "disconnected"]
                .iter()
                .any(|f| self.flags.contains(f))
    }
}

/// What one Sentinel answered when asked about the service (see [`Client::sentinels`](crate::Client::sentinels)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SentinelAnswer {
    /// The Sentinel, `host:port`.
    pub sentinel: String,
    /// The service (master name) asked about.
    pub service: String,
    /// Its view, or why there is none.
    pub view: Result<SentinelView>,
}

/// A string, or number, reply as text.
pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A flat field / value list (`SENTINEL MASTER`, one entry of `SENTINEL REPLICAS`) as pairs.
fn fields(v: &Value) -> Vec<(String, String)> {
    let text = |v: &Value| text(v).unwrap_or_default();
    match v {
        Value::Array(items) => items
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (text(&c[0]), text(&c[1])))
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), text(v))).collect(),
        _ => Vec::new(),
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `host:port`, with IPv6 hosts in brackets.
fn endpoint(host: &str, port: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The `[ip, port]` reply of `SENTINEL GET-MASTER-ADDR-BY-NAME` as `host:port`.
pub(super) fn address(reply: &Value) -> Option<String> {
    let Value::Array(items) = reply else { return None };
    match items.as_slice() {
        [ip, port] => Some(endpoint(&text(ip)?, &text(port)?)),
        _ => None,
    }
}

/// Reads the replies of `SENTINEL MASTER` and `SENTINEL REPLICAS` from Sentinel `addr`.
pub(super) fn parse_view(master: &Value, replicas: &Value, addr: &str) -> Result<SentinelView> {
    if let Value::ServerError(e) = master {
        let detail = e.details().unwrap_or("");
        if detail.contains("No such master") {
            return Err(Error::Topology(format!(
                "Sentinel {addr} knows no service by that name"
            )));
        }
        return Err(Error::Server {
            node: addr.to_string(),
            code: e.code().to_string(),
            detail: detail.to_string(),
        });
    }
    let m = fields(master);
    let (Some(ip), Some(port)) = (field(&m, "ip"), field(&m, "port")) else {
        return Err(Error::protocol(
            addr,
            format!("SENTINEL MASTER without ip and port: {master:?}"),
        ));
    };
    let replicas = match replicas {
        Value::Array(items) => items
            .iter()
            .filter_map(|r| {
                let f = fields(r);
                Some(SentinelReplica {
                    addr: endpoint(field(&f, "ip")?, field(&f, "port")?),
                    flags: field(&f, "flags").unwrap_or("").to_string(),
                    link_ok: field(&f, "master-link-status") == Some("ok"),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(SentinelView {
        primary: endpoint(ip, port),
        epoch: field(&m, "config-epoch").and_then(|e| e.parse().ok()).unwrap_or(0),
        flags: field(&m, "flags").unwrap_or("").to_string(),
        replicas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn flat(pairs: &[(&str, &str)]) -> Value {
        Value::Array(pairs.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect())
    }

    proptest::proptest! {
        /// What a Sentinel says about a service reads back as said; any answer at all never panics.
        #[test]
        fn fuzz_sentinel_answers_read_as_said(
            ip in "[0-9]{1,3}(\\.[0-9]{1,3}){3}",
            port in 1u16..65535,
            epoch in 0i64..1_000_000,
            replicas in proptest::collection::vec(("[0-9]{1,3}(\\.[0-9]{1,3}){3}", 1u16..65535, proptest::bool::ANY), 0..4),
        ) {
            let master = flat(&[("name", "svc"), ("ip", &ip), ("port", &port.to_string()), ("flags", "master"),
                ("config-epoch", &epoch.to_string())]);
            let answer = Value::Array(replicas.iter().map(|(ip, port, up)| flat(&[("ip", ip), ("port", &port.to_string()),
                ("flags", if *up { "slave" } else { "s_down,slave" }), ("master-link-status", if *up { "ok" } else { "err" })])).collect());
            let v = parse_view(&master, &answer, "s:1").unwrap();
            proptest::prop_assert_eq!((v.primary, v.epoch), (format!("{ip}:{port}"), epoch));
            let read: Vec<(String, bool)> = v.replicas.iter().map(|r| (r.addr.clone(), r.usable())).collect();
            let said: Vec<(String, bool)> = replicas.iter().map(|(ip, port, up)| (format!("{ip}:{port}"), *up)).collect();
            proptest::prop_assert_eq!(read, said);
        }

        #[test]
        fn fuzz_sentinel_answers_never_panic(
            master in crate::properties::value_tree(),
            replicas in crate::properties::value_tree(),
        ) {
            let _ = parse_view(&master, &replicas, "s:1");
            let _ = address(&master);
        }
    }

    #[test]
    fn reads_what_a_sentinel_says() {
        let master = flat(&[
            ("name", "svc"),
            ("ip", "10.0.0.1"),
            ("port", "6379"),
            ("flags", "master"),
            ("config-epoch", "7"),
        ]);
        let replicas = Value::Array(vec![
            flat(&[
                ("ip", "10.0.0.2"),
                ("port", "6380"),
                ("flags", "slave"),
                ("master-link-status", "ok"),
            ]),
            flat(&[
                ("ip", "10.0.0.3"),
                ("port", "6381"),
                ("flags", "s_down,slave,disconnected"),
                ("master-link-status", "err"),
            ]),
            flat(&[
                ("ip", "::1"),
                ("port", "6382"),
                ("flags", "slave"),
                ("master-link-status", "err"),
            ]),
        ]);
        let v = parse_view(&master, &replicas, "s:1").unwrap();
        assert_eq!((v.primary.as_str(), v.epoch), ("10.0.0.1:6379", 7));
        let usable: Vec<&str> = v
            .replicas
            .iter()
            .filter(|r| r.usable())
            .map(|r| r.addr.as_str())
            .collect();
        assert_eq!(usable, ["10.0.0.2:6380"]);
        assert_eq!(v.replicas[2].addr, "[::1]:6382");
        assert_eq!(
            address(&Value::Array(vec![bulk("10.0.0.2"), bulk("6380")])).as_deref(),
            Some("10.0.0.2:6380")
        );
        assert_eq!(address(&Value::Nil), None);
        let unknown = redis::parse_redis_value(b"-ERR No such master with that name\r\n").unwrap();
        assert!(
            matches!(parse_view(&unknown, &Value::Nil, "s:1"), Err(Error::Topology(m)) if m.contains("knows no service"))
        );
        let denied = redis::parse_redis_value(b"-NOPERM this user has no permissions\r\n").unwrap();
        assert_eq!(
            parse_view(&denied, &Value::Nil, "s:1").unwrap_err().server_code(),
            Some("NOPERM")
        );
    }
}
