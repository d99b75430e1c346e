//! The shared slot map: its discovery (from the seeds, or from the Sentinels), its patching from MOVED replies, and
//! its refresh, asked for after MOVED, READONLY, connection failures and Sentinel announcements, repeated by itself
//! while a node is silent or down, and every second for a Sentinel deployment.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Mutex, RwLock};
use redis::Value;

use crate::config::{Mode, ReadFrom};
use crate::connection::{ConnectOptions, Connection};
use crate::error::{Error, Result};
use crate::health::Health;
use crate::race;
use crate::reader::{Expect, Reply};
use crate::resp::{Head, Outgoing};
use crate::sentinel::{self, Sentinels};
use crate::slot::Slot;
use crate::slot_map::{MapKind, SlotMap};
use crate::telemetry::Stat;
use crate::wake::Waker;

/// Refreshes are at least this far apart: a burst of MOVED replies causes one refresh, not hundreds. It is also
/// the pace of the refreshes while a node is silent or down.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// One refresh attempt on one node gives up after this (then the next candidate is asked).
const REFRESH_ATTEMPT: Duration = Duration::from_secs(1);
/// A Sentinel deployment is re-read this often by itself (a missed announcement, replicas coming and going), and a
/// Cluster whose replicas are read from twice as seldom (replicas that fell behind).
const PERIODIC_REFRESH: Duration = Duration::from_secs(1);
/// A replica is checked for reads (`INFO replication`) within this.
const REPLICA_CHECK: Duration = Duration::from_millis(500);

/// Where the slot map comes from.
pub(crate) enum Source {
    /// Seeds: a Cluster's nodes, or one standalone server.
    Seeds { seeds: Vec<String>, mode: Mode },
    /// The Sentinels of a service.
    Sentinel(Sentinels),
}

/// The shared slot map. Refreshes run on a thread of their own (`kvcache-redis-topology`), so that no worker ever
/// waits for one: workers patch single slots from MOVED replies at once and ask for a full refresh; while a node
/// is silent or down, the refresher re-reads the map every `MIN_REFRESH_INTERVAL` by itself, asking the other
/// nodes first.
pub(crate) struct Topology {
    map: RwLock<Arc<SlotMap>>,
    /// Bumped whenever `map` is replaced: workers compare it every turn.
    epoch: AtomicU64,
    source: Source,
    read_from: ReadFrom,
    opts: ConnectOptions,
    health: Arc<Health>,
    /// Wakes the refresher; holds at most one request, so a burst of them costs one refresh.
    wake: Sender<()>,
    /// When the last successful refresh started.
    refreshed: Mutex<Option<Instant>>,
    /// Successful refreshes so far.
    refreshes: Stat,
    /// Woken after every refresh (workers waiting to know whether a node still owns what it answered).
    listeners: Mutex<Vec<Waker>>,
}

impl Topology {
    /// Discovers the topology (from the first seed that answers, or from the Sentinels), and starts the refresher
    /// (and, for Sentinels, the watcher of their announcements) when the map can change.
    pub(crate) fn discover(
        source: Source,
        opts: ConnectOptions,
        health: Arc<Health>,
        read_from: ReadFrom,
    ) -> Result<Arc<Topology>> {
        let map = match &source {
            Source::Seeds { seeds, mode } => discover_seeds(seeds, *mode, &opts, read_from)?,
            Source::Sentinel(sentinels) => sentinels.discover(&opts, opts.timeout, None)?,
        };
        if map.kind == MapKind::Standalone && read_from != ReadFrom::Primary {
            return Err(Error::Config(format!(
                "read_from={read_from:?} needs replicas, and a standalone server has none known: use a Sentinel URL \
                 (redis+sentinel://) or a Cluster"
            )));
        }
        let (wake, woken) = crossbeam_channel::bounded(1);
        let topology = Arc::new(Topology {
            map: RwLock::new(Arc::new(map)),
            epoch: AtomicU64::new(0),
            source,
            read_from,
            opts,
            health,
            wake,
            refreshed: Mutex::new(None),
            refreshes: Stat::new("kvcache_slot_map_refreshes_total", &[]),
            listeners: Mutex::new(Vec::new()),
        });
        if topology.current().follows_failovers() {
            let weak = Arc::downgrade(&topology);
            std::thread::Builder::new()
                .name("kvcache-redis-topology".into())
                .spawn(move || refresher(weak, woken))
                .map_err(|e| Error::io("local topology thread", e))?;
        }
        if let Source::Sentinel(sentinels) = &topology.source {
            let (on_switch, alive) = (Arc::downgrade(&topology), Arc::downgrade(&topology));
            let sentinels = sentinels.clone();
            std::thread::Builder::new()
                .name("kvcache-redis-sentinel".into())
                .spawn(move || {
                    let switched = move || {
                        if let Some(t) = on_switch.upgrade() {
                            t.request_refresh();
                        }
                    };
                    sentinel::watch(sentinels, switched, move || alive.strong_count() > 0)
                })
                .map_err(|e| Error::io("local sentinel thread", e))?;
        }
        Ok(topology)
    }

    /// How often the refresher re-reads the map by itself when nothing is wrong.
    fn periodic(&self) -> Option<Duration> {
        match &self.source {
            Source::Sentinel(_) => Some(PERIODIC_REFRESH),
            Source::Seeds { .. } if self.read_from != ReadFrom::Primary => Some(PERIODIC_REFRESH * 2),
            Source::Seeds { .. } => None,
        }
    }

    /// The current snapshot.
    /// The Sentinels the map comes from, if it does.
    pub(crate) fn sentinels(&self) -> Option<&Sentinels> {
        match &self.source {
            Source::Sentinel(s) => Some(s),
            Source::Seeds { .. } => None,
        }
    }

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
        self.refreshes.get()
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
        let opts = ConnectOptions {
            timeout: self.opts.timeout.min(REFRESH_ATTEMPT),
            ..self.opts.clone()
        };
        let read = match &self.source {
            Source::Sentinel(sentinels) => sentinels
                .discover(&opts, REFRESH_ATTEMPT, self.current().nodes.first().map(String::as_str))
                .inspect_err(|e| log::warn!("re-reading the Sentinels: {e}"))
                .ok(),
            Source::Seeds { seeds, .. } => self.refresh_cluster(seeds, &opts),
        };
        let Some(map) = read else { return false };
        self.replace(map);
        *self.refreshed.lock() = Some(started);
        self.refreshes.add(1);
        for l in self.listeners.lock().iter() {
            l.wake();
        }
        true
    }

    fn refresh_cluster(&self, seeds: &[String], opts: &ConnectOptions) -> Option<SlotMap> {
        let nodes = candidates(&self.current(), seeds, &self.health.troubled());
        let ask = opts.clone();
        match race::first_answer(&nodes, race::STAGGER, attempts_deadline(&nodes, opts), move |node| {
            discover_from(node, Mode::Cluster, &ask)
        }) {
            Ok(mut map) => {
                if self.read_from != ReadFrom::Primary {
                    keep_readable_replicas(&mut map, opts);
                }
                Some(map)
            }
            Err(e) => {
                log::warn!("slot map refresh failed on every known node: {e}");
                None
            }
        }
    }
}

/// When asking `nodes` one after another (see `race`) must have ended: a connect and a command each, per node.
fn attempts_deadline(nodes: &[String], opts: &ConnectOptions) -> Instant {
    Instant::now() + opts.timeout * 2 + race::STAGGER * nodes.len() as u32
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
        let (watching, periodic) = match topology.upgrade() {
            Some(t) => (!t.health.troubled().is_empty(), t.periodic()),
            None => return,
        };
        let wait = if watching {
            MIN_REFRESH_INTERVAL
        } else {
            periodic.unwrap_or(Duration::from_secs(1))
        };
        match woken.recv_timeout(wait) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) if watching || periodic.is_some() => {}
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

/// The map from the first seed that answers (see `race`: a silent seed delays it by a stagger); with replica
/// reads, a Cluster's replicas are checked first.
fn discover_seeds(seeds: &[String], mode: Mode, opts: &ConnectOptions, read_from: ReadFrom) -> Result<SlotMap> {
    let ask = opts.clone();
    let mut map = race::first_answer(seeds, race::STAGGER, attempts_deadline(seeds, opts), move |seed| {
        discover_from(seed, mode, &ask).inspect_err(|e| log::warn!("seed {seed}: {e}"))
    })?;
    if map.is_cluster() && read_from != ReadFrom::Primary {
        keep_readable_replicas(&mut map, opts);
    }
    Ok(map)
}

/// Leaves out of a Cluster map the replicas that should not be read from: unreachable, or not linked to their
/// primary (`master_link_status` other than `up`: still syncing, or cut off).
fn keep_readable_replicas(map: &mut SlotMap, opts: &ConnectOptions) {
    let opts = ConnectOptions {
        timeout: opts.timeout.min(REPLICA_CHECK),
        db: 0,
        readonly: false,
        ..opts.clone()
    };
    // All at once: a frozen replica costs one check, not one each.
    let readable: Vec<Vec<bool>> = std::thread::scope(|s| {
        let checks: Vec<Vec<_>> = map
            .replicas
            .iter()
            .map(|rs| rs.iter().map(|r| s.spawn(|| replica_is_readable(r, &opts))).collect())
            .collect();
        checks
            .into_iter()
            .map(|hs| hs.into_iter().map(|h| h.join().unwrap_or(false)).collect())
            .collect()
    });
    for (replicas, readable) in map.replicas.iter_mut().zip(readable) {
        let mut keep = readable.into_iter();
        replicas.retain(|_| keep.next().unwrap_or(false));
    }
}

/// Whether replica `r` answers and is linked to its primary (`master_link_status:up`).
fn replica_is_readable(r: &str, opts: &ConnectOptions) -> bool {
    let linked = Connection::connect(r, opts)
        .and_then(|mut c| c.call(&[b"INFO", b"replication"], opts.timeout))
        .map(|v| match v {
            Value::BulkString(b) => String::from_utf8_lossy(&b).contains("master_link_status:up"),
            _ => false,
        });
    match linked {
        Ok(true) => true,
        Ok(false) => {
            log::info!("replica {r} is not linked to its primary: not read from");
            false
        }
        Err(e) => {
            log::info!("replica {r}: {e}: not read from");
            false
        }
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
                // A server without cluster support, or one that does not know the command (a proxy in front of
                // a standalone server, `CLUSTER` renamed away): standalone, unless a Cluster was asked for.
                let disabled = e.details().is_some_and(|d| {
                    d.contains("cluster support disabled")
                        || d.contains("unknown command")
                        || d.contains("unknown subcommand")
                });
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
        let primary = crate::config::ReadFrom::Primary;
        assert!(map.serves("h:1", key.as_bytes(), true, primary) && !map.serves("h:2", key.as_bytes(), true, primary));
    }
}
