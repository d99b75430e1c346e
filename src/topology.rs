//! The shared slot map: its discovery from the seeds, its patching from MOVED replies, and its refresh, asked for
//! after MOVED and connection failures, and repeated by itself while a node is silent or down.

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
use crate::slot::Slot;
use crate::slot_map::SlotMap;
use crate::wake::Waker;

/// Refreshes are at least this far apart: a burst of MOVED replies causes one refresh, not hundreds. It is also
/// the pace of the refreshes while a node is silent or down.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// One refresh attempt on one node gives up after this (then the next candidate is asked).
const REFRESH_ATTEMPT: Duration = Duration::from_secs(1);

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
