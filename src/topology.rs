//! Which node owns which key: the slot map, its discovery from the seeds, its refresh after MOVED and while a node
//! is silent or down, and the parsing of redirect replies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Mutex, RwLock};
use redis::Value;

use crate::config::Mode;
use crate::connection::{ConnectOptions, Connection};
use crate::error::{Error, Result};
use crate::health::Health;
use crate::reader::{Expect, Reply};
use crate::resp::{Head, Outgoing};
use crate::slot::{SLOTS, Slot};
use crate::wake::Waker;

/// Marks a slot no primary serves.
const UNOWNED: u16 = u16::MAX;
/// Refreshes are at least this far apart: a burst of MOVED replies causes one refresh, not hundreds. It is also
/// the pace of the refreshes while a node is silent or down.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// One refresh attempt on one node gives up after this (then the next candidate is asked).
const REFRESH_ATTEMPT: Duration = Duration::from_secs(1);

/// An immutable snapshot of who serves what. Workers keep an `Arc` of it and look for a newer one every turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotMap {
    /// Primary addresses, `host:port`.
    pub(crate) nodes: Vec<String>,
    /// The replicas of each primary, by index in `nodes`.
    pub(crate) replicas: Vec<Vec<String>>,
    /// Node index per slot; empty in standalone mode, where node 0 serves everything.
    slots: Vec<u16>,
}

impl SlotMap {
    pub(crate) fn standalone(node: String) -> SlotMap {
        SlotMap {
            nodes: vec![node],
            replicas: vec![Vec::new()],
            slots: Vec::new(),
        }
    }

    /// Whether `node` serves `key` as primary in this map.
    pub(crate) fn owns(&self, node: &str, key: &[u8]) -> bool {
        self.route(key).is_ok_and(|(i, _)| self.nodes[i] == node)
    }

    pub(crate) fn is_cluster(&self) -> bool {
        !self.slots.is_empty()
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
            _ => None,
        }
    }
}

/// The shared slot map. Refreshes run on a thread of their own (`kvcache-redis-topology`), so that no worker ever
/// waits for one: workers patch single slots from MOVED replies at once and ask for a full refresh; while a node
/// is silent or down, the refresher re-reads the map every `MIN_REFRESH_INTERVAL` by itself, asking the other
/// nodes first.
pub(crate) struct Topology {
    map: RwLock<Arc<SlotMap>>,
    /// Bumped whenever `map` is replaced: workers compare it every turn.
    epoch: AtomicU64,
    seeds: Vec<String>,
    opts: ConnectOptions,
    health: Arc<Health>,
    /// Wakes the refresher; holds at most one request, so a burst of them costs one refresh.
    wake: Sender<()>,
    /// When the last successful refresh started.
    refreshed: Mutex<Option<Instant>>,
    /// Successful refreshes so far.
    refreshes: AtomicU64,
    /// Woken after every refresh (workers waiting to know whether a node still owns what it answered).
    listeners: Mutex<Vec<Waker>>,
}

impl Topology {
    /// Discovers the topology from the first seed that answers, and starts the refresher.
    pub(crate) fn discover(
        seeds: &[String],
        mode: Mode,
        opts: ConnectOptions,
        health: Arc<Health>,
    ) -> Result<Arc<Topology>> {
        let mut last_err = Error::Topology("no seed given".into());
        for seed in seeds {
            match discover_from(seed, mode, &opts) {
                Ok(map) => {
                    let (wake, woken) = crossbeam_channel::bounded(1);
                    let topology = Arc::new(Topology {
                        map: RwLock::new(Arc::new(map)),
                        epoch: AtomicU64::new(0),
                        seeds: seeds.to_vec(),
                        opts,
                        health,
                        wake,
                        refreshed: Mutex::new(None),
                        refreshes: AtomicU64::new(0),
                        listeners: Mutex::new(Vec::new()),
                    });
                    if topology.current().is_cluster() {
                        let weak = Arc::downgrade(&topology);
                        std::thread::Builder::new()
                            .name("kvcache-redis-topology".into())
                            .spawn(move || refresher(weak, woken))
                            .map_err(|e| Error::io("local topology thread", e))?;
                    }
                    return Ok(topology);
                }
                Err(e) => {
                    log::warn!("seed {seed}: {e}");
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }

    /// The current snapshot.
    pub(crate) fn current(&self) -> Arc<SlotMap> {
        // Read lock held only to clone the Arc.
        self.map.read().clone()
    }

    /// The current snapshot and its epoch.
    pub(crate) fn current_with_epoch(&self) -> (Arc<SlotMap>, u64) {
        let map = self.map.read();
        (map.clone(), self.epoch.load(Ordering::Acquire))
    }

    /// Changes with every new map.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// When the last successful refresh started.
    pub(crate) fn refreshed_at(&self) -> Option<Instant> {
        *self.refreshed.lock()
    }

    /// Successful slot-map refreshes so far.
    pub(crate) fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// Wakes `waker` after every refresh.
    pub(crate) fn listen(&self, waker: Waker) {
        self.listeners.lock().push(waker);
    }

    fn replace(&self, map: SlotMap) {
        let mut current = self.map.write();
        if **current != map {
            *current = Arc::new(map);
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Records a MOVED reply in the map at once; the full refresh it also asks for comes later.
    pub(crate) fn apply_moved(&self, slot: Slot, node: &str) {
        let mut map = self.map.write();
        if map.is_cluster() && map.route_slot(slot) != Some(node) {
            *map = Arc::new(map.with_moved(slot, node));
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Asks the refresher to re-read the slot map; returns at once.
    pub(crate) fn request_refresh(&self) {
        let _ = self.wake.try_send(());
    }

    /// Re-reads the slot map from the known nodes, healthy ones first (see `candidates`), each attempt bounded by
    /// `REFRESH_ATTEMPT`. Returns whether a map was read.
    fn refresh(&self) -> bool {
        let started = Instant::now();
        let troubled = self.health.troubled();
        let opts = ConnectOptions {
            timeout: self.opts.timeout.min(REFRESH_ATTEMPT),
            ..self.opts.clone()
        };
        for node in candidates(&self.current(), &self.seeds, &troubled) {
            match discover_from(&node, Mode::Cluster, &opts) {
                Ok(map) => {
                    self.replace(map);
                    *self.refreshed.lock() = Some(started);
                    self.refreshes.fetch_add(1, Ordering::Relaxed);
                    for l in self.listeners.lock().iter() {
                        l.wake();
                    }
                    return true;
                }
                Err(e) => log::debug!("slot map refresh from {node} failed: {e}"),
            }
        }
        log::warn!("slot map refresh failed on every known node");
        false
    }
}

impl SlotMap {
    /// The primary serving `slot`, if any (cluster maps only).
    fn route_slot(&self, slot: Slot) -> Option<&str> {
        match self.slots.get(slot.get() as usize) {
            Some(&n) if n != UNOWNED => Some(&self.nodes[n as usize]),
            _ => None,
        }
    }
}

/// Whom to ask for the slot map, in order: the replicas of troubled primaries (one of them is the likely new
/// owner, and knows it first), the healthy primaries, the other replicas, the seeds, and the troubled nodes last
/// (a silent node may keep the asker waiting, and claims its slots until it hears otherwise).
fn candidates(map: &SlotMap, seeds: &[String], troubled: &[String]) -> Vec<String> {
    let is_troubled = |n: &String| troubled.contains(n);
    let mut out: Vec<String> = Vec::new();
    let add = |n: &String, out: &mut Vec<String>| {
        if !out.contains(n) {
            out.push(n.clone());
        }
    };
    for (primary, replicas) in map.nodes.iter().zip(&map.replicas) {
        if is_troubled(primary) {
            replicas
                .iter()
                .filter(|r| !is_troubled(r))
                .for_each(|r| add(r, &mut out));
        }
    }
    map.nodes
        .iter()
        .filter(|n| !is_troubled(n))
        .for_each(|n| add(n, &mut out));
    map.replicas
        .iter()
        .flatten()
        .filter(|n| !is_troubled(n))
        .for_each(|n| add(n, &mut out));
    seeds.iter().filter(|n| !is_troubled(n)).for_each(|n| add(n, &mut out));
    troubled.iter().for_each(|n| add(n, &mut out));
    out
}

/// The refresher: one refresh per request, at most one per `MIN_REFRESH_INTERVAL`, and one per interval by itself
/// while a node is silent or down; exits with the topology.
fn refresher(topology: Weak<Topology>, woken: Receiver<()>) {
    let mut last = Instant::now();
    loop {
        let watching = match topology.upgrade() {
            Some(t) => !t.health.troubled().is_empty(),
            None => return,
        };
        let wait = if watching {
            MIN_REFRESH_INTERVAL
        } else {
            Duration::from_secs(1)
        };
        match woken.recv_timeout(wait) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) if watching => {}
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        }
        std::thread::sleep(MIN_REFRESH_INTERVAL.saturating_sub(last.elapsed()));
        let Some(topology) = topology.upgrade() else { return };
        // A request that arrived while waiting is served by this refresh.
        let _ = woken.try_recv();
        topology.refresh();
        last = Instant::now();
    }
}

fn discover_from(seed: &str, mode: Mode, opts: &ConnectOptions) -> Result<SlotMap> {
    // Without SELECT: whether a database may be selected depends on what this finds.
    let mut conn = Connection::connect(seed, &ConnectOptions { db: 0, ..opts.clone() })?;
    let map = if mode == Mode::Standalone {
        SlotMap::standalone(seed.to_string())
    } else {
        match conn.call(&[b"CLUSTER", b"SLOTS"], opts.timeout)? {
            Value::ServerError(e) => {
                let disabled = e.details().is_some_and(|d| d.contains("cluster support disabled"));
                if !disabled {
                    // NOAUTH, NOPERM (a user without `cluster|slots`: grant it or set mode=standalone), ...
                    return Err(Error::Server {
                        node: seed.to_string(),
                        code: e.code().to_string(),
                        detail: e.details().unwrap_or("").to_string(),
                    });
                }
                if mode == Mode::Cluster {
                    return Err(Error::Topology(format!(
                        "{seed} is not a cluster node, but mode=cluster was asked"
                    )));
                }
                SlotMap::standalone(seed.to_string())
            }
            reply => SlotMap::from_cluster_slots(&reply, seed)?,
        }
    };
    if opts.db != 0 {
        if map.is_cluster() {
            return Err(Error::Config(format!(
                "database {} requested, but {seed} is a Cluster node: only database 0 is allowed in cluster mode",
                opts.db
            )));
        }
        // Check it now, so that a database the server lacks fails at open rather than at the first call.
        let mut out = Outgoing::default();
        out.push(&[b"SELECT", opts.db.to_string().as_bytes()]);
        let deadline = Instant::now() + opts.timeout;
        if let Some(Reply::Scalar(Head::Error(e))) = conn.round_trip(out, &[Expect::Scalar], deadline)?.pop() {
            return Err(e.into_error(seed));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
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
    fn refreshes_ask_healthy_nodes_first_and_the_likely_new_owner_before_them() {
        let node = |p: i64| Value::Array(vec![bulk("h"), Value::Int(p)]);
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(8191), node(1), node(3)]),
            Value::Array(vec![Value::Int(8192), Value::Int(16383), node(2), node(4)]),
        ]);
        let map = SlotMap::from_cluster_slots(&reply, "h:1").unwrap();
        assert_eq!(map.replicas, vec![vec!["h:3".to_string()], vec!["h:4".to_string()]]);
        let seeds = ["h:1".to_string(), "h:9".to_string()];
        assert_eq!(candidates(&map, &seeds, &[]), ["h:1", "h:2", "h:3", "h:4", "h:9"]);
        let troubled = ["h:1".to_string()];
        assert_eq!(candidates(&map, &seeds, &troubled), ["h:3", "h:2", "h:4", "h:9", "h:1"]);
        let troubled = ["h:1".to_string(), "h:3".to_string()];
        assert_eq!(candidates(&map, &seeds, &troubled), ["h:2", "h:4", "h:9", "h:1", "h:3"]);
        let key = (0u32..)
            .map(|i| i.to_string())
            .find(|k| Slot::of(k.as_bytes()).get() < 8192)
            .unwrap();
        assert!(map.owns("h:1", key.as_bytes()) && !map.owns("h:2", key.as_bytes()));
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
