//! A seeded nemesis: a schedule of faults drawn from a seed (the same seed, the same schedule), carried out on a real
//! Cluster or Sentinel deployment while a checked load runs, one fault at a time or two overlapping.
//!
//! Faults: kill -9 and restart of a primary or a replica; freeze (SIGSTOP) and thaw; a network-namespace
//! partition of node 0 and heal; a manual and a forced failover; a live reshard (`redis-cli --cluster reshard`)
//! and, on Valkey 9, an atomic slot migration (`CLUSTER MIGRATESLOTS`); `DEBUG SLEEP`; `CLIENT KILL` of the
//! client's connections (by the name it gives them); `CLIENT PAUSE WRITE`; `maxmemory` squeezed with `noeviction`
//! and restored; the client's ACL user disabled (its connections killed) and enabled again. After each step the
//! deployment is brought back to health (every node up, every replica linked, one primary per shard) before the
//! next, and what a fault left undone (an ACL user to enable on a node that was frozen) is repaired then.

#![allow(dead_code, clippy::needless_range_loop)]

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::netns::Netns;
use super::sentinel::{SentinelOptions, SentinelSet, primaries_named};
use super::server::{Cluster, Kind, Options, Server};
use super::takeovers::Takeovers;

/// The ACL user the load's clients authenticate as, and its password.
pub const USER: &str = "chaos";
pub const PASSWORD: &str = "chaos-pw-7f3a";
/// The name the load's clients give their connections (`CLIENT KILL` finds them by it).
pub const CLIENT_NAME: &str = "chaos-load";

/// A small deterministic generator (splitmix64): the schedule depends on the seed alone.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration between `lo` and `hi` milliseconds.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    Cluster,
    Sentinel,
}

/// The kinds of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    KillPrimary,
    KillReplica,
    FreezePrimary,
    FreezeReplica,
    Partition,
    ManualFailover,
    ForcedFailover,
    Reshard,
    AtomicMigration,
    DebugSleep,
    ClientKill,
    PauseWrites,
    OomSqueeze,
    AclOff,
}

impl FaultKind {
    const ALL: [FaultKind; 14] = [
        FaultKind::KillPrimary,
        FaultKind::KillReplica,
        FaultKind::FreezePrimary,
        FaultKind::FreezeReplica,
        FaultKind::Partition,
        FaultKind::ManualFailover,
        FaultKind::ForcedFailover,
        FaultKind::Reshard,
        FaultKind::AtomicMigration,
        FaultKind::DebugSleep,
        FaultKind::ClientKill,
        FaultKind::PauseWrites,
        FaultKind::OomSqueeze,
        FaultKind::AclOff,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillPrimary => "kill -9 primary",
            FaultKind::KillReplica => "kill -9 replica",
            FaultKind::FreezePrimary => "freeze primary",
            FaultKind::FreezeReplica => "freeze replica",
            FaultKind::Partition => "partition",
            FaultKind::ManualFailover => "manual failover",
            FaultKind::ForcedFailover => "forced failover",
            FaultKind::Reshard => "reshard",
            FaultKind::AtomicMigration => "atomic slot migration",
            FaultKind::DebugSleep => "DEBUG SLEEP",
            FaultKind::ClientKill => "CLIENT KILL",
            FaultKind::PauseWrites => "CLIENT PAUSE WRITE",
            FaultKind::OomSqueeze => "maxmemory squeeze",
            FaultKind::AclOff => "ACL user off",
        }
    }

    fn available(self, topology: Topology, kind: Kind, partitionable: bool) -> bool {
        match self {
            FaultKind::Partition => partitionable,
            FaultKind::Reshard | FaultKind::ForcedFailover => topology == Topology::Cluster,
            FaultKind::AtomicMigration => topology == Topology::Cluster && kind == Kind::Valkey,
            _ => true,
        }
    }

    /// Faults that may start while another runs: none that takes a second primary away (two primaries down at
    /// once leave a 3-primary Cluster without the majority that elects a replacement) or moves slots.
    fn may_overlap(self) -> bool {
        matches!(
            self,
            FaultKind::KillReplica
                | FaultKind::FreezeReplica
                | FaultKind::DebugSleep
                | FaultKind::ClientKill
                | FaultKind::PauseWrites
                | FaultKind::OomSqueeze
                | FaultKind::AclOff
        )
    }

    /// How long the fault is held (for a reshard: how many slots move, in the milliseconds' place).
    fn hold(self, rng: &mut Rng) -> Duration {
        match self {
            FaultKind::KillPrimary => rng.ms(300, 3000),
            FaultKind::KillReplica => rng.ms(500, 5000),
            FaultKind::FreezePrimary | FaultKind::FreezeReplica => rng.ms(300, 5000),
            FaultKind::Partition => rng.ms(800, 6000),
            FaultKind::ManualFailover | FaultKind::ForcedFailover | FaultKind::ClientKill => Duration::ZERO,
            FaultKind::Reshard | FaultKind::AtomicMigration => rng.ms(50, 400),
            FaultKind::DebugSleep => rng.ms(200, 3000),
            FaultKind::PauseWrites => rng.ms(200, 3000),
            FaultKind::OomSqueeze => rng.ms(500, 4000),
            FaultKind::AclOff => rng.ms(300, 3000),
        }
    }
}

/// One step of a schedule: a fault, maybe a second one starting `delay` into it.
#[derive(Clone, Debug)]
pub struct Step {
    pub kind: FaultKind,
    /// Chooses the target among those available when the step runs.
    pub pick: u64,
    pub hold: Duration,
    /// The pause after the deployment is healthy again.
    pub gap: Duration,
    pub overlap: Option<Overlap>,
}

#[derive(Clone, Debug)]
pub struct Overlap {
    pub kind: FaultKind,
    pub pick: u64,
    pub delay: Duration,
    pub hold: Duration,
}

/// The first `n` steps of the schedule of `seed`.
pub fn schedule(seed: u64, topology: Topology, kind: Kind, partitionable: bool, n: usize) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let kinds: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|k| k.available(topology, kind, partitionable))
        .collect();
    let overlapping: Vec<FaultKind> = kinds.iter().copied().filter(|k| k.may_overlap()).collect();
    (0..n)
        .map(|_| {
            let kind = kinds[(rng.next() % kinds.len() as u64) as usize];
            let pick = rng.next();
            let hold = kind.hold(&mut rng);
            let gap = rng.ms(500, 3000);
            let overlap = rng.next().is_multiple_of(3).then(|| {
                let kind = overlapping[(rng.next() % overlapping.len() as u64) as usize];
                Overlap {
                    kind,
                    pick: rng.next(),
                    delay: rng.ms(0, 1500),
                    hold: kind.hold(&mut rng),
                }
            });
            Step {
                kind,
                pick,
                hold,
                gap,
                overlap,
            }
        })
        .collect()
}

/// What a fault did, on the load's clock.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub target: String,
    pub start: Duration,
    /// When it was undone (restart, thaw, heal, ...; the command's return for one-shot faults).
    pub end: Duration,
    /// When another node took over the target's slots (or the Sentinels named another primary), if one did.
    pub promoted: Option<Duration>,
    /// The fault hit a node that was a primary when it began.
    pub hit_primary: bool,
    /// Started while another fault ran.
    pub overlapped: bool,
    /// Skipped (no target), or how a reshard or failover command ended when it did not succeed.
    pub note: String,
}

/// What a node is, as it says itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica { of: usize },
}

enum Repair {
    AclOn(usize),
    MaxmemoryOff(usize),
}

/// A deployment under a nemesis.
pub struct Deployment {
    pub kind: Kind,
    pub topology: Topology,
    cluster: Option<Cluster>,
    set: Option<SentinelSet>,
    /// Node 0's namespace, for partitions.
    ns: Option<Netns>,
}

/// The server arguments every data node gets: the load's ACL user, and DEBUG from any address (node 0 may be
/// reached over a namespace's link, not loopback).
fn node_args() -> Vec<String> {
    let mut args: Vec<String> = vec!["--user".into(), USER.into(), "on".into(), format!(">{PASSWORD}")];
    args.extend(["~*", "&*", "+@all", "--enable-debug-command", "yes"].map(String::from));
    args
}

impl Deployment {
    /// A 3+3 Cluster (or a primary, two replicas and three Sentinels), node 0 in a network namespace where
    /// namespaces are available.
    pub fn start(kind: Kind, topology: Topology) -> Deployment {
        let ns = Netns::create("chaos partitions");
        match topology {
            Topology::Cluster => {
                let mut extra = node_args();
                extra.extend(["--cluster-allow-replica-migration", "no"].map(String::from));
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                let cluster = Cluster::start_placed(kind, 3, 1, &extra, |i| match &ns {
                    Some(ns) => Options {
                        hosts: if i == 0 {
                            vec![ns.ns_ip.clone()]
                        } else {
                            vec![ns.host_ip.clone(), "127.0.0.1".into()]
                        },
                        netns: (i == 0).then(|| ns.name.clone()),
                        ..Options::default()
                    },
                    None => Options::default(),
                });
                cluster.wait_synced();
                Deployment {
                    kind,
                    topology,
                    cluster: Some(cluster),
                    set: None,
                    ns,
                }
            }
            Topology::Sentinel => {
                let set = SentinelSet::start(
                    kind,
                    SentinelOptions {
                        replicas: 2,
                        sentinels: 3,
                        extra: node_args(),
                        partitionable: ns.as_ref().map(|ns| super::sentinel::Placement {
                            netns: ns.name.clone(),
                            ns_ip: ns.ns_ip.clone(),
                            host_ip: ns.host_ip.clone(),
                        }),
                        ..SentinelOptions::default()
                    },
                );
                Deployment {
                    kind,
                    topology,
                    cluster: None,
                    set: Some(set),
                    ns,
                }
            }
        }
    }

    pub fn partitionable(&self) -> bool {
        self.ns.is_some()
    }

    /// Starts watching every takeover (see `Takeovers`), on the clock that started at `started`.
    pub fn watch_takeovers(&self, started: Instant) -> Takeovers {
        match (&self.cluster, &self.set) {
            (Some(c), _) => Takeovers::cluster(c.nodes.iter().map(|n| (n.addr(), n.url())).collect(), started),
            (_, Some(s)) => Takeovers::sentinels(s.sentinel_urls(), s.service.clone(), started),
            _ => unreachable!(),
        }
    }

    /// Copies every server's log (data nodes, then Sentinels) into `dir`, for a post-mortem of a failed run.
    pub fn save_logs(&self, dir: &std::path::Path) {
        let _ = std::fs::create_dir_all(dir);
        let sentinels: &[Server] = self.set.as_ref().map_or(&[], |s| &s.sentinels);
        for (name, server) in self
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("node{i}"), n))
            .chain(sentinels.iter().enumerate().map(|(i, s)| (format!("sentinel{i}"), s)))
        {
            let _ = std::fs::write(dir.join(format!("{name}-{}.log", server.port)), server.log());
        }
    }

    pub fn nodes(&self) -> &[Server] {
        match (&self.cluster, &self.set) {
            (Some(c), _) => &c.nodes,
            (_, Some(s)) => &s.nodes,
            _ => unreachable!(),
        }
    }

    fn node_mut(&mut self, i: usize) -> &mut Server {
        match (&mut self.cluster, &mut self.set) {
            (Some(c), _) => &mut c.nodes[i],
            (_, Some(s)) => &mut s.nodes[i],
            _ => unreachable!(),
        }
    }

    /// The client's URL, with the load's user and connection name; `query` adds options.
    pub fn url(&self, query: &str) -> String {
        let cred = format!("{USER}:{PASSWORD}@");
        let q = format!("?client_name={CLIENT_NAME}{query}");
        match (&self.cluster, &self.set) {
            // Node 1 is reachable from this side whether or not node 0 lives in a namespace.
            (Some(c), _) => format!("redis://{cred}{}{q}", c.nodes[1].addr()),
            (_, Some(s)) => {
                let hosts: Vec<String> = s.sentinels.iter().map(Server::addr).collect();
                format!("redis+sentinel://{cred}{}/{}{q}", hosts.join(","), s.service)
            }
            _ => unreachable!(),
        }
    }

    /// Keys that cover every shard: one per primary's first slot (Cluster), or one key (Sentinel).
    pub fn probe_keys(&self) -> Vec<String> {
        match &self.cluster {
            Some(c) => {
                let owners = c.slot_owners();
                let mut ports: Vec<u16> = owners.clone();
                ports.sort_unstable();
                ports.dedup();
                ports
                    .iter()
                    .map(|p| {
                        (0..)
                            .map(|i| format!("chaos-probe:{i}"))
                            .find(|k| owners[kvcache_redis::Slot::of(k.as_bytes()).get() as usize] == *p)
                            .expect("a key in every shard")
                    })
                    .collect()
            }
            None => vec!["chaos-probe".into()],
        }
    }

    /// An admin connection to node `i`, or `None` when it does not answer in time.
    fn admin(&self, i: usize) -> Option<redis::Connection> {
        let node = &self.nodes()[i];
        if !node.is_running() {
            return None;
        }
        let client = redis::Client::open(node.url()).ok()?;
        let conn = client.get_connection_with_timeout(Duration::from_millis(700)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        conn.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
        Some(conn)
    }

    /// What each node reachable and not in `skip` says it is.
    fn roles(&self, skip: &BTreeSet<usize>) -> Vec<Option<Role>> {
        (0..self.nodes().len())
            .map(|i| {
                if skip.contains(&i) {
                    return None;
                }
                let mut admin = self.admin(i)?;
                let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut admin).ok()?;
                match &role[..] {
                    [redis::Value::BulkString(r), ..] if r == b"master" => Some(Role::Primary),
                    [redis::Value::BulkString(r), _, redis::Value::Int(port), ..] if r == b"slave" => self
                        .nodes()
                        .iter()
                        .position(|n| n.port as i64 == *port)
                        .map(|of| Role::Replica { of }),
                    _ => None,
                }
            })
            .collect()
    }

    /// The port owning `slot`, as node `i` sees it.
    fn owner_seen_by(&self, i: usize, slot: u16) -> Option<u16> {
        let mut admin = self.admin(i)?;
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut admin).ok()?;
        slots.iter().find_map(|r| match r {
            redis::Value::Array(f) => match (&f[0], &f[1], &f[2]) {
                (redis::Value::Int(a), redis::Value::Int(b), redis::Value::Array(p))
                    if (*a..=*b).contains(&(slot as i64)) =>
                {
                    match p[1] {
                        redis::Value::Int(port) => Some(port as u16),
                        _ => None,
                    }
                }
                _ => None,
            },
            _ => None,
        })
    }

    /// The slot ranges node `i` owns as primary, as node `seen_by` sees it.
    fn ranges_of(&self, seen_by: usize, i: usize) -> Vec<(u16, u16)> {
        let Some(mut admin) = self.admin(seen_by) else {
            return Vec::new();
        };
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut admin).unwrap_or_default();
        let port = self.nodes()[i].port as i64;
        slots
            .iter()
            .filter_map(|r| match r {
                redis::Value::Array(f) => match (&f[0], &f[1], &f[2]) {
                    (redis::Value::Int(a), redis::Value::Int(b), redis::Value::Array(p))
                        if p[1] == redis::Value::Int(port) =>
                    {
                        Some((*a as u16, *b as u16))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn node_id(&self, i: usize) -> Option<String> {
        redis::cmd("CLUSTER").arg("MYID").query(&mut self.admin(i)?).ok()
    }

    /// What the running Sentinels name as the primary (the first that answers).
    fn sentinel_primary(&self) -> Option<String> {
        let set = self.set.as_ref()?;
        primaries_named(&set.sentinel_urls(), &set.service)
            .into_iter()
            .flatten()
            .next()
    }

    /// Why the deployment is not healthy yet, or `None` when it is: every node up and answering, every replica
    /// linked to a primary, one primary per shard (Cluster: three primaries, each with its replica, every node
    /// `cluster_state:ok`; Sentinel: one primary, which every Sentinel names).
    fn unhealthy(&self) -> Option<String> {
        let roles = self.roles(&BTreeSet::new());
        if let Some(i) = roles.iter().position(Option::is_none) {
            return Some(format!("node {i} does not answer"));
        }
        for i in 0..roles.len() {
            if let Some(Role::Replica { .. }) = roles[i] {
                let Some(mut admin) = self.admin(i) else {
                    return Some(format!("node {i} does not answer"));
                };
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut admin)
                    .unwrap_or_default();
                if !info.contains("master_link_status:up") {
                    return Some(format!("replica {i} not linked"));
                }
            }
        }
        let primaries: Vec<usize> = (0..roles.len()).filter(|&i| roles[i] == Some(Role::Primary)).collect();
        match self.topology {
            Topology::Cluster => {
                if primaries.len() != 3 {
                    return Some(format!("{} primaries", primaries.len()));
                }
                for &p in &primaries {
                    if !roles.contains(&Some(Role::Replica { of: p })) {
                        return Some(format!("primary {p} has no replica"));
                    }
                }
                for i in 0..roles.len() {
                    let Some(mut admin) = self.admin(i) else {
                        return Some(format!("node {i} does not answer"));
                    };
                    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut admin).unwrap_or_default();
                    if !info.contains("cluster_state:ok") {
                        return Some(format!("node {i} is not cluster_state:ok"));
                    }
                }
                None
            }
            Topology::Sentinel => {
                let [p] = primaries[..] else {
                    return Some(format!("{} primaries", primaries.len()));
                };
                let set = self.set.as_ref().expect("a Sentinel set");
                let named = primaries_named(&set.sentinel_urls(), &set.service);
                let want = set.known_addr(p);
                if named.iter().any(|n| n.as_deref() != Some(want.as_str())) {
                    return Some(format!("Sentinels name {named:?}, the primary is {want}"));
                }
                None
            }
        }
    }
}

/// The nemesis: the deployment, which nodes are under a fault, and what is left to repair.
pub struct Nemesis {
    pub dep: Mutex<Deployment>,
    busy: Mutex<BTreeSet<usize>>,
    repairs: Mutex<Vec<Repair>>,
    started: Instant,
}

impl Nemesis {
    pub fn new(dep: Deployment, started: Instant) -> Arc<Nemesis> {
        Arc::new(Nemesis {
            dep: Mutex::new(dep),
            busy: Mutex::new(BTreeSet::new()),
            repairs: Mutex::new(Vec::new()),
            started,
        })
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Runs `steps` until `until`, printing each fault as it ends; every fault's record.
    pub fn run(self: &Arc<Self>, steps: &[Step], until: Instant) -> Vec<FaultRecord> {
        let mut records = Vec::new();
        for (n, step) in steps.iter().enumerate() {
            if Instant::now() >= until {
                break;
            }
            let second = step.overlap.clone().map(|o| {
                let me = self.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(o.delay);
                    let mut r = me.execute(o.kind, o.pick, o.hold);
                    r.overlapped = true;
                    r
                })
            });
            let first = self.execute(step.kind, step.pick, step.hold);
            let mut done = vec![first];
            if let Some(s) = second {
                done.push(s.join().expect("overlapping fault panicked"));
            }
            for r in &done {
                println!("  [{:7.1} s] step {n}: {}", r.start.as_secs_f64(), describe(r));
            }
            records.extend(done);
            let settle = self.settle(Duration::from_secs(45));
            match settle {
                Ok(d) if d > Duration::from_secs(5) => println!("    healthy again after {:.1} s", d.as_secs_f64()),
                Ok(_) => {}
                Err(why) => println!("    NOT healthy after 45 s: {why}"),
            }
            std::thread::sleep(step.gap);
        }
        records
    }

    /// Repairs what faults left undone, then waits until the deployment is healthy (at most `limit`).
    pub fn settle(&self, limit: Duration) -> Result<Duration, String> {
        let t0 = Instant::now();
        loop {
            self.repair();
            let why = self.dep.lock().unhealthy();
            match why {
                None => return Ok(t0.elapsed()),
                Some(why) if t0.elapsed() > limit => return Err(why),
                Some(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn repair(&self) {
        let dep = self.dep.lock();
        self.repairs.lock().retain(|r| {
            let (i, cmd) = match r {
                Repair::AclOn(i) => (*i, redis::cmd("ACL").arg("SETUSER").arg(USER).arg("on").clone()),
                Repair::MaxmemoryOff(i) => (*i, redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0).clone()),
            };
            dep.admin(i).is_none_or(|mut a| cmd.exec(&mut a).is_err())
        });
    }

    /// Takes one node among `candidates` (not under another fault) by `pick`, marking it busy.
    fn take(&self, candidates: Vec<usize>, pick: u64) -> Option<usize> {
        let mut busy = self.busy.lock();
        let free: Vec<usize> = candidates.into_iter().filter(|i| !busy.contains(i)).collect();
        let i = *free.get((pick % free.len().max(1) as u64) as usize)?;
        busy.insert(i);
        Some(i)
    }

    fn release(&self, i: usize) {
        self.busy.lock().remove(&i);
    }

    /// Primaries (not under a fault) whose replicas are all up: taking one away leaves a replica to promote.
    fn primaries_with_replicas(&self) -> Vec<usize> {
        let busy = self.busy.lock().clone();
        let roles = self.dep.lock().roles(&busy);
        (0..roles.len())
            .filter(|&p| {
                roles[p] == Some(Role::Primary)
                    && roles.contains(&Some(Role::Replica { of: p }))
                    && roles
                        .iter()
                        .enumerate()
                        .all(|(r, role)| *role != Some(Role::Replica { of: p }) || !busy.contains(&r))
            })
            .collect()
    }

    fn with_role(&self, want: impl Fn(Role) -> bool) -> Vec<usize> {
        let busy = self.busy.lock().clone();
        let roles = self.dep.lock().roles(&busy);
        (0..roles.len()).filter(|&i| roles[i].is_some_and(&want)).collect()
    }

    /// Whether another node has taken over from node `victim` (a primary when the fault began): its first slot
    /// has another owner, or the Sentinels name another primary.
    fn promoted_from(&self, victim: usize, slot: Option<u16>) -> bool {
        let dep = self.dep.lock();
        let port = dep.nodes()[victim].port;
        match (dep.topology, slot) {
            (Topology::Cluster, Some(slot)) => {
                let busy = self.busy.lock().clone();
                (0..dep.nodes().len())
                    .filter(|i| *i != victim && !busy.contains(i))
                    .filter_map(|i| dep.owner_seen_by(i, slot))
                    .any(|owner| owner != port)
            }
            (Topology::Sentinel, _) => {
                let known = dep.set.as_ref().map(|s| s.known_addr(victim));
                dep.sentinel_primary().is_some_and(|p| Some(p) != known)
            }
            _ => false,
        }
    }

    fn first_slot(&self, i: usize) -> Option<u16> {
        let dep = self.dep.lock();
        let seen_by = (0..dep.nodes().len()).find(|&j| j != i && dep.admin(j).is_some())?;
        dep.ranges_of(seen_by, i).first().map(|r| r.0)
    }

    /// Sleeps `hold`, noting when (if) node `victim` was replaced meanwhile.
    fn hold_watching(&self, hold: Duration, victim: Option<(usize, Option<u16>)>, promoted: &mut Option<Duration>) {
        let until = Instant::now() + hold;
        while Instant::now() < until {
            if let Some((v, slot)) = victim
                && promoted.is_none()
                && self.promoted_from(v, slot)
            {
                *promoted = Some(self.now());
            }
            std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
        }
    }

    /// After a fault that silenced primary `victim` ended without a takeover seen, watches a while longer: a
    /// takeover decided during the silence may land after it (Sentinels finishing a failover once the old primary
    /// is back). Cluster nodes learn of one within a couple of gossip rounds; Sentinels take longer.
    fn watch_after(&self, victim: usize, slot: Option<u16>, rec: &mut FaultRecord) {
        if rec.promoted.is_some() {
            return;
        }
        let limit = match self.dep.lock().topology {
            Topology::Cluster => Duration::from_secs(3),
            Topology::Sentinel => Duration::from_secs(8),
        };
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.promoted_from(victim, slot) {
                rec.promoted = Some(self.now());
                rec.note = "replaced after the fault ended".into();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Carries out one fault.
    pub fn execute(&self, kind: FaultKind, pick: u64, hold: Duration) -> FaultRecord {
        let mut rec = FaultRecord {
            kind,
            target: String::new(),
            start: self.now(),
            end: self.now(),
            promoted: None,
            hit_primary: false,
            overlapped: false,
            note: String::new(),
        };
        let node_name = |i: usize| {
            let dep = self.dep.lock();
            format!("node {i} ({})", dep.nodes()[i].addr())
        };
        match kind {
            FaultKind::KillPrimary | FaultKind::FreezePrimary => {
                let Some(v) = self.take(self.primaries_with_replicas(), pick) else {
                    rec.note = "skipped: no primary with a replica up".into();
                    return rec;
                };
                rec.target = node_name(v);
                rec.hit_primary = true;
                let slot = self.first_slot(v);
                rec.start = self.now();
                if kind == FaultKind::KillPrimary {
                    self.dep.lock().node_mut(v).kill();
                    // Restarted only once replaced (15 s at most): without persistence, a primary restarted before
                    // its replica took over would come back empty and keep its slots.
                    let until = Instant::now() + Duration::from_secs(15);
                    while rec.promoted.is_none() && Instant::now() < until {
                        if self.promoted_from(v, slot) {
                            rec.promoted = Some(self.now());
                        } else {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    if rec.promoted.is_none() {
                        rec.note = "not replaced within 15 s; restarted empty".into();
                    }
                    std::thread::sleep(hold);
                    self.dep.lock().node_mut(v).restart();
                } else {
                    self.dep.lock().nodes()[v].freeze();
                    self.hold_watching(hold, Some((v, slot)), &mut rec.promoted);
                    self.dep.lock().nodes()[v].thaw();
                }
                rec.end = self.now();
                self.watch_after(v, slot, &mut rec);
                self.release(v);
            }
            FaultKind::KillReplica | FaultKind::FreezeReplica => {
                let Some(v) = self.take(self.with_role(|r| matches!(r, Role::Replica { .. })), pick) else {
                    rec.note = "skipped: no replica free".into();
                    return rec;
                };
                rec.target = node_name(v);
                rec.start = self.now();
                if kind == FaultKind::KillReplica {
                    self.dep.lock().node_mut(v).kill();
                    std::thread::sleep(hold);
                    self.dep.lock().node_mut(v).restart();
                } else {
                    self.dep.lock().nodes()[v].freeze();
                    std::thread::sleep(hold);
                    self.dep.lock().nodes()[v].thaw();
                }
                rec.end = self.now();
                self.release(v);
            }
            FaultKind::Partition => {
                let Some(v) = self.take(vec![0], 0) else {
                    rec.note = "skipped: node 0 under another fault".into();
                    return rec;
                };
                let role = self.dep.lock().roles(&BTreeSet::new())[0];
                rec.hit_primary = role == Some(Role::Primary);
                rec.target = format!(
                    "{} as {}",
                    node_name(v),
                    if rec.hit_primary { "primary" } else { "replica" }
                );
                let slot = if rec.hit_primary { self.first_slot(v) } else { None };
                rec.start = self.now();
                self.dep.lock().ns.as_ref().expect("a namespace").cut();
                self.hold_watching(hold, rec.hit_primary.then_some((v, slot)), &mut rec.promoted);
                self.dep.lock().ns.as_ref().expect("a namespace").heal();
                rec.end = self.now();
                if rec.hit_primary {
                    self.watch_after(v, slot, &mut rec);
                }
                self.release(v);
            }
            FaultKind::ManualFailover | FaultKind::ForcedFailover => self.failover(kind, pick, &mut rec),
            FaultKind::Reshard | FaultKind::AtomicMigration => self.move_slots(kind, pick, hold, &mut rec),
            FaultKind::DebugSleep => {
                let all: Vec<usize> = (0..self.dep.lock().nodes().len()).collect();
                let Some(v) = self.take(all, pick) else {
                    rec.note = "skipped: every node busy".into();
                    return rec;
                };
                rec.target = node_name(v);
                rec.hit_primary = self.dep.lock().roles(&BTreeSet::new())[v] == Some(Role::Primary);
                let slot = if rec.hit_primary { self.first_slot(v) } else { None };
                let admin = self.dep.lock().admin(v);
                rec.start = self.now();
                match admin {
                    Some(mut a) => {
                        let _ = a.set_read_timeout(Some(hold + Duration::from_secs(5)));
                        if let Err(e) = redis::cmd("DEBUG").arg("SLEEP").arg(hold.as_secs_f64()).exec(&mut a) {
                            rec.note = format!("DEBUG SLEEP: {e}");
                        }
                    }
                    None => rec.note = "skipped: node does not answer".into(),
                }
                rec.end = self.now();
                if rec.hit_primary {
                    self.watch_after(v, slot, &mut rec);
                }
                self.release(v);
            }
            FaultKind::ClientKill => {
                rec.start = self.now();
                let dep = self.dep.lock();
                let mut killed = 0;
                for i in 0..dep.nodes().len() {
                    if self.busy.lock().contains(&i) {
                        continue;
                    }
                    let Some(mut a) = dep.admin(i) else { continue };
                    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut a).unwrap_or_default();
                    for line in list.lines().filter(|l| l.contains(&format!("name={CLIENT_NAME}"))) {
                        if let Some(id) = line.split(' ').find_map(|f| f.strip_prefix("id=")) {
                            killed += redis::cmd("CLIENT")
                                .arg("KILL")
                                .arg("ID")
                                .arg(id)
                                .query::<i64>(&mut a)
                                .unwrap_or(0);
                        }
                    }
                }
                rec.target = format!("{killed} connections");
                rec.end = self.now();
            }
            FaultKind::PauseWrites | FaultKind::OomSqueeze => {
                let Some(v) = self.take(self.with_role(|r| r == Role::Primary), pick) else {
                    rec.note = "skipped: no primary free".into();
                    return rec;
                };
                rec.target = node_name(v);
                rec.hit_primary = true;
                let admin = self.dep.lock().admin(v);
                rec.start = self.now();
                let Some(mut a) = admin else {
                    rec.note = "skipped: node does not answer".into();
                    self.release(v);
                    return rec;
                };
                if kind == FaultKind::PauseWrites {
                    let _ = redis::cmd("CLIENT")
                        .arg("PAUSE")
                        .arg(hold.as_millis() as u64)
                        .arg("WRITE")
                        .exec(&mut a);
                    std::thread::sleep(hold);
                    let _ = redis::cmd("CLIENT").arg("UNPAUSE").exec(&mut a);
                } else {
                    let _ = redis::cmd("CONFIG")
                        .arg("SET")
                        .arg("maxmemory-policy")
                        .arg("noeviction")
                        .exec(&mut a);
                    let _ = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1mb").exec(&mut a);
                    std::thread::sleep(hold);
                    let restored = self.dep.lock().admin(v).is_some_and(|mut a| {
                        redis::cmd("CONFIG")
                            .arg("SET")
                            .arg("maxmemory")
                            .arg(0)
                            .exec(&mut a)
                            .is_ok()
                    });
                    if !restored {
                        self.repairs.lock().push(Repair::MaxmemoryOff(v));
                    }
                }
                rec.end = self.now();
                self.release(v);
            }
            FaultKind::AclOff => {
                rec.start = self.now();
                let n = self.dep.lock().nodes().len();
                let mut off = Vec::new();
                for i in 0..n {
                    let Some(mut a) = self.dep.lock().admin(i) else {
                        continue;
                    };
                    if redis::cmd("ACL")
                        .arg("SETUSER")
                        .arg(USER)
                        .arg("off")
                        .exec(&mut a)
                        .is_ok()
                    {
                        off.push(i);
                        let _ = redis::cmd("CLIENT").arg("KILL").arg("USER").arg(USER).exec(&mut a);
                    }
                }
                rec.target = format!("{} of {n} nodes", off.len());
                std::thread::sleep(hold);
                for i in off {
                    let on = self.dep.lock().admin(i).is_some_and(|mut a| {
                        redis::cmd("ACL")
                            .arg("SETUSER")
                            .arg(USER)
                            .arg("on")
                            .exec(&mut a)
                            .is_ok()
                    });
                    if !on {
                        self.repairs.lock().push(Repair::AclOn(i));
                    }
                }
                rec.end = self.now();
            }
        }
        rec
    }

    fn failover(&self, kind: FaultKind, pick: u64, rec: &mut FaultRecord) {
        let topology = self.dep.lock().topology;
        rec.hit_primary = true;
        if topology == Topology::Sentinel {
            let Some(p) = self.take(self.primaries_with_replicas(), 0) else {
                rec.note = "skipped: the primary or a replica is busy".into();
                return;
            };
            rec.target = format!("{} (SENTINEL FAILOVER)", self.dep.lock().nodes()[p].addr());
            rec.start = self.now();
            let answer = {
                let dep = self.dep.lock();
                let set = dep.set.as_ref().expect("a Sentinel set");
                let sentinel = set.sentinels.iter().find(|s| s.is_running()).expect("a Sentinel");
                redis::cmd("SENTINEL")
                    .arg("FAILOVER")
                    .arg(&set.service)
                    .exec(&mut sentinel.admin())
            };
            match answer {
                Ok(()) => {
                    self.hold_until(Duration::from_secs(15), || self.promoted_from(p, None), rec);
                }
                Err(e) => rec.note = format!("SENTINEL FAILOVER: {e}"),
            }
            rec.end = self.now();
            self.release(p);
            return;
        }
        let primaries = self.primaries_with_replicas();
        let Some(p) = self.take(primaries, pick) else {
            rec.note = "skipped: no primary with a replica up".into();
            return;
        };
        let replica = self
            .with_role(|r| r == Role::Replica { of: p })
            .into_iter()
            .find(|r| !self.busy.lock().contains(r));
        let Some(r) = replica.and_then(|r| self.take(vec![r], 0)) else {
            rec.note = "skipped: the replica is busy".into();
            self.release(p);
            return;
        };
        rec.target = format!("node {r} takes over from node {p}");
        let slot = self.first_slot(p);
        rec.start = self.now();
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("FAILOVER");
        if kind == FaultKind::ForcedFailover {
            cmd.arg("FORCE");
        }
        let answer = self.dep.lock().admin(r).map(|mut a| cmd.exec(&mut a));
        match answer {
            Some(Ok(())) => self.hold_until(Duration::from_secs(15), || self.promoted_from(p, slot), rec),
            Some(Err(e)) => rec.note = format!("CLUSTER FAILOVER: {e}"),
            None => rec.note = "the replica does not answer".into(),
        }
        rec.end = self.now();
        self.release(r);
        self.release(p);
    }

    /// Waits (at most `limit`) until `done`, noting when as the promotion.
    fn hold_until(&self, limit: Duration, done: impl Fn() -> bool, rec: &mut FaultRecord) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if done() {
                rec.promoted = Some(self.now());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        rec.note = format!("no takeover within {limit:?}");
    }

    /// Moves `hold.as_millis()` slots (capped at a third of what the source owns) from one primary to another.
    fn move_slots(&self, kind: FaultKind, pick: u64, hold: Duration, rec: &mut FaultRecord) {
        let primaries = self.with_role(|r| r == Role::Primary);
        let Some(from) = self.take(primaries.clone(), pick) else {
            rec.note = "skipped: no primary free".into();
            return;
        };
        let to = primaries
            .iter()
            .copied()
            .filter(|&p| p != from)
            .nth((pick / 7) as usize % 2)
            .and_then(|to| self.take(vec![to], 0));
        let Some(to) = to else {
            rec.note = "skipped: no second primary free".into();
            self.release(from);
            return;
        };
        let (ranges, from_id, to_id, from_addr) = {
            let dep = self.dep.lock();
            let ranges = dep.ranges_of(to, from);
            (ranges, dep.node_id(from), dep.node_id(to), dep.nodes()[from].addr())
        };
        let owned: usize = ranges.iter().map(|(a, b)| (b - a + 1) as usize).sum();
        let n = (hold.as_millis() as usize).min(owned / 3);
        rec.target = format!("{n} slots from node {from} to node {to}");
        rec.start = self.now();
        match (kind, from_id, to_id, ranges.first()) {
            (_, _, _, _) if n == 0 => rec.note = "skipped: nothing to move".into(),
            (FaultKind::Reshard, Some(from_id), Some(to_id), _) => {
                let out = run_bounded(
                    Command::new("redis-cli")
                        .args(["--cluster", "reshard", &from_addr])
                        .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
                        .args(["--cluster-slots", &n.to_string(), "--cluster-yes"])
                        .args(["--cluster-pipeline", "50"]),
                    Duration::from_secs(90),
                );
                if let Err(e) = out {
                    rec.note = format!("reshard failed ({e}); fixed with redis-cli --cluster fix");
                    let _ = run_bounded(
                        Command::new("redis-cli").args(["--cluster", "fix", &from_addr, "--cluster-yes"]),
                        Duration::from_secs(90),
                    );
                }
            }
            (FaultKind::AtomicMigration, _, Some(to_id), Some(&(a, b))) => {
                let last = (a as usize + n - 1).min(b as usize) as u16;
                rec.target = format!("slots {a}-{last} from node {from} to node {to}");
                if let Err(e) = self.migrate(from, &to_id, (a, last)) {
                    rec.note = format!("MIGRATESLOTS: {e}");
                }
            }
            _ => rec.note = "skipped: a node did not answer".into(),
        }
        rec.end = self.now();
        self.release(to);
        self.release(from);
    }

    /// `CLUSTER MIGRATESLOTS` of `slots` from node `from` to the node `to_id`, waited for (60 s at most).
    fn migrate(&self, from: usize, to_id: &str, slots: (u16, u16)) -> Result<(), String> {
        let mut admin = self.dep.lock().admin(from).ok_or("the source does not answer")?;
        let earlier = exports(&mut admin).len();
        redis::cmd("CLUSTER")
            .arg("MIGRATESLOTS")
            .arg("SLOTSRANGE")
            .arg(slots.0)
            .arg(slots.1)
            .arg("NODE")
            .arg(to_id)
            .exec(&mut admin)
            .map_err(|e| e.to_string())?;
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            let jobs = exports(&mut admin);
            match jobs.get(earlier).and_then(|j| j.get("state")).map(String::as_str) {
                Some("success") => return Ok(()),
                Some(s @ ("failed" | "cancelled")) => return Err(format!("{s}: {:?}", jobs.get(earlier))),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        Err("not finished within 60 s".into())
    }
}

/// `CLUSTER GETSLOTMIGRATIONS` (Valkey 9) as one map per job.
pub fn slot_migrations(admin: &mut redis::Connection) -> Vec<std::collections::HashMap<String, String>> {
    let jobs: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("GETSLOTMIGRATIONS")
        .query(admin)
        .unwrap_or_default();
    jobs.into_iter()
        .map(|job| {
            let redis::Value::Array(fields) = job else {
                return Default::default();
            };
            fields
                .chunks(2)
                .filter_map(|kv| {
                    let text = |v: &redis::Value| match v {
                        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                        redis::Value::SimpleString(s) => Some(s.clone()),
                        redis::Value::Int(i) => Some(i.to_string()),
                        _ => None,
                    };
                    Some((text(&kv[0])?, text(kv.get(1)?)?))
                })
                .collect()
        })
        .collect()
}

fn exports(admin: &mut redis::Connection) -> Vec<std::collections::HashMap<String, String>> {
    slot_migrations(admin)
        .into_iter()
        .filter(|j| j.get("operation").map(String::as_str) == Some("EXPORT"))
        .collect()
}

/// Runs a command, killed after `limit`; its output when it succeeded.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.map_err(|e| e.to_string())?,
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            return Err(format!("killed after {limit:?}"));
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text.lines().rev().take(3).collect::<Vec<_>>().join(" / "))
    }
}

/// One line about a fault.
pub fn describe(r: &FaultRecord) -> String {
    let mut s = format!("{}{}", r.kind.name(), if r.overlapped { " (overlapping)" } else { "" });
    if !r.target.is_empty() {
        s.push_str(&format!(" on {}", r.target));
    }
    s.push_str(&format!(", held {:.1} s", (r.end - r.start).as_secs_f64()));
    if let Some(p) = r.promoted {
        s.push_str(&format!(", replaced after {:.2} s", (p - r.start).as_secs_f64()));
    }
    if !r.note.is_empty() {
        s.push_str(&format!(" [{}]", r.note));
    }
    s
}
