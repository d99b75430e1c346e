//! The worker loop: take a batch from the priority queue, plan it into one pipeline per node, send every
//! pipeline, read the replies, follow redirects, and answer each part as soon as all its keys are settled.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::batch::{self, Command, Limits, NodePlan, Step, Unit};
use crate::config::Config;
use crate::connection::{Bulk, ConnectOptions, Connection, Filled, Head, Outgoing, ServerReply};
use crate::error::{Error, Result};
use crate::pool::BufferPool;
use crate::queue::Inbox;
use crate::request::{KeyReply, Kind, Part, ReplySlot};
use crate::stats::Counters;
use crate::topology::{Redirect, Topology};

/// Deletes KEYS[1] only if it still holds ARGV[1] and KEYS[2] does not exist: an orphan is removed only if it
/// is still the very orphan that was read, so a concurrent re-put (which writes KEYS[2] first) is never damaged.
const DELETE_ORPHAN: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('EXISTS', KEYS[2]) == 0 then \
                             return redis.call('DEL', KEYS[1]) end return 0";

/// A failed connect that took this long marks its node down (see `health`).
const SLOW_CONNECT: Duration = Duration::from_millis(100);

/// A node that sent nothing at all this long after a pipeline, until its deadline, is marked down.
const STALLED: Duration = Duration::from_millis(500);

/// First back-off after TRYAGAIN / CLUSTERDOWN / LOADING / MASTERDOWN; doubles per round up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(320);

/// State shared by the client handle and its workers. Workers hold it, never the handle, so they do not keep
/// the client alive.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) connect: ConnectOptions,
    pub(crate) topology: Arc<Topology>,
    pub(crate) stats: Counters,
    /// Running estimate of a value's size, learned from replies; bounds reads when the caller gives no hint.
    pub(crate) learned_value_size: AtomicUsize,
    /// The bound on parts and bytes queued or in flight.
    pub(crate) budget: Arc<crate::budget::Budget>,
    /// Buffers for large values, shared by every worker's connections.
    pub(crate) pool: Arc<BufferPool>,
    /// Set once by close: queued parts are executed until then and answered `Closed` after.
    pub(crate) drain_deadline: OnceLock<Instant>,
    /// Nodes that could not be connected to, probed in the background.
    pub(crate) health: Arc<crate::health::Health>,
}

impl Shared {
    pub(crate) fn expected_value_size(&self) -> usize {
        self.learned_value_size.load(Relaxed)
    }

    pub(crate) fn learn_value_size(&self, len: usize) {
        // A racy exponential average is fine: it only shapes batches.
        let old = self.learned_value_size.load(Relaxed);
        let new = (old - old / 8 + len / 8).max(1);
        self.learned_value_size.store(new, Relaxed);
    }
}

/// Starts worker `id`.
pub(crate) fn spawn(id: usize, shared: Arc<Shared>, inbox: Inbox) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("kvcache-redis-worker-{id}"))
        .spawn(move || {
            Worker {
                shared,
                inbox,
                conns: HashMap::new(),
            }
            .run()
        })
}

struct Worker {
    shared: Arc<Shared>,
    inbox: Inbox,
    /// One connection per node, owned by this worker alone: no lock around any socket.
    conns: HashMap<String, Connection>,
}

impl Worker {
    fn run(mut self) {
        let (max_keys, max_bytes) = (self.shared.config.batch_max_keys, self.shared.config.batch_max_bytes);
        while let Some(batch) = self.inbox.next_batch(max_keys, max_bytes) {
            if self.shared.drain_deadline.get().is_some_and(|d| Instant::now() >= *d) {
                for mut part in batch {
                    part.fail(Error::Closed);
                }
                continue;
            }
            // A panic drops the batch's reply slots, so its callers get `WorkerLost` instead of hanging; the
            // worker goes on with fresh connections, since the old ones may be out of step.
            if catch_unwind(AssertUnwindSafe(|| self.execute(batch))).is_err() {
                log::error!("worker panicked while executing a batch; its callers get an error");
                self.conns.clear();
            }
        }
    }

    fn execute(&mut self, mut parts: Vec<Part>) {
        let now = Instant::now();
        let shared = self.shared.clone();
        let map = shared.topology.current();
        // The reply slots leave the parts, so that the parts can be shared with planning while answers go out.
        let replies = parts.iter_mut().map(|p| std::mem::take(&mut p.reply)).collect();
        let mut run = Run::new(&shared, &parts, replies);
        let mut units = Vec::new();
        for (p, part) in parts.iter().enumerate() {
            if part.deadline <= now {
                run.replies[p].send(vec![Err(Error::Timeout { node: None }); part.keys.len().max(1)]);
                Counters::add(&shared.stats.timeouts, 1);
                run.remaining[p] = 0;
            } else if part.kind == Kind::Ping {
                run.expect(p, map.nodes.len());
                units.extend(map.nodes.iter().enumerate().map(|(i, node)| Unit {
                    to: Some(node.clone()),
                    ..Unit::new(p, i)
                }));
            } else {
                units.extend((0..part.keys.len()).map(|k| Unit::new(p, k)));
            }
        }
        let limits = Limits {
            mget_max_keys: self.shared.config.batch_max_keys,
            mget_max_bytes: self.shared.config.batch_max_bytes,
            mget_max_value_size: self.shared.config.mget_max_value_size,
        };
        let mut map = map;
        let mut round = 0u32;
        while !units.is_empty() {
            let plan = batch::plan(&parts, std::mem::take(&mut units), &map, limits);
            for (unit, err) in plan.unroutable {
                run.refresh = true;
                run.finish(&unit, Err(err));
            }
            let sent = self.send_all(&mut run, &plan.nodes);
            // Nodes are read in the order their replies arrive, so a stalled node holds up no other node's answers.
            let mut pending: Vec<(usize, bool)> = sent
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.map(|reused| (i, reused)))
                .collect();
            while !pending.is_empty() {
                let (i, reused) = pending.swap_remove(self.first_ready(&pending, &plan.nodes, &run));
                self.read_replies(&mut run, &plan.nodes[i], reused);
            }
            units = std::mem::take(&mut run.next);
            if std::mem::take(&mut run.refresh) {
                self.shared.topology.request_refresh();
                // Picks up the slots MOVED replies have patched already.
                map = self.shared.topology.current();
            }
            if std::mem::take(&mut run.backoff) {
                let pause = (FIRST_BACKOFF * 2u32.pow(round.min(5))).min(MAX_BACKOFF);
                let until = units.iter().map(|u| parts[u.part].deadline).min().unwrap_or(now);
                thread::sleep(pause.min(until.saturating_duration_since(Instant::now())));
            }
            let now = Instant::now();
            units.retain(|u| {
                let alive = parts[u.part].deadline > now;
                if !alive {
                    run.finish(u, Err(Error::Timeout { node: u.to.clone() }));
                }
                alive
            });
            round += 1;
        }
    }

    /// Writes each node's pipeline. Returns, per node, `Some(reused)` when the write went out.
    fn send_all(&mut self, run: &mut Run, nodes: &[NodePlan]) -> Vec<Option<bool>> {
        let mut sent = Vec::with_capacity(nodes.len());
        for np in nodes {
            let deadline = np
                .steps
                .iter()
                .flat_map(|s| &s.units)
                .map(|u| run.parts[u.part].deadline)
                .max()
                .unwrap_or_else(Instant::now);
            let mut out = encode(np, run.parts);
            if let Some((replicas, timeout)) = self.wait_after(np) {
                out.push_cmd(redis::cmd("WAIT").arg(replicas).arg(timeout.as_millis().max(1) as u64));
            }
            let (conn, reused) = match self.conn(&np.node, deadline) {
                Ok(c) => c,
                Err(e) => {
                    log::debug!("connect to {}: {e}", np.node);
                    run.refresh |= self.shared.topology.current().is_cluster();
                    for unit in np.steps.iter().flat_map(|s| &s.units) {
                        run.finish(unit, Err(e.clone()));
                    }
                    sent.push(None);
                    continue;
                }
            };
            conn.set_deadline(deadline);
            match conn.write(&out) {
                Ok(()) => sent.push(Some(reused)),
                Err(e) => {
                    self.conns.remove(&np.node);
                    run.io_failure(np.steps.iter().flat_map(|s| &s.units), &e, reused);
                    sent.push(None);
                }
            }
        }
        sent
    }

    /// Which of the `pending` nodes to read first: one whose reply has begun to arrive (waiting for the first
    /// to do so, until the earliest of their deadlines), else the first.
    fn first_ready(&self, pending: &[(usize, bool)], nodes: &[NodePlan], run: &Run) -> usize {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        if pending.len() == 1 {
            return 0;
        }
        let mut fds = Vec::with_capacity(pending.len());
        for (n, (i, _)) in pending.iter().enumerate() {
            match self.conns.get(&nodes[*i].node).map(Connection::wait_fd) {
                Some(Some(fd)) => fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN)),
                // Bytes buffered, TLS, or no connection (read_replies handles that): no need to wait.
                _ => return n,
            }
        }
        let deadline = pending
            .iter()
            .flat_map(|(i, _)| nodes[*i].steps.iter().flat_map(|s| &s.units))
            .map(|u| run.parts[u.part].deadline)
            .min()
            .unwrap_or_else(Instant::now);
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(n) if n > 0 => fds.iter().position(|f| !f.revents().is_empty()).unwrap_or(0),
            _ => 0,
        }
    }

    /// Marks `node` down after `e` (see `health`), counting it the first time.
    fn mark_down(&self, node: &str, e: &Error) {
        let shared = &self.shared;
        if shared.health.mark_down(node, e, &shared.connect, &shared.topology) {
            Counters::add(&shared.stats.marked_down, 1);
        }
    }

    /// `WAIT` after this node's pipeline: when replicas are asked for and it holds puts.
    fn wait_after(&self, np: &NodePlan) -> Option<(usize, Duration)> {
        let wait = self.shared.config.wait_replicas?;
        np.steps
            .iter()
            .any(|s| matches!(s.command, Command::Set { .. }))
            .then_some(wait)
    }

    /// Reads the replies of one node's pipeline, in order, settling each unit. With a replica wait, the puts are
    /// settled only once the `WAIT` that closes the pipeline has answered.
    fn read_replies(&mut self, run: &mut Run, np: &NodePlan, reused: bool) {
        let wait = self.wait_after(np);
        let Some(conn) = self.conns.get_mut(&np.node) else {
            return;
        };
        let (commands, keys) = (
            np.steps.len() as u64 + u64::from(wait.is_some()),
            np.steps.iter().map(|s| s.units.len() as u64).sum(),
        );
        self.shared.stats.round_trip(&np.node, commands, keys);
        if wait.is_some() {
            run.deferred = Some(Vec::new());
        }
        let mut failed = None;
        for (i, step) in np.steps.iter().enumerate() {
            if let Err(e) = read_step(conn, run, step, &np.node) {
                failed = Some((i, e));
                break;
            }
        }
        let silent = conn.silent_for();
        if let (Some((replicas, _)), None) = (wait, &failed) {
            match conn.read_head() {
                Ok(Head::Int(acked)) => run.settle_deferred(Ok(acked.max(0) as usize), replicas, &np.node),
                Ok(Head::Error(e)) => run.settle_deferred(Err(e), replicas, &np.node),
                Ok(other) => failed = Some((np.steps.len(), Error::protocol(&np.node, format!("WAIT: {other:?}")))),
                Err(e) => failed = Some((np.steps.len(), e)),
            }
        }
        if let Some((i, e)) = failed {
            // The connection is out of step with the server now: drop it, and the replies still owed (puts whose
            // replication was not confirmed included).
            log::warn!("{e}; dropping the connection");
            self.conns.remove(&np.node);
            // Not a byte for that long: the server is stalled. Mark it down, so that other requests fail at once
            // instead of each holding a worker until its deadline.
            if e.is_timeout() && silent.is_some_and(|s| s >= STALLED) {
                log::warn!("{} sent nothing for {silent:?}: marked down", np.node);
                self.mark_down(&np.node, &e);
            }
            let deferred: Vec<Unit> = run
                .deferred
                .take()
                .unwrap_or_default()
                .into_iter()
                .map(|(u, _)| u)
                .collect();
            run.io_failure(
                deferred.iter().chain(np.steps[i..].iter().flat_map(|s| &s.units)),
                &e,
                reused,
            );
        }
    }

    /// This worker's connection to `node`, opened if needed (within the connect timeout and what is left until
    /// `deadline`); `true` when it was reused. A node marked down fails at once.
    fn conn(&mut self, node: &str, deadline: Instant) -> Result<(&mut Connection, bool)> {
        if let Err(e) = self.shared.health.check(node) {
            self.conns.remove(node);
            return Err(e);
        }
        let reused = self.conns.contains_key(node);
        if !reused {
            let shared = &self.shared;
            let mut opts = shared.connect.clone();
            let left = deadline.saturating_duration_since(Instant::now());
            opts.timeout = opts.timeout.min(left).max(Duration::from_millis(1));
            let started = Instant::now();
            let conn = match Connection::connect(node, &opts) {
                Ok(conn) => conn.with_pool(shared.pool.clone()),
                Err(e) => {
                    // A connect that failed slowly (a blackholed or hung host): mark the node down, so that other
                    // workers do not wait on it too, and probe it in the background. A quick refusal is simply
                    // tried again by the next request, so a restarted server is used the moment it is back.
                    if (e.is_io() || e.is_timeout()) && started.elapsed() >= SLOW_CONNECT {
                        log::warn!("{node} is down: {e}");
                        self.mark_down(node, &e);
                    }
                    return Err(e);
                }
            };
            Counters::add(&shared.stats.connects, 1);
            self.conns.insert(node.to_string(), conn);
        }
        Ok((self.conns.get_mut(node).expect("inserted above"), reused))
    }
}

/// Encodes one node's pipeline.
fn encode(np: &NodePlan, parts: &[Part]) -> Outgoing {
    let mut out = Outgoing::default();
    for step in &np.steps {
        if step.asking {
            out.push_cmd(&redis::cmd("ASKING"));
        }
        let key = |u: &Unit| &parts[u.part].keys[u.key][..];
        let one = || key(&step.units[0]);
        match step.command {
            Command::Get => out.push_cmd(redis::cmd("GET").arg(one())),
            Command::Mget => {
                let mut cmd = redis::cmd("MGET");
                for u in &step.units {
                    cmd.arg(key(u));
                }
                out.push_cmd(&cmd)
            }
            Command::Exists => out.push_cmd(redis::cmd("EXISTS").arg(one())),
            Command::Del => out.push_cmd(redis::cmd("DEL").arg(one())),
            Command::DeleteOrphan => {
                let u = &step.units[0];
                let v = &parts[u.part].values[u.key];
                out.push_cmd(
                    redis::cmd("EVAL")
                        .arg(DELETE_ORPHAN)
                        .arg(2)
                        .arg(one())
                        .arg(&v.head[..])
                        .arg(&v.body[..]),
                )
            }
            Command::Ping => out.push_cmd(&redis::cmd("PING")),
            Command::Set { ttl_secs } => {
                let u = &step.units[0];
                out.push_set(one(), &parts[u.part].values[u.key], ttl_secs)
            }
        }
    }
    out
}

/// Reads the reply (or replies, for `MGET`) of one step. An `Err` means the connection can no longer be used.
fn read_step(conn: &mut Connection, run: &mut Run, step: &Step, node: &str) -> Result<()> {
    if step.asking
        && let Head::Error(e) = conn.read_head()?
    {
        log::debug!("{node} refused ASKING: {} {}", e.code, e.detail);
    }
    let unexpected = |what: &Head| Error::protocol(node, format!("unexpected reply {what:?} to {:?}", step.command));
    match step.command {
        Command::Get if run.parts[step.units[0].part].dests.is_some() => {
            let unit = &step.units[0];
            let (dests, fill) = run.parts[unit.part].dests.as_ref().expect("checked");
            let mut dest = dests[unit.key].lock();
            let reply = match dest.as_mut() {
                Some(buf) => conn.read_bulk_into(buf.bytes(), *fill)?.map(|f| run.filled(f, node)),
                // The caller stopped waiting and took its buffer back: read the value and drop it.
                None => conn.read_bulk(false)?.map(|_| Ok(KeyReply::Value(None))),
            };
            drop(dest);
            match reply {
                Ok(Err(e)) => run.finish(unit, Err(e)),
                Ok(Ok(r)) => run.settle(unit, Ok(r), node),
                Err(e) => run.settle(unit, Err(e), node),
            }
        }
        Command::Get => {
            let unit = &step.units[0];
            let reply = match conn.read_bulk(run.parts[unit.part].verify_frames)? {
                // MGET answers nil for a key of another type; GET answers the same, so both paths agree.
                Err(e) if e.code == "WRONGTYPE" => Ok(KeyReply::Value(None)),
                other => other.map(|bulk| run.bulk_reply(bulk, node)),
            };
            run.settle(unit, reply, node);
        }
        Command::Mget => match conn.read_head()? {
            Head::Array(Some(n)) if n == step.units.len() => {
                for unit in &step.units {
                    let reply = conn
                        .read_bulk(run.parts[unit.part].verify_frames)?
                        .map(|b| run.bulk_reply(b, node));
                    run.settle(unit, reply, node);
                }
            }
            Head::Error(e)
                if step.units.len() > 1 && (e.code == "TRYAGAIN" || Redirect::parse(&e.code, &e.detail).is_none()) =>
            {
                // An MGET refused as a whole is read key by key: one bad key (e.g. NOPERM) then fails alone, and
                // in a half-migrated slot (TRYAGAIN) each GET is answered at once, a value or ASK to where the key
                // went, where the MGET would only be refused again until the migration ends.
                log::debug!(
                    "{node}: MGET of {} keys refused ({}); reading them one by one",
                    step.units.len(),
                    e.code
                );
                let retry = usize::from(e.code == "TRYAGAIN");
                Counters::add(&run.shared.stats.retries, retry as u64);
                run.next.extend(step.units.iter().map(|u| Unit {
                    alone: true,
                    retries: u.retries + retry,
                    ..u.clone()
                }));
            }
            Head::Error(e) => {
                for unit in &step.units {
                    run.settle(unit, Err(e.clone()), node);
                }
            }
            other => return Err(unexpected(&other)),
        },
        Command::Exists | Command::Del | Command::DeleteOrphan => {
            let reply = match conn.read_head()? {
                Head::Int(n) => Ok(KeyReply::Flag(n > 0)),
                Head::Error(e) => Err(e),
                other => return Err(unexpected(&other)),
            };
            run.settle(&step.units[0], reply, node);
        }
        Command::Set { .. } | Command::Ping => {
            let reply = match conn.read_head()? {
                Head::Simple(_) => Ok(KeyReply::Done),
                Head::Error(e) => Err(e),
                other => return Err(unexpected(&other)),
            };
            match (&mut run.deferred, step.command) {
                (Some(deferred), Command::Set { .. }) => deferred.push((step.units[0].clone(), reply)),
                _ => run.settle(&step.units[0], reply, node),
            }
        }
    }
    Ok(())
}

/// The state of one batch's execution: results so far, and what needs another round.
struct Run<'a> {
    shared: &'a Shared,
    parts: &'a [Part],
    replies: Vec<ReplySlot>,
    results: Vec<Vec<Option<Result<KeyReply>>>>,
    remaining: Vec<usize>,
    next: Vec<Unit>,
    refresh: bool,
    backoff: bool,
    /// Puts read but not settled until the pipeline's `WAIT` answers.
    deferred: Option<Vec<(Unit, std::result::Result<KeyReply, ServerReply>)>>,
}

impl<'a> Run<'a> {
    fn new(shared: &'a Shared, parts: &'a [Part], replies: Vec<ReplySlot>) -> Run<'a> {
        Run {
            shared,
            parts,
            replies,
            results: parts.iter().map(|p| vec![None; p.keys.len()]).collect(),
            remaining: parts.iter().map(|p| p.keys.len()).collect(),
            next: Vec::new(),
            refresh: false,
            backoff: false,
            deferred: None,
        }
    }

    /// Sets how many answers part `p` waits for (pings: one per node).
    fn expect(&mut self, p: usize, n: usize) {
        self.results[p] = vec![None; n];
        self.remaining[p] = n;
        if n == 0 {
            self.replies[p].send(Vec::new());
        }
    }

    /// A value read back; one that was to be verified as a chunk frame and is not sound is counted and read as
    /// a miss, so it is never returned.
    fn bulk_reply(&self, bulk: Bulk, node: &str) -> KeyReply {
        match bulk {
            Bulk::Nil => KeyReply::Value(None),
            Bulk::Value(v) => KeyReply::Value(Some(v)),
            Bulk::Corrupt => {
                log::warn!("{node}: a stored chunk failed its frame check; read as a miss");
                Counters::add(&self.shared.stats.corrupt, 1);
                KeyReply::Value(None)
            }
        }
    }

    /// A value read into a destination: filled, a miss (also when damaged, counted), or a buffer of the wrong
    /// size (that key's error; the value was read and dropped, the connection stays in step).
    fn filled(&self, filled: Filled, node: &str) -> std::result::Result<KeyReply, Error> {
        match filled {
            Filled::Nil => Ok(KeyReply::Value(None)),
            Filled::Bytes(n) => Ok(KeyReply::Filled(n)),
            Filled::Corrupt => {
                log::warn!("{node}: a stored chunk failed its frame check; read as a miss");
                Counters::add(&self.shared.stats.corrupt, 1);
                Ok(KeyReply::Value(None))
            }
            Filled::WrongSize(n) => Err(Error::InvalidInput(format!(
                "the stored value is {n} bytes, the buffer given for it is not that size"
            ))),
        }
    }

    fn settled(&self, unit: &Unit) -> bool {
        self.remaining[unit.part] == 0 || self.results[unit.part][unit.key].is_some()
    }

    /// Records the final answer of one unit; answers its part when it was the last one.
    fn finish(&mut self, unit: &Unit, result: Result<KeyReply>) {
        if self.settled(unit) {
            debug_assert!(false, "unit {unit:?} answered twice");
            return;
        }
        let stats = &self.shared.stats;
        Counters::add(&stats.keys, 1);
        match &result {
            Ok(KeyReply::Value(Some(v))) => {
                Counters::add(&stats.hits, 1);
                self.shared.learn_value_size(v.len());
            }
            Ok(KeyReply::Value(None)) => Counters::add(&stats.misses, 1),
            Ok(_) => {}
            Err(e) => {
                Counters::add(&stats.key_errors, 1);
                if e.is_timeout() {
                    Counters::add(&stats.timeouts, 1);
                }
            }
        }
        self.results[unit.part][unit.key] = Some(result);
        self.remaining[unit.part] -= 1;
        if self.remaining[unit.part] == 0 {
            let replies = std::mem::take(&mut self.results[unit.part]);
            self.replies[unit.part].send(replies.into_iter().map(|r| r.expect("all settled")).collect());
        }
    }

    /// Settles a unit from its reply: final, or redirected to another round.
    fn settle(&mut self, unit: &Unit, reply: std::result::Result<KeyReply, ServerReply>, node: &str) {
        let e = match reply {
            Ok(r) => return self.finish(unit, Ok(r)),
            Err(e) => e,
        };
        let Some(redirect) = Redirect::parse(&e.code, &e.detail) else {
            if e.code == "CROSSSLOT" {
                log::error!("{node}: CROSSSLOT: {}", e.detail);
            }
            return self.finish(unit, Err(e.into_error(node)));
        };
        let config = &self.shared.config;
        let mut next = unit.clone();
        if matches!(redirect, Redirect::Retry) {
            if unit.retries >= config.max_retries {
                return self.finish(unit, Err(e.into_error(node)));
            }
            next.retries += 1;
        } else {
            if unit.redirects >= config.max_redirects {
                let limit = config.max_redirects;
                return self.finish(
                    unit,
                    Err(Error::TooManyRedirects {
                        node: node.to_string(),
                        limit,
                    }),
                );
            }
            next.redirects += 1;
        }
        let stats = &self.shared.stats;
        match redirect {
            Redirect::Moved { slot, node } => {
                Counters::add(&stats.moved, 1);
                self.shared.topology.apply_moved(slot, &node);
                self.refresh = true;
                next.to = None;
                next.asking = false;
            }
            Redirect::Ask { node } => {
                Counters::add(&stats.asked, 1);
                next.to = Some(node);
                next.asking = true;
            }
            Redirect::Retry => {
                Counters::add(&stats.retries, 1);
                self.backoff = true;
            }
        }
        self.next.push(next);
    }

    /// Settles the deferred puts once `WAIT` has answered: those the primary stored fail with
    /// `NotReplicated` when fewer than `wanted` replicas confirmed them.
    fn settle_deferred(&mut self, acked: std::result::Result<usize, ServerReply>, wanted: usize, node: &str) {
        for (unit, reply) in self.deferred.take().unwrap_or_default() {
            match (reply, &acked) {
                (Ok(_), Ok(n)) if *n < wanted => self.finish(
                    &unit,
                    Err(Error::NotReplicated {
                        node: node.to_string(),
                        acked: *n,
                        wanted,
                    }),
                ),
                (Ok(_), Err(e)) => self.finish(&unit, Err(e.clone().into_error(node))),
                (reply, _) => self.settle(&unit, reply, node),
            }
        }
    }

    /// Handles units whose connection failed: each is resent once on a fresh connection when the failed one
    /// had been reused (it may simply have gone stale; every command we send is idempotent), else failed.
    fn io_failure<'u>(&mut self, units: impl Iterator<Item = &'u Unit>, err: &Error, reused: bool) {
        self.refresh |= self.shared.topology.current().is_cluster();
        for unit in units {
            if self.settled(unit) {
                continue;
            }
            if reused && !unit.io_retried && !err.is_timeout() {
                Counters::add(&self.shared.stats.io_retries, 1);
                self.next.push(Unit {
                    io_retried: true,
                    ..unit.clone()
                });
            } else {
                self.finish(unit, Err(err.clone()));
            }
        }
    }
}
