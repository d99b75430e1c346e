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
    /// The client's zone (zone-aware read policies only).
    home: Option<String>,
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
        client_az: Option<String>,
    ) -> Result<Arc<Topology>> {
        let home = client_az.filter(|_| read_from.by_zone());
        let mut map = match &source {
            Source::Seeds { seeds, mode } => discover_seeds(seeds, *mode, &opts)?,
            Source::Sentinel(sentinels) => sentinels.discover(&opts, opts.timeout, None)?,
        };
        check_nodes(&mut map, &opts, read_from, home.as_deref(), None);
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
            home,
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
        let Some(mut map) = read else { return false };
        check_nodes(
            &mut map,
            &opts,
            self.read_from,
            self.home.as_deref(),
            Some(&self.current()),
        );
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
            Ok(map) => Some(map),
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

/// The map from the first seed that answers (see `race`: a silent seed delays it by a stagger).
fn discover_seeds(seeds: &[String], mode: Mode, opts: &ConnectOptions) -> Result<SlotMap> {
    let ask = opts.clone();
    race::first_answer(seeds, race::STAGGER, attempts_deadline(seeds, opts), move |seed| {
        discover_from(seed, mode, &ask).inspect_err(|e| log::warn!("seed {seed}: {e}"))
    })
}

/// What is asked of the nodes of a map just read, all at once (a frozen node costs one check, not one each):
/// with replica reads in a Cluster, whether each replica is linked to its primary (`master_link_status` other than
/// `up`: still syncing, or cut off; an unreachable one is left out too); with a zone-aware policy, every node's
/// zone (a node that does not answer keeps the zone `previous` knew for it).
fn check_nodes(
    map: &mut SlotMap,
    opts: &ConnectOptions,
    read_from: ReadFrom,
    home: Option<&str>,
    previous: Option<&SlotMap>,
) {
    let links = map.is_cluster() && read_from != ReadFrom::Primary;
    let zones = home.is_some() && read_from.by_zone();
    if !links && !zones {
        return;
    }
    let opts = ConnectOptions {
        timeout: opts.timeout.min(REPLICA_CHECK),
        db: 0,
        readonly: false,
        ..opts.clone()
    };
    let nodes: Vec<(String, bool)> = map
        .nodes
        .iter()
        .map(|n| (n.clone(), false))
        .chain(map.replicas.iter().flatten().map(|r| (r.clone(), links)))
        .filter(|(_, link)| *link || zones)
        .collect();
    let checks: Vec<Check> = std::thread::scope(|s| {
        let running: Vec<_> = nodes
            .iter()
            .map(|(node, link)| s.spawn(|| check_node(node, &opts, *link, zones)))
            .collect();
        running
            .into_iter()
            .map(|h| {
                h.join().unwrap_or(Check {
                    linked: false,
                    zone: None,
                })
            })
            .collect()
    });
    let mut unlinked = Vec::new();
    for ((node, link), check) in nodes.into_iter().zip(checks) {
        if link && !check.linked {
            unlinked.push(node.clone());
        }
        let zone = check
            .zone
            .or_else(|| previous.and_then(|p| p.zones.get(&node).cloned()));
        if let Some(zone) = zone {
            map.zones.insert(node, zone);
        }
    }
    map.replicas
        .iter_mut()
        .for_each(|rs| rs.retain(|r| !unlinked.contains(r)));
    if zones {
        map.home = home.map(str::to_string);
    }
}

/// What one node said (see `check_nodes`).
struct Check {
    /// Whether it is linked to its primary (when asked).
    linked: bool,
    /// The zone it reported, if any (when asked).
    zone: Option<String>,
}

/// Asks `node` whether it is linked to its primary (`INFO replication`, if `link`) and its zone (`INFO server`,
/// if `zone`), in one round trip.
fn check_node(node: &str, opts: &ConnectOptions, link: bool, zone: bool) -> Check {
    let mut out = Outgoing::default();
    if link {
        out.push(&[b"INFO", b"replication"]);
    }
    if zone {
        out.push(&[b"INFO", b"server"]);
    }
    let asked = usize::from(link) + usize::from(zone);
    let replies = Connection::connect(node, opts)
        .and_then(|mut c| c.round_trip(out, &vec![Expect::Value; asked], Instant::now() + opts.timeout));
    let texts: Vec<String> = match replies {
        Ok(replies) => replies
            .into_iter()
            .map(|r| match r {
                Reply::Value(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                _ => String::new(),
            })
            .collect(),
        Err(e) => {
            log::info!("{node}: {e}: not read from");
            return Check {
                linked: false,
                zone: None,
            };
        }
    };
    let linked = link && texts[0].contains("master_link_status:up");
    if link && !linked {
        log::info!("replica {node} is not linked to its primary: not read from");
    }
    Check {
        linked,
        zone: zone.then(|| parse_zone(&texts[asked - 1])).flatten(),
    }
}

/// The zone in an `INFO server` text (`availability_zone:NAME`, Valkey 8+); none when absent or empty.
pub(crate) fn parse_zone(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("availability_zone:"))
        .map(str::trim)
        .filter(|z| !z.is_empty())
        .map(str::to_string)
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
        // Checked now, so that a database the server lacks fails at open rather than at the first call.
        let mut out = Outgoing::default();
        out.push(&[b"SELECT", opts.db.to_string().as_bytes()]);
        let deadline = Instant::now() + opts.timeout;
        if let Some(Reply::Scalar(Head::Error(e))) = conn.round_trip(out, &[Expect::Scalar], deadline)?.pop() {
            if map.is_cluster() {
                return Err(Error::Config(format!(
                    "database {} requested, but Cluster node {seed} refuses it ({}): numbered databases in a \
                     Cluster need Valkey 9 or later with cluster-databases above {}; database 0 works everywhere",
                    opts.db,
                    format_args!("{} {}", e.code, e.detail),
                    opts.db
                )));
            }
            return Err(e.into_error(seed));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_zone_from_info_server() {
        let info = "# Server\r\nvalkey_version:9.1.2\r\navailability_zone:az-1\r\nmode:cluster\r\n";
        assert_eq!(super::parse_zone(info).as_deref(), Some("az-1"));
        assert_eq!(super::parse_zone("# Server\r\navailability_zone:\r\n"), None);
        assert_eq!(super::parse_zone("# Server\r\nredis_version:7.0.15\r\n"), None);
    }

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
