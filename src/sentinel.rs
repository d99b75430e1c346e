//! Sentinel-managed deployments. Every Sentinel is asked for the primary of the service and its replicas; the
//! answer of the highest config epoch wins, so as soon as any Sentinel names a new primary the client follows it,
//! whatever the old primary still answers. The primary named is verified with `ROLE`; replicas flagged down,
//! disconnected or not linked to their primary are left out. The Sentinels' announcements (`+promoted-slave`,
//! `+switch-master`) are watched on a thread of their own, so a failover is learned the moment it is made.

use std::time::{Duration, Instant};

use redis::Value;

use crate::connection::{ConnectOptions, Connection, timespec};
use crate::error::{Error, Result};
use crate::reader::{Expect, Reply};
use crate::resp::Outgoing;
use crate::slot_map::SlotMap;

/// The Sentinels of one service, and how to reach them.
#[derive(Clone)]
pub(crate) struct Sentinels {
    pub(crate) addrs: Vec<String>,
    pub(crate) service: String,
    /// The Sentinels' own credentials and the deployment's TLS.
    pub(crate) opts: ConnectOptions,
}

/// What one Sentinel says of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) primary: String,
    pub(crate) epoch: i64,
    pub(crate) flags: String,
    pub(crate) replicas: Vec<ReplicaView>,
}

/// One replica as a Sentinel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplicaView {
    pub(crate) addr: String,
    pub(crate) flags: String,
    /// `master-link-status` is `ok`.
    pub(crate) link_ok: bool,
}

impl ReplicaView {
    /// Whether reads may go to it: up, connected, and linked to its primary.
    pub(crate) fn usable(&self) -> bool {
        self.link_ok
            && !["s_down", "o_down", "disconnected"]
                .iter()
                .any(|f| self.flags.contains(f))
    }
}

impl Sentinels {
    /// Asks every Sentinel (each within `timeout`) for the service; their answers, in order.
    pub(crate) fn ask_all(&self, timeout: Duration) -> Vec<(String, Result<View>)> {
        // All at once, so that unreachable Sentinels cost one timeout, not one each.
        std::thread::scope(|s| {
            let asks: Vec<_> = self
                .addrs
                .iter()
                .map(|a| (a, s.spawn(move || self.ask(a, timeout))))
                .collect();
            asks.into_iter()
                .map(|(a, h)| {
                    let r = h
                        .join()
                        .unwrap_or_else(|_| Err(Error::Topology(format!("asking Sentinel {a} panicked"))));
                    (a.clone(), r)
                })
                .collect()
        })
    }

    fn ask(&self, addr: &str, timeout: Duration) -> Result<View> {
        let opts = ConnectOptions {
            timeout,
            ..self.opts.clone()
        };
        let mut conn = Connection::connect(addr, &opts)?;
        let service = self.service.as_bytes();
        let mut out = Outgoing::default();
        out.push(&[b"SENTINEL", b"MASTER", service]);
        out.push(&[b"SENTINEL", b"REPLICAS", service]);
        // The Sentinel leading a failover names the promoted replica here as soon as it is promoted, while its
        // `SENTINEL MASTER` still shows the old primary (with the new config epoch) until every replica follows.
        out.push(&[b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", service]);
        let replies = conn.round_trip(
            out,
            &[Expect::Value, Expect::Value, Expect::Value],
            Instant::now() + timeout,
        )?;
        let mut replies = replies.into_iter().map(|r| match r {
            Reply::Value(v) => v,
            other => unreachable!("Value asked, got {other:?}"),
        });
        let mut next = || replies.next().expect("three replies");
        let (master, replicas, current) = (next(), next(), next());
        let mut view = parse_view(&master, &replicas, addr)?;
        if let Some(primary) = address(&current) {
            view.primary = primary;
        }
        view.replicas.retain(|r| r.addr != view.primary);
        Ok(view)
    }

    /// The map of the service: the primary of the highest config epoch any Sentinel reports, verified with `ROLE`
    /// over `data` (the data nodes' settings), and its usable replicas. The error says which Sentinels were asked
    /// and what each answered.
    pub(crate) fn discover(&self, data: &ConnectOptions, timeout: Duration) -> Result<SlotMap> {
        let answers = self.ask_all(timeout);
        let best = answers
            .iter()
            .filter_map(|(a, r)| r.as_ref().ok().map(|v| (a, v)))
            .fold(None::<(&String, &View)>, |best, (a, v)| match best {
                Some((_, b)) if b.epoch >= v.epoch => best,
                _ => Some((a, v)),
            });
        let Some((from, view)) = best else {
            return Err(self.no_answer(answers));
        };
        let role = primary_role(&view.primary, data, timeout)?;
        if role != "master" {
            return Err(Error::Topology(format!(
                "Sentinel {from} names {} as the primary of {:?}, but it says it is a {role}",
                view.primary, self.service
            )));
        }
        let replicas = view
            .replicas
            .iter()
            .filter(|r| r.usable())
            .map(|r| r.addr.clone())
            .collect();
        Ok(SlotMap::sentinel(view.primary.clone(), replicas))
    }

    /// The error when no Sentinel gave a view: an authentication error, or the refusal every Sentinel gave, as it
    /// is (typed), else one that names the service and what each Sentinel said.
    fn no_answer(&self, answers: Vec<(String, Result<View>)>) -> Error {
        let auth = answers.iter().find_map(|(_, r)| match r {
            Err(e) if matches!(e.server_code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM")) => Some(e.clone()),
            _ => None,
        });
        if let Some(e) = auth {
            return e;
        }
        if answers.iter().all(|(_, r)| matches!(r, Err(Error::Server { .. }))) {
            return answers
                .into_iter()
                .find_map(|(_, r)| r.err())
                .expect("one answer at least");
        }
        let unknown = answers
            .iter()
            .all(|(_, r)| matches!(r, Err(Error::Topology(m)) if m.contains("knows no service")));
        let asked: Vec<String> = answers
            .into_iter()
            .map(|(a, r)| format!("{a}: {}", r.err().map_or_else(String::new, |e| e.to_string())))
            .collect();
        if unknown {
            Error::Topology(format!(
                "no Sentinel knows a service named {:?} (asked {})",
                self.service,
                asked.join("; ")
            ))
        } else {
            Error::Topology(format!(
                "no Sentinel answered for service {:?}: {}",
                self.service,
                asked.join("; ")
            ))
        }
    }
}

/// The first element of `ROLE` on `node`: `master`, `slave` (Redis and Valkey still say so), `sentinel`.
fn primary_role(node: &str, data: &ConnectOptions, timeout: Duration) -> Result<String> {
    let opts = ConnectOptions {
        timeout,
        db: 0,
        readonly: false,
        ..data.clone()
    };
    let mut conn = Connection::connect(node, &opts)?;
    match conn.call(&[b"ROLE"], timeout)? {
        Value::Array(items) => match items.first() {
            Some(Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
            Some(Value::SimpleString(s)) => Ok(s.clone()),
            _ => Err(Error::protocol(node, "ROLE without a role")),
        },
        Value::ServerError(e) => Err(Error::Server {
            node: node.to_string(),
            code: e.code().to_string(),
            detail: e.details().unwrap_or("").to_string(),
        }),
        other => Err(Error::protocol(node, format!("ROLE: {other:?}"))),
    }
}

/// A string, or number, reply as text.
fn text(v: &Value) -> Option<String> {
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
fn address(reply: &Value) -> Option<String> {
    let Value::Array(items) = reply else { return None };
    match items.as_slice() {
        [ip, port] => Some(endpoint(&text(ip)?, &text(port)?)),
        _ => None,
    }
}

/// Reads the replies of `SENTINEL MASTER` and `SENTINEL REPLICAS` from Sentinel `addr`.
fn parse_view(master: &Value, replicas: &Value, addr: &str) -> Result<View> {
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
                Some(ReplicaView {
                    addr: endpoint(field(&f, "ip")?, field(&f, "port")?),
                    flags: field(&f, "flags").unwrap_or("").to_string(),
                    link_ok: field(&f, "master-link-status") == Some("ok"),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(View {
        primary: endpoint(ip, port),
        epoch: field(&m, "config-epoch").and_then(|e| e.parse().ok()).unwrap_or(0),
        flags: field(&m, "flags").unwrap_or("").to_string(),
        replicas,
    })
}

/// Watches the announcements of new primaries on every Sentinel: calls `switched()` when the service's primary changes; reconnects
/// to Sentinels that go away (every second); returns once `alive()` is false (the client is gone).
pub(crate) fn watch(sentinels: Sentinels, switched: impl Fn(), alive: impl Fn() -> bool) {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut subs: Vec<Option<Connection>> = sentinels.addrs.iter().map(|_| None).collect();
    let mut retry_at = Instant::now();
    loop {
        if !alive() {
            return;
        }
        if Instant::now() >= retry_at {
            for (addr, sub) in sentinels.addrs.iter().zip(subs.iter_mut()) {
                if sub.is_none() {
                    *sub = subscribe(addr, &sentinels.opts)
                        .inspect_err(|e| log::debug!("{e}"))
                        .ok();
                }
            }
            retry_at = Instant::now() + Duration::from_secs(1);
        }
        let live: Vec<usize> = (0..subs.len()).filter(|&i| subs[i].is_some()).collect();
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = live
                .iter()
                .map(|&i| PollFd::from_borrowed_fd(subs[i].as_ref().expect("live").fd(), PollFlags::IN))
                .collect();
            let _ = poll(&mut fds, Some(&timespec(Duration::from_millis(500))));
            fds.iter().map(|f| !f.revents().is_empty()).collect()
        };
        for (&i, ready) in live.iter().zip(ready) {
            if !ready {
                continue;
            }
            let conn = subs[i].as_mut().expect("live");
            loop {
                match conn.read(&Expect::Value) {
                    Ok(Some(Reply::Value(message))) => {
                        if is_switch(&message, &sentinels.service) {
                            log::info!(
                                "Sentinel {}: a new primary for {:?}",
                                sentinels.addrs[i],
                                sentinels.service
                            );
                            switched();
                        }
                    }
                    Ok(_) => break,
                    Err(e) => {
                        log::debug!("Sentinel subscription to {}: {e}", sentinels.addrs[i]);
                        subs[i] = None;
                        break;
                    }
                }
            }
        }
    }
}

/// A connection subscribed to the announcements of new primaries on Sentinel `addr`.
fn subscribe(addr: &str, opts: &ConnectOptions) -> Result<Connection> {
    let opts = ConnectOptions {
        timeout: opts.timeout.min(Duration::from_secs(1)),
        ..opts.clone()
    };
    let mut conn = Connection::connect(addr, &opts)?;
    let mut out = Outgoing::default();
    out.push(&[b"SUBSCRIBE", b"+switch-master", b"+promoted-slave"]);
    conn.round_trip(out, &[Expect::Value, Expect::Value], Instant::now() + opts.timeout)?;
    Ok(conn)
}

/// Whether `message` announces a new primary for `service`: `+promoted-slave` (`slave NAME IP PORT @ SERVICE ...`,
/// published by the Sentinel leading a failover the moment the replica it promoted says it is a primary), or
/// `+switch-master` (`SERVICE old-ip old-port new-ip new-port`, published by every Sentinel as it learns it).
fn is_switch(message: &Value, service: &str) -> bool {
    let Value::Array(items) = message else { return false };
    let [kind, channel, body] = items.as_slice() else {
        return false;
    };
    let (kind, channel, body) = (
        text(kind).unwrap_or_default(),
        text(channel).unwrap_or_default(),
        text(body).unwrap_or_default(),
    );
    let mut words = body.split(' ');
    kind == "message"
        && match channel.as_str() {
            "+switch-master" => words.next() == Some(service),
            "+promoted-slave" => words.skip_while(|w| *w != "@").nth(1) == Some(service),
            _ => false,
        }
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

    #[test]
    fn recognises_switch_announcements() {
        let msg = |channel: &str, body: &str| Value::Array(vec![bulk("message"), bulk(channel), bulk(body)]);
        assert!(is_switch(
            &msg("+switch-master", "svc 10.0.0.1 6379 10.0.0.2 6380"),
            "svc"
        ));
        assert!(!is_switch(
            &msg("+switch-master", "other 10.0.0.1 6379 10.0.0.2 6380"),
            "svc"
        ));
        assert!(!is_switch(&msg("+sdown", "svc"), "svc"));
        assert!(is_switch(
            &msg(
                "+promoted-slave",
                "slave 10.0.0.2:6380 10.0.0.2 6380 @ svc 10.0.0.1 6379"
            ),
            "svc"
        ));
        assert!(!is_switch(
            &msg(
                "+promoted-slave",
                "slave 10.0.0.2:6380 10.0.0.2 6380 @ other 10.0.0.1 6379"
            ),
            "svc"
        ));
        assert!(!is_switch(
            &Value::Array(vec![bulk("subscribe"), bulk("+switch-master"), Value::Int(1)]),
            "svc"
        ));
    }
}
