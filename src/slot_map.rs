//! Which node owns which key: the slot map (an immutable snapshot), read from a `CLUSTER SLOTS` reply, and the
//! redirects (`MOVED`, `ASK`) and transient refusals a reply can carry. Pure.

use std::collections::BTreeMap;

use redis::Value;

use crate::config::ReadFrom;
use crate::error::{Error, Result};
use crate::slot::{SLOTS, Slot};

/// Marks a slot no primary serves.
const UNOWNED: u16 = u16::MAX;

/// What kind of deployment a map describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapKind {
    /// One server serves every key; it never changes.
    Standalone,
    /// A Cluster: slots spread over primaries, which replicas replace in a failover.
    Cluster,
    /// One primary, named by Sentinels, which a replica replaces in a failover.
    Sentinel,
}

/// An immutable snapshot of who serves what. Workers keep an `Arc` of it and look for a newer one every turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotMap {
    /// Primary addresses, `host:port`.
    pub(crate) nodes: Vec<String>,
    /// The replicas of each primary, by index in `nodes`.
    pub(crate) replicas: Vec<Vec<String>>,
    /// Node index per slot; empty outside a Cluster, where node 0 serves everything.
    slots: Vec<u16>,
    pub(crate) kind: MapKind,
    /// The availability zone each node reported (only nodes that reported one; read only for the zone-aware read
    /// policies).
    pub(crate) zones: BTreeMap<String, String>,
    /// The client's own zone, for the zone-aware read policies.
    pub(crate) home: Option<String>,
}

impl SlotMap {
    /// The primary serving `slot`, if any (cluster maps only).
    pub(crate) fn route_slot(&self, slot: Slot) -> Option<&str> {
        match self.slots.get(slot.get() as usize) {
            Some(&n) if n != UNOWNED => Some(&self.nodes[n as usize]),
            _ => None,
        }
    }

    pub(crate) fn standalone(node: String) -> SlotMap {
        SlotMap {
            nodes: vec![node],
            replicas: vec![Vec::new()],
            slots: Vec::new(),
            kind: MapKind::Standalone,
            zones: BTreeMap::new(),
            home: None,
        }
    }

    /// A Sentinel-managed primary and its usable replicas.
    pub(crate) fn sentinel(primary: String, replicas: Vec<String>) -> SlotMap {
        SlotMap {
            nodes: vec![primary],
            replicas: vec![replicas],
            slots: Vec::new(),
            kind: MapKind::Sentinel,
            zones: BTreeMap::new(),
            home: None,
        }
    }

    /// Whether the owner of a key can change under the client (a failover): then a silent node is watched for,
    /// and what it says after a silence is checked against a newer map.
    pub(crate) fn follows_failovers(&self) -> bool {
        self.kind != MapKind::Standalone
    }

    /// Whether `node` is a replica in this map.
    pub(crate) fn is_replica(&self, node: &str) -> bool {
        self.replicas.iter().flatten().any(|r| r == node)
    }

    /// The nodes a read of a key of shard `i` may go to under `policy` (the primary first), of which `usable`
    /// accepts the replicas (and, spreading, the primary, unless none is usable); never empty.
    pub(crate) fn read_candidates(&self, i: usize, policy: ReadFrom, usable: &dyn Fn(&str) -> bool) -> Vec<&str> {
        let primary = self.nodes[i].as_str();
        let replicas = self
            .replicas
            .get(i)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .filter(|r| usable(r));
        match policy {
            ReadFrom::Primary => vec![primary],
            ReadFrom::Replica => {
                let r: Vec<&str> = replicas.collect();
                if r.is_empty() { vec![primary] } else { r }
            }
            ReadFrom::Spread => {
                // A primary marked down or silent is left out while a replica can serve.
                let spread: Vec<&str> = std::iter::once(primary).filter(|p| usable(p)).chain(replicas).collect();
                if spread.is_empty() { vec![primary] } else { spread }
            }
            ReadFrom::AzAffinity | ReadFrom::AzAffinityReplicasAndPrimary => {
                let replicas: Vec<&str> = replicas.collect();
                let local: Vec<&str> = replicas.iter().copied().filter(|r| self.at_home(r)).collect();
                if !local.is_empty() {
                    local
                } else if policy == ReadFrom::AzAffinityReplicasAndPrimary && self.at_home(primary) {
                    vec![primary]
                } else if !replicas.is_empty() {
                    replicas
                } else {
                    vec![primary]
                }
            }
        }
    }

    /// Whether `node` reported the client's own zone.
    fn at_home(&self, node: &str) -> bool {
        self.home.is_some() && self.zones.get(node) == self.home.as_ref()
    }

    /// Whether `node` may answer a read (`write` false) or a write of `key` under `policy`.
    pub(crate) fn serves(&self, node: &str, key: &[u8], write: bool, policy: ReadFrom) -> bool {
        let Ok((i, _)) = self.route(key) else { return false };
        self.nodes[i] == node || (!write && policy != ReadFrom::Primary && self.replicas[i].iter().any(|r| r == node))
    }

    pub(crate) fn is_cluster(&self) -> bool {
        self.kind == MapKind::Cluster
    }

    /// The node serving `key`, and the key's slot in cluster mode (multi-key commands must stay within one).
    pub(crate) fn route(&self, key: &[u8]) -> Result<(usize, Option<Slot>)> {
        if !self.is_cluster() {
            return Ok((0, None));
        }
        let slot = Slot::of(key);
        match self.slots[slot.get() as usize] {
            UNOWNED => Err(Error::Topology(format!(
                "slot {} is not served by any primary",
                slot.get()
            ))),
            n => Ok((n as usize, Some(slot))),
        }
    }

    /// Index of `node`, added to the node list when new.
    fn node_index(&mut self, node: &str) -> usize {
        match self.nodes.iter().position(|n| n == node) {
            Some(i) => i,
            None => {
                self.nodes.push(node.to_string());
                self.replicas.push(Vec::new());
                self.nodes.len() - 1
            }
        }
    }

    /// This map with `slot` moved to `node`, as a MOVED reply says.
    pub(crate) fn with_moved(&self, slot: Slot, node: &str) -> SlotMap {
        let mut map = self.clone();
        let i = map.node_index(node);
        map.slots[slot.get() as usize] = i as u16;
        map
    }

    /// Builds the map from a `CLUSTER SLOTS` reply; `asked` is the node that gave it.
    pub(crate) fn from_cluster_slots(reply: &Value, asked: &str) -> Result<SlotMap> {
        let mut map = SlotMap {
            nodes: Vec::new(),
            replicas: Vec::new(),
            slots: vec![UNOWNED; SLOTS as usize],
            kind: MapKind::Cluster,
            zones: BTreeMap::new(),
            home: None,
        };
        for range in parse_cluster_slots(reply, asked)? {
            let node = map.node_index(&range.primary);
            for s in range.slots {
                map.slots[s as usize] = node as u16;
            }
            for r in range.replicas {
                if !map.replicas[node].contains(&r) {
                    map.replicas[node].push(r);
                }
            }
        }
        if map.nodes.is_empty() {
            return Err(Error::Topology(format!(
                "{asked} serves no slots: is the cluster formed?"
            )));
        }
        Ok(map)
    }
}

/// One range of a `CLUSTER SLOTS` reply.
pub(crate) struct SlotRange {
    pub(crate) slots: std::ops::RangeInclusive<u16>,
    /// `host:port` of its primary.
    pub(crate) primary: String,
    /// `host:port` of its replicas.
    pub(crate) replicas: Vec<String>,
}

/// Reads a `CLUSTER SLOTS` reply; `asked` is the node that gave it (its host stands in for endpoints the server
/// does not know).
pub(crate) fn parse_cluster_slots(reply: &Value, asked: &str) -> Result<Vec<SlotRange>> {
    let bad = |why: &str| Error::Topology(format!("bad CLUSTER SLOTS reply from {asked}: {why}"));
    let Value::Array(ranges) = reply else {
        return Err(bad("not an array"));
    };
    let asked_host = asked.rsplit_once(':').map_or(asked, |(h, _)| h);
    // `host:port` of one node entry (`[host, port, id, ...]`).
    let endpoint = |entry: &Value| -> Result<String> {
        let Value::Array(fields) = entry else {
            return Err(bad("node is not an array"));
        };
        let host = match fields.first() {
            Some(Value::BulkString(h)) if !h.is_empty() && h != b"?" => String::from_utf8_lossy(h).into_owned(),
            Some(Value::BulkString(_)) | Some(Value::Nil) => asked_host.to_string(),
            _ => return Err(bad("node without host")),
        };
        let Some(Value::Int(port)) = fields.get(1) else {
            return Err(bad("node without port"));
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(format!("{host}:{port}"))
    };
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(fields) = range else {
            return Err(bad("range is not an array"));
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(primary)) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(bad("range without start, end and primary"));
        };
        if !(0..SLOTS as i64).contains(start) || !(*start..SLOTS as i64).contains(end) {
            return Err(bad("slot range out of bounds"));
        }
        out.push(SlotRange {
            slots: *start as u16..=*end as u16,
            primary: endpoint(primary)?,
            replicas: fields[3..].iter().map(endpoint).collect::<Result<_>>()?,
        });
    }
    Ok(out)
}

/// A redirect or transient refusal that a retry may cure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Redirect {
    /// The slot lives elsewhere now: update the map, resend there.
    Moved { slot: Slot, node: String },
    /// The slot is migrating: send `ASKING` then the command to `node`, map unchanged.
    Ask { node: String },
    /// TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN: back off, resend to the same place.
    Retry,
    /// READONLY: a write reached a primary that was demoted to a replica: re-read the topology, back off, resend
    /// by the map.
    Demoted,
}

impl Redirect {
    /// Classifies an error reply; `None` for errors a retry cannot cure.
    pub(crate) fn parse(code: &str, detail: &str) -> Option<Redirect> {
        let target = || -> Option<(Slot, String)> {
            let (slot, node) = detail.split_once(' ')?;
            let slot = Slot::new(slot.parse().ok()?)?;
            Some((slot, node.trim().to_string()))
        };
        match code {
            "MOVED" => target().map(|(slot, node)| Redirect::Moved { slot, node }),
            "ASK" => target().map(|(_, node)| Redirect::Ask { node }),
            "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN" => Some(Redirect::Retry),
            "READONLY" => Some(Redirect::Demoted),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_leave_out_unusable_nodes_but_never_run_out_of_candidates() {
        let map = SlotMap::sentinel("p:1".into(), vec!["r:1".into(), "r:2".into()]);
        let all = |_: &str| true;
        let not_p = |n: &str| n != "p:1";
        let none = |_: &str| false;
        assert_eq!(map.read_candidates(0, ReadFrom::Spread, &all), ["p:1", "r:1", "r:2"]);
        assert_eq!(map.read_candidates(0, ReadFrom::Spread, &not_p), ["r:1", "r:2"]);
        assert_eq!(map.read_candidates(0, ReadFrom::Spread, &none), ["p:1"]);
        assert_eq!(map.read_candidates(0, ReadFrom::Replica, &all), ["r:1", "r:2"]);
        assert_eq!(map.read_candidates(0, ReadFrom::Replica, &none), ["p:1"]);
        assert_eq!(map.read_candidates(0, ReadFrom::Primary, &none), ["p:1"]);
    }

    #[test]
    fn parses_redirects() {
        assert_eq!(
            Redirect::parse("MOVED", "3999 127.0.0.1:6381"),
            Some(Redirect::Moved {
                slot: Slot::new(3999).unwrap(),
                node: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            Redirect::parse("ASK", "3999 127.0.0.1:6381"),
            Some(Redirect::Ask {
                node: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(Redirect::parse("TRYAGAIN", "Multiple keys"), Some(Redirect::Retry));
        assert_eq!(Redirect::parse("LOADING", "x"), Some(Redirect::Retry));
        assert_eq!(Redirect::parse("MOVED", "99999 h:1"), None);
        assert_eq!(Redirect::parse("MOVED", "garbage"), None);
        assert_eq!(Redirect::parse("WRONGTYPE", "x"), None);
    }

    #[test]
    fn builds_a_map_from_cluster_slots() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(8191),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7000), bulk("id0")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7003), bulk("id3")]),
            ]),
            Value::Array(vec![
                Value::Int(8192),
                Value::Int(16383),
                Value::Array(vec![bulk(""), Value::Int(7001), bulk("id1")]),
            ]),
        ]);
        let map = SlotMap::from_cluster_slots(&reply, "10.0.0.9:7001").unwrap();
        assert_eq!(map.nodes, vec!["127.0.0.1:7000", "10.0.0.9:7001"]);
        let ranges = parse_cluster_slots(&reply, "10.0.0.9:7001").unwrap();
        assert_eq!(ranges[0].replicas, vec!["127.0.0.1:7003"]);
        assert_eq!((ranges[1].slots.clone(), ranges[1].replicas.len()), (8192..=16383, 0));
        let key_low = (0u32..)
            .map(|i| i.to_string())
            .find(|k| Slot::of(k.as_bytes()).get() < 8192)
            .unwrap();
        assert_eq!(map.route(key_low.as_bytes()).unwrap().0, 0);
        let moved = map.with_moved(Slot::of(key_low.as_bytes()), "127.0.0.1:7005");
        assert_eq!(moved.route(key_low.as_bytes()).unwrap().0, 2);
        assert_eq!(moved.nodes[2], "127.0.0.1:7005");
    }

    #[test]
    fn reads_go_where_the_policy_says() {
        let map = SlotMap::sentinel("p:1".into(), vec!["r:1".into(), "r:2".into()]);
        let all = |_: &str| true;
        assert_eq!(map.read_candidates(0, ReadFrom::Primary, &all), ["p:1"]);
        assert_eq!(map.read_candidates(0, ReadFrom::Replica, &all), ["r:1", "r:2"]);
        assert_eq!(map.read_candidates(0, ReadFrom::Spread, &all), ["p:1", "r:1", "r:2"]);
        let not_r1 = |n: &str| n != "r:1";
        assert_eq!(map.read_candidates(0, ReadFrom::Replica, &not_r1), ["r:2"]);
        let none = |_: &str| false;
        assert_eq!(map.read_candidates(0, ReadFrom::Replica, &none), ["p:1"]);
        assert!(map.serves("r:1", b"k", false, ReadFrom::Spread));
        assert!(
            !map.serves("r:1", b"k", true, ReadFrom::Spread),
            "writes go to the primary only"
        );
        assert!(!map.serves("r:1", b"k", false, ReadFrom::Primary));
        assert!(map.serves("p:1", b"k", true, ReadFrom::Primary));
        assert!(map.follows_failovers() && !map.is_cluster() && map.is_replica("r:2"));
        assert!(!SlotMap::standalone("p:1".into()).follows_failovers());
    }

    #[test]
    fn zone_reads_stay_home_while_they_can() {
        let mut map = SlotMap::sentinel(
            "p:1".into(),
            vec!["a:1".into(), "b:1".into(), "a:2".into(), "n:1".into()],
        );
        map.home = Some("az-a".into());
        for (node, zone) in [("p:1", "az-a"), ("a:1", "az-a"), ("a:2", "az-a"), ("b:1", "az-b")] {
            map.zones.insert(node.into(), zone.into());
        }
        let (aff, with_primary) = (ReadFrom::AzAffinity, ReadFrom::AzAffinityReplicasAndPrimary);
        let all = |_: &str| true;
        assert_eq!(map.read_candidates(0, aff, &all), ["a:1", "a:2"]);
        assert_eq!(map.read_candidates(0, with_primary, &all), ["a:1", "a:2"]);
        // The zone's replicas unusable: the primary when it is at home (second policy), else any replica ("n:1"
        // reported no zone: another zone).
        let away = |n: &str| !n.starts_with("a:");
        assert_eq!(map.read_candidates(0, aff, &away), ["b:1", "n:1"]);
        assert_eq!(map.read_candidates(0, with_primary, &away), ["p:1"]);
        map.zones.insert("p:1".into(), "az-b".into());
        assert_eq!(map.read_candidates(0, with_primary, &away), ["b:1", "n:1"]);
        // No replica usable: the primary.
        let none = |_: &str| false;
        assert_eq!(map.read_candidates(0, aff, &none), ["p:1"]);
        assert_eq!(map.read_candidates(0, with_primary, &none), ["p:1"]);
        // No zone of the client's own: no node is at home.
        map.home = None;
        assert_eq!(map.read_candidates(0, aff, &all), ["a:1", "b:1", "a:2", "n:1"]);
        assert!(map.serves("b:1", b"k", false, aff) && !map.serves("b:1", b"k", true, aff));
    }

    #[test]
    fn uncovered_slots_are_an_error() {
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(100),
            Value::Array(vec![bulk("h"), Value::Int(1)]),
        ])]);
        let map = SlotMap::from_cluster_slots(&reply, "h:1").unwrap();
        let key = (0u32..)
            .map(|i| i.to_string())
            .find(|k| Slot::of(k.as_bytes()).get() > 100)
            .unwrap();
        assert!(matches!(map.route(key.as_bytes()), Err(Error::Topology(_))));
    }
}
