//! For tools: the deployment's shards, and a plain connection to one node that sends any command through the
//! client's own connection settings (TLS, authentication, timeouts). Not for the data path: it does no batching,
//! routing or redirects. The handle's `connect_node` and `shards` delegate here.

use std::ops::RangeInclusive;
use std::time::Instant;

use redis::Value;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::reader::{Expect, Reply as ReadReply};
use crate::resp::Outgoing;
use crate::shared::Shared;
use crate::slot_map::{SlotRange, parse_cluster_slots};

/// A reply to an admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// No value (a missing key).
    Nil,
    /// An integer.
    Int(i64),
    /// A bulk string.
    Data(Vec<u8>),
    /// A simple status (`OK`, ...).
    Status(String),
    /// An array (or a map, flattened into key, value, key, value, ...).
    Array(Vec<Reply>),
    /// An error reply: its code and the rest.
    Error {
        /// The first word (`ERR`, `NOPERM`, ...).
        code: String,
        /// The rest of the message.
        detail: String,
    },
    /// Any other reply type, in its debug form.
    Other(String),
}

impl Reply {
    /// The reply as an integer, if it is one (or a bulk string holding one).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            Reply::Data(d) => std::str::from_utf8(d).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// The reply as bytes, for bulk strings and statuses.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Data(d) => Some(d),
            Reply::Status(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The items of an array reply (empty otherwise).
    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(a) => a,
            _ => &[],
        }
    }

    /// `Err` for an error reply, naming the node.
    pub fn into_result(self, node: &str) -> Result<Reply> {
        match self {
            Reply::Error { code, detail } => Err(Error::Server {
                node: node.to_string(),
                code,
                detail,
            }),
            other => Ok(other),
        }
    }

    fn from_value(v: Value) -> Reply {
        match v {
            Value::Nil => Reply::Nil,
            Value::Int(i) => Reply::Int(i),
            Value::BulkString(b) => Reply::Data(b),
            Value::SimpleString(s) => Reply::Status(s),
            Value::Okay => Reply::Status("OK".into()),
            Value::Array(a) | Value::Set(a) => Reply::Array(a.into_iter().map(Reply::from_value).collect()),
            Value::Map(m) => Reply::Array(
                m.into_iter()
                    .flat_map(|(k, v)| [Reply::from_value(k), Reply::from_value(v)])
                    .collect(),
            ),
            Value::ServerError(e) => Reply::Error {
                code: e.code().to_string(),
                detail: e.details().unwrap_or("").to_string(),
            },
            other => Reply::Other(format!("{other:?}")),
        }
    }
}

/// A plain blocking connection to one node, opened with the client's settings.
pub struct NodeConnection {
    node: String,
    conn: Connection,
    timeout: std::time::Duration,
}

impl NodeConnection {
    /// The node, `host:port`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Sends one command (`args[0]` is its name) and reads its reply, within the client's request timeout.
    pub fn query<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply> {
        Ok(self.pipeline(&[args])?.pop().expect("one reply per command"))
    }

    /// Sends several commands in one write and reads their replies, in order.
    pub fn pipeline<A: AsRef<[u8]>, C: AsRef<[A]>>(&mut self, commands: &[C]) -> Result<Vec<Reply>> {
        let mut out = Outgoing::default();
        for args in commands {
            let args: Vec<&[u8]> = args.as_ref().iter().map(AsRef::as_ref).collect();
            if args.is_empty() {
                return Err(Error::InvalidInput("an empty command".into()));
            }
            out.push(&args);
        }
        let expects = vec![Expect::Value; commands.len()];
        let replies = self.conn.round_trip(out, &expects, Instant::now() + self.timeout)?;
        Ok(replies
            .into_iter()
            .map(|r| match r {
                ReadReply::Value(v) => Reply::from_value(v),
                other => unreachable!("Value replies asked, got {other:?}"),
            })
            .collect())
    }
}

/// One shard: the slots it serves, its primary and its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Slot ranges served (`0..=16383` for a standalone server).
    pub slots: Vec<RangeInclusive<u16>>,
    /// The primary, `host:port`.
    pub primary: String,
    /// Its replicas, `host:port`.
    pub replicas: Vec<String>,
}

impl Shard {
    /// How many slots this shard serves.
    pub fn slot_count(&self) -> usize {
        self.slots.iter().map(|r| r.clone().count()).sum()
    }
}

/// A plain connection to `node` with the client's connection settings (see [`Client::connect_node`]).
///
/// [`Client::connect_node`]: crate::Client::connect_node
pub(crate) fn connect_node(shared: &Shared, node: &str) -> Result<NodeConnection> {
    Ok(NodeConnection {
        node: node.to_string(),
        conn: Connection::connect(node, &shared.connect)?,
        timeout: shared.config.request_timeout,
    })
}

/// The deployment's shards as the first primary that answers sees them now (see [`Client::shards`]).
///
/// [`Client::shards`]: crate::Client::shards
pub(crate) fn shards(shared: &Shared) -> Result<Vec<Shard>> {
    let map = shared.topology.current();
    let mut last = Error::Topology("no node known".into());
    for node in &map.nodes {
        let mut conn = match connect_node(shared, node) {
            Ok(c) => c,
            Err(e) => {
                last = e;
                continue;
            }
        };
        return if map.is_cluster() {
            let reply = conn.conn.call(&[b"CLUSTER", b"SLOTS"], conn.timeout)?;
            Ok(shards_by_primary(parse_cluster_slots(&reply, node)?))
        } else {
            let info = conn.query(&["INFO", "replication"])?.into_result(node)?;
            let text = String::from_utf8_lossy(info.as_bytes().unwrap_or_default()).into_owned();
            Ok(vec![Shard {
                slots: vec![0..=16383],
                primary: node.clone(),
                replicas: replicas_from_info(&text),
            }])
        };
    }
    Err(last)
}

/// The ranges of a `CLUSTER SLOTS` reply, grouped by primary, in slot order.
fn shards_by_primary(ranges: Vec<SlotRange>) -> Vec<Shard> {
    let mut shards: Vec<Shard> = Vec::new();
    for range in ranges {
        match shards.iter_mut().find(|s| s.primary == range.primary) {
            Some(s) => {
                s.slots.push(range.slots);
                for r in range.replicas {
                    if !s.replicas.contains(&r) {
                        s.replicas.push(r);
                    }
                }
            }
            None => shards.push(Shard {
                slots: vec![range.slots],
                primary: range.primary,
                replicas: range.replicas,
            }),
        }
    }
    for s in &mut shards {
        s.slots.sort_by_key(|r| *r.start());
    }
    shards.sort_by_key(|s| s.slots.first().map(|r| *r.start()));
    shards
}

/// `slaveN:ip=...,port=...` lines of `INFO replication`.
fn replicas_from_info(info: &str) -> Vec<String> {
    info.lines()
        .filter(|l| l.starts_with("slave") && l.contains("ip="))
        .filter_map(|l| {
            let field = |name: &str| {
                l.split([':', ','])
                    .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            };
            Some(format!("{}:{}", field("ip")?, field("port")?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_replicas_from_info() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=127.0.0.1,port=7001,state=online,offset=42,lag=0\r\n\
                    slave1:ip=10.0.0.2,port=7002,state=online,offset=42,lag=1\r\nmaster_repl_offset:42\r\n";
        assert_eq!(replicas_from_info(info), vec!["127.0.0.1:7001", "10.0.0.2:7002"]);
    }

    #[test]
    fn groups_cluster_slots_by_primary() {
        let node = |h: &str, p: i64| Value::Array(vec![Value::BulkString(h.into()), Value::Int(p), Value::Nil]);
        let range = |a: i64, b: i64, nodes: Vec<Value>| {
            let mut f = vec![Value::Int(a), Value::Int(b)];
            f.extend(nodes);
            Value::Array(f)
        };
        let reply = Value::Array(vec![
            range(100, 200, vec![node("h", 2)]),
            range(0, 99, vec![node("h", 1), node("h", 4)]),
            range(201, 16383, vec![node("h", 1), node("h", 4)]),
        ]);
        let shards = shards_by_primary(parse_cluster_slots(&reply, "h:1").unwrap());
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0].primary, "h:1");
        assert_eq!(shards[0].slots, vec![0..=99, 201..=16383]);
        assert_eq!(shards[0].replicas, vec!["h:4"]);
        assert_eq!(shards[0].slot_count() + shards[1].slot_count(), 16384);
    }
}
