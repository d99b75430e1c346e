//! The worker loop. A worker owns one connection per node it talks to and never blocks on any of them: it takes
//! batches from the priority queue, plans them into one pipeline per node, writes, and sleeps in one `poll` on its
//! sockets and its wake-up socket until a reply, a deadline, a back-off or news wakes it.
//!
//! A node that goes silent holds up only the keys waiting on it. Each connection carries one pipeline at a time;
//! keys for a node whose pipeline is still out wait in the worker, in priority order, and go out when it is
//! answered. After `stall_threshold` of silence the worker takes other queued work (with several nodes); after
//! `silence_timeout` the node is reported silent, the slot map is re-read from the other nodes, and as soon as it
//! shows the node's slots elsewhere the keys waiting on it are resent there (every command sent is idempotent).

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::active::Active;
use crate::batch::{self, Command, Limits, NodePlan, Unit};
use crate::command::{self, Answers};
use crate::config::Config;
use crate::connection::{ConnectOptions, Connection, timespec};
use crate::error::{Error, Result};
use crate::pool::BufferPool;
use crate::queue::Inbox;
use crate::reader::{Expect, Reply};
use crate::request::{KeyReply, Kind, Part, Priority};
use crate::resp::{Head, Outgoing};
use crate::settle::{self, Answer, Decision, Refusal};
use crate::stats::Counters;
use crate::topology::{SlotMap, Topology};
use crate::wake::Wakeup;

/// A failed connect that took this long marks its node down (see `health`).
const SLOW_CONNECT: Duration = Duration::from_millis(100);
/// A silent node is reported (and a refresh asked for) at most this often by one worker.
const REPORT_EVERY: Duration = Duration::from_millis(100);
/// The longest a worker sleeps with nothing to wait for.
const IDLE: Duration = Duration::from_secs(1);

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
    /// Nodes that are silent or could not be connected to.
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

/// Starts worker `id`, woken through `wakeup`.
pub(crate) fn spawn(shared: Arc<Shared>, inbox: Inbox, wakeup: Wakeup, id: usize) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("kvcache-redis-worker-{id}"))
        .spawn(move || {
            let (map, epoch) = shared.topology.current_with_epoch();
            Worker {
                inbox,
                wakeup,
                active: Active::default(),
                ready: Vec::new(),
                replan: false,
                delayed: Vec::new(),
                unconfirmed: Vec::new(),
                links: Vec::new(),
                index: HashMap::new(),
                polled: Vec::new(),
                connects: crossbeam_channel::unbounded(),
                map,
                epoch,
                moved: false,
                shared,
            }
            .run()
        })
}

struct Worker {
    shared: Arc<Shared>,
    inbox: Inbox,
    wakeup: Wakeup,
    active: Active,
    /// Units to send, planned again (in priority order) whenever `replan` is set.
    ready: Vec<Unit>,
    replan: bool,
    /// Units backing off, sent again at the instant given.
    delayed: Vec<(Instant, Unit)>,
    /// Final answers from nodes that were silent, held until a slot map read after them confirms their owner.
    unconfirmed: Vec<Unconfirmed>,
    /// One per node talked to: the connection, owned by this worker alone (no lock around any socket). Never
    /// removed (a link is reset instead), so indices stay valid.
    links: Vec<Link>,
    index: HashMap<Arc<str>, usize>,
    /// The links watched by the last poll, by index (kept to save an allocation per sleep).
    polled: Vec<usize>,
    /// Connects run on threads of their own (a partitioned node's connect hangs); they report here.
    connects: (Sender<Connected>, Receiver<Connected>),
    map: Arc<SlotMap>,
    epoch: u64,
    /// Something happened this turn that may let more happen at once (a reply, new work): look again before
    /// sleeping.
    moved: bool,
}

struct Unconfirmed {
    unit: Unit,
    result: Result<KeyReply>,
    node: String,
    since: Instant,
}

struct Connected {
    node: String,
    started: Instant,
    result: Result<Connection>,
}

/// This worker's state for one node.
struct Link {
    node: Arc<str>,
    conn: Option<Connection>,
    /// Since when a connect runs.
    connecting: Option<Instant>,
    /// What was written and is owed a reply, in order: one pipeline at a time.
    owed: VecDeque<Sent>,
    /// Puts whose answer was read, settled once the pipeline's `WAIT` answers.
    deferred: Vec<(Unit, Answer)>,
    /// When the current pipeline was queued for writing.
    sent_at: Option<Instant>,
    /// Whether the connection had carried a pipeline before the current one (a failure then may be staleness).
    reused: bool,
    used: bool,
    /// Readable at the last poll.
    readable: bool,
    /// Owes replies and has been silent past `silence_timeout`.
    silent: bool,
    reported: Option<Instant>,
    /// It spoke after a silence at this instant: its answers are held until a slot map read later confirms it.
    unconfirmed_since: Option<Instant>,
    /// Marked down for this silence already.
    marked: bool,
}

impl Link {
    fn new(node: Arc<str>) -> Link {
        Link {
            node,
            conn: None,
            connecting: None,
            owed: VecDeque::new(),
            deferred: Vec::new(),
            sent_at: None,
            reused: false,
            used: false,
            readable: false,
            silent: false,
            reported: None,
            unconfirmed_since: None,
            marked: false,
        }
    }

    /// Forgets the connection and everything about it.
    fn reset(&mut self) {
        *self = Link::new(self.node.clone());
    }

    fn busy(&self) -> bool {
        self.connecting.is_some() || !self.owed.is_empty() || self.conn.as_ref().is_some_and(|c| c.wants_write())
    }

    /// When bytes last moved for the work in flight (or the connect started).
    fn last_progress(&self) -> Instant {
        let io = self.conn.as_ref().map(Connection::last_io);
        [self.connecting, io, self.sent_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or_else(Instant::now)
    }

    /// The units its replies are owed for, the deferred puts included.
    fn units(&self) -> impl Iterator<Item = &Unit> {
        let owed = self.owed.iter().flat_map(|s| match &s.what {
            What::Step { units, .. } => units.as_slice(),
            _ => &[],
        });
        owed.chain(self.deferred.iter().map(|(u, _)| u))
    }
}

/// One command written, and what its reply is for.
struct Sent {
    what: What,
    expect: Expect,
}

enum What {
    Asking,
    Step { command: Command, units: Vec<Unit> },
    Wait { replicas: usize },
}

impl Worker {
    fn run(mut self) {
        self.shared.topology.listen(self.wakeup.waker());
        loop {
            match catch_unwind(AssertUnwindSafe(|| self.turn())) {
                Ok(true) => {}
                Ok(false) => return,
                // Its callers get `WorkerLost` instead of hanging; the worker goes on with fresh connections,
                // since the old ones may be out of step.
                Err(_) => {
                    log::error!("worker panicked; the calls it held get an error");
                    self.active.fail_all(Error::WorkerLost);
                    self.inbox.forget_puts();
                    self.links.iter_mut().for_each(Link::reset);
                    self.ready.clear();
                    self.delayed.clear();
                    self.unconfirmed.clear();
                }
            }
        }
    }

    /// One turn of the loop; `false` once the client is closed and everything taken is answered.
    fn turn(&mut self) -> bool {
        self.moved = false;
        self.follow_topology();
        self.collect_connects();
        let now = Instant::now();
        if self.accepting(now) {
            let closed = self.inbox.closed();
            let batch = self
                .inbox
                .take(self.shared.config.batch_max_keys, self.shared.config.batch_max_bytes);
            if batch.is_empty() {
                if closed && self.active.is_empty() {
                    return false;
                }
                self.inbox.pass_on();
            }
            self.admit(batch, now);
        }
        self.expire(now);
        self.release_delayed(now);
        self.confirm();
        if self.replan {
            self.dispatch();
        }
        self.exchange();
        self.watch(Instant::now());
        if !self.moved {
            self.sleep();
        }
        true
    }

    /// Whether to take more work: always when idle; with several nodes, also when everything in flight waits on
    /// nodes silent past `stall_threshold` (with one node, queued work stays queued, in priority order).
    fn accepting(&self, now: Instant) -> bool {
        if self.active.is_empty() {
            return true;
        }
        if self.map.nodes.len() < 2 {
            return false;
        }
        let stall = self.shared.config.stall_threshold;
        self.links
            .iter()
            .all(|l| !l.busy() || now.duration_since(l.last_progress()) >= stall)
    }

    fn admit(&mut self, batch: Vec<Part>, now: Instant) {
        let closing = self.shared.drain_deadline.get().is_some_and(|d| now >= *d);
        for mut part in batch {
            self.moved = true;
            let (priority, bytes) = (part.priority, part.bytes);
            let refused = if closing {
                Some(Error::Closed)
            } else if part.deadline <= now {
                Counters::add(&self.shared.stats.timeouts, 1);
                Some(Error::Timeout { node: None })
            } else {
                None
            };
            if let Some(e) = refused {
                part.fail(e);
                self.part_done(priority, bytes);
                continue;
            }
            let pings = (part.kind == Kind::Ping).then(|| self.map.nodes.clone());
            let answers = pings.as_ref().map_or(part.keys.len(), Vec::len);
            let Some((index, generation)) = self.active.admit(part, answers) else {
                self.part_done(priority, bytes);
                continue;
            };
            let unit = |key| Unit {
                generation,
                ..Unit::new(index, key)
            };
            match pings {
                Some(nodes) => self.ready.extend(nodes.into_iter().enumerate().map(|(i, node)| Unit {
                    to: Some(node),
                    ..unit(i)
                })),
                None => self.ready.extend((0..answers).map(unit)),
            }
            self.replan = true;
        }
    }

    /// Plans the ready units and writes each pipeline whose node is free; keys for a node still busy with its
    /// previous pipeline (or connecting) stay ready for the next plan.
    fn dispatch(&mut self) {
        self.replan = false;
        let mut units = std::mem::take(&mut self.ready);
        units.retain(|u| self.active.live(u));
        if units.is_empty() {
            return;
        }
        units.sort_by_cached_key(|u| self.active.order(u));
        let config = &self.shared.config;
        let limits = Limits {
            mget_max_keys: config.batch_max_keys,
            mget_max_bytes: config.batch_max_bytes,
            mget_max_value_size: config.mget_max_value_size,
        };
        let plan = batch::plan(&self.active, units, &self.map, limits);
        for (unit, err) in plan.unroutable {
            self.shared.topology.request_refresh();
            self.finish(&unit, Err(err));
        }
        for np in plan.nodes {
            if let Err(e) = self.shared.health.check(&np.node) {
                if let Some(&i) = self.index.get(np.node.as_str()) {
                    self.links[i].conn = None;
                }
                for unit in np.steps.iter().flat_map(|s| &s.units) {
                    self.finish(unit, Err(e.clone()));
                }
                continue;
            }
            let i = self.link(&np.node);
            let link = &self.links[i];
            if link.busy() || link.conn.is_none() {
                if link.conn.is_none() && link.connecting.is_none() {
                    let deadline = np
                        .steps
                        .iter()
                        .flat_map(|s| &s.units)
                        .filter_map(|u| self.active.deadline(u))
                        .max();
                    self.start_connect(i, deadline.unwrap_or_else(Instant::now));
                }
                self.ready.extend(np.steps.into_iter().flat_map(|s| s.units));
                continue;
            }
            self.send(i, np);
        }
    }

    /// This worker's link to `node`, made on first use.
    fn link(&mut self, node: &str) -> usize {
        if let Some(&i) = self.index.get(node) {
            return i;
        }
        let node: Arc<str> = node.into();
        self.links.push(Link::new(node.clone()));
        self.index.insert(node, self.links.len() - 1);
        self.links.len() - 1
    }

    /// Writes one node's pipeline (queued on its connection; `exchange` flushes it).
    fn send(&mut self, i: usize, np: NodePlan) {
        let wait = self.wait_after(&np);
        let link = &mut self.links[i];
        let mut out = Outgoing::default();
        let (mut commands, mut keys) = (0, 0);
        for step in np.steps {
            command::encode(&step, &self.active, &mut out);
            if step.asking {
                link.owed.push_back(Sent {
                    what: What::Asking,
                    expect: Expect::Scalar,
                });
            }
            commands += 1;
            keys += step.units.len() as u64;
            link.owed.push_back(Sent {
                expect: command::expect(&step, &self.active),
                what: What::Step {
                    command: step.command,
                    units: step.units,
                },
            });
        }
        if let Some((replicas, timeout)) = wait {
            out.push_cmd(redis::cmd("WAIT").arg(replicas).arg(timeout.as_millis().max(1) as u64));
            link.owed.push_back(Sent {
                what: What::Wait { replicas },
                expect: Expect::Scalar,
            });
            commands += 1;
        }
        self.shared.stats.round_trip(&np.node, commands, keys);
        link.reused = link.used;
        link.used = true;
        link.sent_at = Some(Instant::now());
        link.conn.as_mut().expect("dispatch checked").send(out);
    }

    /// `WAIT` after this node's pipeline: when replicas are asked for and it holds puts.
    fn wait_after(&self, np: &NodePlan) -> Option<(usize, Duration)> {
        let wait = self.shared.config.wait_replicas?;
        np.steps
            .iter()
            .any(|s| matches!(s.command, Command::Set { .. }))
            .then_some(wait)
    }

    /// Flushes pending writes and reads what readable links have; never waits.
    fn exchange(&mut self) {
        for i in 0..self.links.len() {
            let link = &mut self.links[i];
            let Some(conn) = link.conn.as_mut() else { continue };
            if conn.wants_write()
                && let Err(e) = conn.flush()
            {
                self.fail_link(i, e);
                continue;
            }
            if link.readable && !link.owed.is_empty() {
                self.read_link(i);
            }
        }
    }

    /// Reads and settles every reply link `i` has received so far.
    fn read_link(&mut self, i: usize) {
        let cluster = self.map.is_cluster();
        let node = self.links[i].node.clone();
        loop {
            let link = &mut self.links[i];
            let (Some(conn), Some(front)) = (link.conn.as_mut(), link.owed.front()) else {
                break;
            };
            let before = conn.last_io();
            let result = conn.read(&front.expect);
            if link.silent && conn.last_io() != before {
                // It speaks again after a silence: it may have been replaced meanwhile (a frozen primary still
                // acknowledges writes the moment it wakes). Its answers wait for a slot map read from now on.
                link.silent = false;
                if cluster {
                    log::info!("{node} answers again after a silence; its answers wait for a slot map check");
                    link.unconfirmed_since.get_or_insert_with(Instant::now);
                    self.shared.topology.request_refresh();
                }
            }
            match result {
                Ok(None) => {
                    link.readable = false;
                    break;
                }
                Ok(Some(reply)) => {
                    let sent = link.owed.pop_front().expect("front");
                    self.moved = true;
                    self.on_reply(i, &node, sent, reply);
                }
                Err(e) => {
                    self.fail_link(i, e);
                    return;
                }
            }
        }
        let link = &mut self.links[i];
        if link.owed.is_empty() {
            link.sent_at = None;
            link.marked = false;
            // The node is free for the keys that waited for it.
            self.replan |= !self.ready.is_empty();
        }
    }

    fn on_reply(&mut self, i: usize, node: &str, sent: Sent, reply: Reply) {
        match sent.what {
            What::Asking => {
                if let Reply::Scalar(Head::Error(e)) = reply {
                    log::debug!("{node} refused ASKING: {} {}", e.code, e.detail);
                }
            }
            What::Wait { replicas } => {
                let acked = match reply {
                    Reply::Scalar(Head::Int(n)) => Ok(n.max(0) as usize),
                    Reply::Scalar(Head::Error(e)) => Err(e),
                    other => {
                        return self.fail_link(i, Error::protocol(node, format!("WAIT: {other:?}")));
                    }
                };
                let deferred = std::mem::take(&mut self.links[i].deferred);
                for (unit, answer) in deferred {
                    let answer = match (answer, &acked) {
                        (Ok(_), Ok(n)) if *n < replicas => Err(Refusal::Local(Error::NotReplicated {
                            node: node.to_string(),
                            acked: *n,
                            wanted: replicas,
                        })),
                        (Ok(_), Err(e)) => Err(Refusal::Local(e.clone().into_error(node))),
                        (answer, _) => answer,
                    };
                    self.settle(i, unit, answer);
                }
            }
            What::Step { command, units } => {
                let mut corrupt = 0;
                let answers = command::answers(command, units.len(), reply, node, &mut corrupt);
                Counters::add(&self.shared.stats.corrupt, corrupt);
                match answers {
                    Err(e) => {
                        // Out of step: these units go down with the connection's other ones.
                        self.links[i].owed.push_front(Sent {
                            what: What::Step { command, units },
                            expect: Expect::Scalar,
                        });
                        self.fail_link(i, e);
                    }
                    Ok(Answers::OneByOne { code }) => {
                        let retry = usize::from(code == "TRYAGAIN");
                        Counters::add(&self.shared.stats.retries, retry as u64);
                        self.ready.extend(units.into_iter().map(|u| Unit {
                            alone: true,
                            retries: u.retries + retry,
                            ..u
                        }));
                        self.replan = true;
                    }
                    Ok(Answers::Keys(answers)) => {
                        let link = &mut self.links[i];
                        let defer = matches!(command, Command::Set { .. })
                            && matches!(
                                link.owed.back(),
                                Some(Sent {
                                    what: What::Wait { .. },
                                    ..
                                })
                            );
                        if defer {
                            link.deferred.extend(units.into_iter().zip(answers));
                        } else {
                            for (unit, answer) in units.into_iter().zip(answers) {
                                self.settle(i, unit, answer);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Acts on one key's answer from the node of link `i`: final, or a resend.
    fn settle(&mut self, i: usize, unit: Unit, answer: Answer) {
        if !self.active.live(&unit) {
            return;
        }
        let node = &*self.links[i].node;
        let config = &self.shared.config;
        let limits = settle::Limits {
            max_redirects: config.max_redirects,
            max_retries: config.max_retries,
        };
        let decision = settle::decide(answer, &unit, limits, node);
        let unconfirmed = self.links[i]
            .unconfirmed_since
            .map(|since| (since, self.links[i].node.clone()));
        let stats = &self.shared.stats;
        match &decision {
            Decision::Final(_) => {}
            Decision::Moved { slot, node: to } => {
                Counters::add(&stats.moved, 1);
                self.shared.topology.apply_moved(*slot, to);
                self.shared.topology.request_refresh();
            }
            Decision::Ask { .. } => Counters::add(&stats.asked, 1),
            Decision::Retry { .. } => Counters::add(&stats.retries, 1),
        }
        match decision {
            Decision::Final(result) => {
                match unconfirmed {
                    // Sent to that very node on purpose (ASK, PING): nothing to confirm.
                    Some((since, node)) if unit.to.is_none() => self.unconfirmed.push(Unconfirmed {
                        unit,
                        result,
                        node: node.to_string(),
                        since,
                    }),
                    _ => self.finish(&unit, result),
                }
            }
            Decision::Retry { after } => {
                let next = settle::resend(&unit, &Decision::Retry { after });
                self.delayed.push((Instant::now() + after, next));
            }
            resend => {
                self.ready.push(settle::resend(&unit, &resend));
                self.replan = true;
            }
        }
    }

    fn finish(&mut self, unit: &Unit, result: Result<KeyReply>) {
        if let Some(done) = self.active.finish(unit, result, &self.shared) {
            self.moved = true;
            self.part_done(done.priority, done.bytes);
        }
    }

    /// A part taken from the queue is answered.
    fn part_done(&mut self, priority: Priority, bytes: usize) {
        if priority == Priority::Put {
            self.inbox.put_done(bytes);
        }
    }

    /// Drops `node`'s connection after `err`; what it owed is resent once on a fresh connection when the failed
    /// one had been reused (it may simply have gone stale; every command sent is idempotent), else failed.
    fn fail_link(&mut self, i: usize, err: Error) {
        let link = &mut self.links[i];
        let units: Vec<Unit> = link.units().cloned().collect();
        let reused = link.reused;
        link.reset();
        if units.iter().any(|u| self.active.live(u)) {
            log::warn!("{err}; dropping the connection");
        }
        if self.map.is_cluster() {
            self.shared.topology.request_refresh();
        }
        self.moved = true;
        for unit in units {
            if !self.active.live(&unit) {
                continue;
            }
            if reused && !unit.io_retried && !err.is_timeout() {
                Counters::add(&self.shared.stats.io_retries, 1);
                self.ready.push(Unit {
                    io_retried: true,
                    ..unit
                });
                self.replan = true;
            } else {
                self.finish(&unit, Err(err.clone()));
            }
        }
    }

    /// Answers every unit whose part's deadline has passed, marking down a node that stayed silent until then,
    /// and drops connections whose replies nobody waits for any more (a late reply must never be read as the
    /// answer to a later request).
    fn expire(&mut self, now: Instant) {
        if self.active.next_deadline().is_none_or(|d| d > now) {
            return;
        }
        let expired: HashSet<(usize, u32)> = self
            .active
            .expired(now)
            .iter()
            .map(|u| (u.part, u.generation))
            .collect();
        let silence = self.shared.config.silence_timeout;
        let mut timed_out = Vec::new();
        for link in &mut self.links {
            let mine: Vec<Unit> = link
                .units()
                .filter(|u| expired.contains(&(u.part, u.generation)) && self.active.live(u))
                .cloned()
                .collect();
            if mine.is_empty() {
                continue;
            }
            let quiet = now.duration_since(link.last_progress());
            let down = !link.marked && link.conn.is_some() && quiet >= silence;
            link.marked |= down;
            timed_out.push((link.node.clone(), mine, down.then_some(quiet)));
        }
        for (node, units, down) in timed_out {
            let err = Error::Timeout {
                node: Some(node.to_string()),
            };
            if let Some(quiet) = down {
                // Not a byte for that long: the server is stalled. Marked down, so that other requests fail at
                // once instead of each waiting out its deadline; a probe notices when it answers again.
                log::warn!("{node} sent nothing for {quiet:?}: marked down");
                if self
                    .shared
                    .health
                    .mark_down(&node, &err, &self.shared.connect, &self.shared.topology)
                {
                    Counters::add(&self.shared.stats.marked_down, 1);
                }
            }
            for unit in units {
                self.finish(&unit, Err(err.clone()));
            }
        }
        let waiting: Vec<(Unit, Option<String>)> = self
            .ready
            .iter()
            .map(|u| (u.clone(), u.to.clone()))
            .chain(self.delayed.iter().map(|(_, u)| (u.clone(), u.to.clone())))
            .chain(self.unconfirmed.iter().map(|c| (c.unit.clone(), Some(c.node.clone()))))
            .filter(|(u, _)| expired.contains(&(u.part, u.generation)))
            .collect();
        for (unit, node) in waiting {
            self.finish(&unit, Err(Error::Timeout { node }));
        }
        for unit in self.active.expired(now) {
            self.finish(&unit, Err(Error::Timeout { node: None }));
        }
        self.delayed.retain(|(_, u)| self.active.live(u));
        self.unconfirmed.retain(|c| self.active.live(&c.unit));
        for link in &mut self.links {
            if !link.owed.is_empty() && !link.units().any(|u| self.active.live(u)) {
                log::debug!(
                    "{}: every reply owed is past its deadline; dropping the connection",
                    link.node
                );
                link.reset();
            }
        }
    }

    fn release_delayed(&mut self, now: Instant) {
        if self.delayed.iter().any(|(at, _)| *at <= now) {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            self.delayed = later;
            self.ready.extend(due.into_iter().map(|(_, u)| u));
            self.replan = true;
            self.moved = true;
        }
    }

    /// Settles the answers held from nodes that were silent, once a slot map read after them says whether the
    /// node still serves their keys: if so they stand, else the keys are resent to the new owner.
    fn confirm(&mut self) {
        if self.unconfirmed.is_empty() && self.links.iter().all(|l| l.unconfirmed_since.is_none()) {
            return;
        }
        let Some(read_at) = self.shared.topology.refreshed_at() else {
            return;
        };
        // Read after `refreshed_at`: the map is at least as new as that refresh.
        let map = self.shared.topology.current();
        for link in &mut self.links {
            if link.unconfirmed_since.is_some_and(|s| s < read_at) {
                link.unconfirmed_since = None;
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unconfirmed)
            .into_iter()
            .partition(|c| c.since < read_at);
        self.unconfirmed = later;
        for c in due {
            if !self.active.live(&c.unit) {
                continue;
            }
            self.moved = true;
            let key = &crate::batch::Parts::part(&self.active, c.unit.part).keys[c.unit.key];
            if map.owns(&c.node, key) {
                self.finish(&c.unit, c.result);
            } else {
                log::info!("{} no longer serves a key it answered after a silence: resent", c.node);
                Counters::add(&self.shared.stats.rerouted, 1);
                self.ready.push(Unit {
                    to: None,
                    asking: false,
                    redirects: c.unit.redirects + 1,
                    ..c.unit
                });
                self.replan = true;
            }
        }
    }

    /// Takes a new slot map: keys waiting on a node that went silent and no longer serves them are resent to the
    /// new owner now, on a fresh connection, rather than at their deadline.
    fn follow_topology(&mut self) {
        if self.shared.topology.epoch() == self.epoch {
            return;
        }
        let (map, epoch) = self.shared.topology.current_with_epoch();
        self.map = map;
        self.epoch = epoch;
        self.replan = true;
        self.moved = true;
        for link in &mut self.links {
            let watched = link.silent || link.unconfirmed_since.is_some();
            let moved = watched
                && link.units().any(|u| {
                    u.to.is_none()
                        && self.active.live(u)
                        && !self
                            .map
                            .owns(&link.node, &crate::batch::Parts::part(&self.active, u.part).keys[u.key])
                });
            if !moved {
                continue;
            }
            let units: Vec<Unit> = link.units().filter(|u| self.active.live(u)).cloned().collect();
            log::info!(
                "{} was silent and the slot map moved its keys: {} key(s) resent to the new owner",
                link.node,
                units.len()
            );
            link.reset();
            Counters::add(&self.shared.stats.rerouted, units.len() as u64);
            self.ready.extend(units);
        }
    }

    /// Reports nodes silent past `silence_timeout`, or whose connect has hung that long (Cluster only): the slot
    /// map is then re-read from the others.
    fn watch(&mut self, now: Instant) {
        if !self.map.is_cluster() {
            return;
        }
        let silence = self.shared.config.silence_timeout;
        for link in &mut self.links {
            let node = &link.node;
            // A connect that hangs (a blackholed address) is silence too.
            if !link.busy() {
                continue;
            }
            let quiet = now.duration_since(link.last_progress());
            if quiet < silence {
                continue;
            }
            if link.conn.is_some() && !link.silent {
                link.silent = true;
                Counters::add(&self.shared.stats.silences, 1);
                log::warn!("{node} owes replies and has sent nothing for {quiet:?}: re-reading the slot map");
            }
            if link.reported.is_none_or(|at| now.duration_since(at) >= REPORT_EVERY) {
                link.reported = Some(now);
                self.shared.health.report_silent(node);
                self.shared.topology.request_refresh();
            }
        }
    }

    fn start_connect(&mut self, i: usize, deadline: Instant) {
        let now = Instant::now();
        let link = &mut self.links[i];
        let node = link.node.clone();
        link.connecting = Some(now);
        let mut opts = self.shared.connect.clone();
        opts.timeout = opts
            .timeout
            .min(deadline.saturating_duration_since(now))
            .max(Duration::from_millis(1));
        let (tx, waker, pool, name) = (
            self.connects.0.clone(),
            self.wakeup.waker(),
            self.shared.pool.clone(),
            node.to_string(),
        );
        let spawned = thread::Builder::new()
            .name("kvcache-redis-connect".into())
            .spawn(move || {
                let result = Connection::connect(&name, &opts).map(|c| c.with_pool(pool));
                let _ = tx.send(Connected {
                    node: name,
                    started: now,
                    result,
                });
                waker.wake();
            });
        if let Err(e) = spawned {
            link.connecting = None;
            self.fail_waiting(&node, &Error::io("local connect thread", e));
        }
    }

    fn collect_connects(&mut self) {
        while let Ok(c) = self.connects.1.try_recv() {
            self.moved = true;
            self.replan = true;
            let i = self.link(&c.node);
            let link = &mut self.links[i];
            link.connecting = None;
            match c.result {
                Ok(conn) => {
                    Counters::add(&self.shared.stats.connects, 1);
                    link.reset();
                    link.conn = Some(conn);
                }
                Err(e) => {
                    log::debug!("connect to {}: {e}", c.node);
                    // A connect that failed slowly (a blackholed or hung host): mark the node down, so that other
                    // workers do not wait on it too, and probe it in the background. A quick refusal is simply
                    // tried again by the next request, so a restarted server is used the moment it is back.
                    if (e.is_io() || e.is_timeout()) && c.started.elapsed() >= SLOW_CONNECT {
                        log::warn!("{} is down: {e}", c.node);
                        if self
                            .shared
                            .health
                            .mark_down(&c.node, &e, &self.shared.connect, &self.shared.topology)
                        {
                            Counters::add(&self.shared.stats.marked_down, 1);
                        }
                    }
                    if self.map.is_cluster() {
                        self.shared.topology.request_refresh();
                    }
                    self.fail_waiting(&c.node, &e);
                }
            }
        }
    }

    /// Fails the ready units that would go to `node`.
    fn fail_waiting(&mut self, node: &str, err: &Error) {
        let units = std::mem::take(&mut self.ready);
        for unit in units {
            if !self.active.live(&unit) {
                continue;
            }
            let target = match &unit.to {
                Some(to) => Some(to.as_str()),
                None => {
                    let key = &crate::batch::Parts::part(&self.active, unit.part).keys[unit.key];
                    self.map.route(key).ok().map(|(i, _)| self.map.nodes[i].as_str())
                }
            };
            if target == Some(node) {
                self.finish(&unit, Err(err.clone()));
            } else {
                self.ready.push(unit);
            }
        }
    }

    /// Sleeps until a socket is ready, a timer is due, or someone wakes this worker: parked when no socket needs
    /// watching, else in `poll`. Offers to take work first when it would take it.
    fn sleep(&mut self) {
        use rustix::event::{PollFd, PollFlags, poll};
        let now = Instant::now();
        let accepting = self.accepting(now);
        if accepting {
            self.inbox.offer();
            if self.inbox.has_work() {
                self.inbox.withdraw();
                return;
            }
        }
        let timeout = self.next_timer(now, accepting).saturating_duration_since(now);
        self.polled.clear();
        for (i, link) in self.links.iter().enumerate() {
            if link
                .conn
                .as_ref()
                .is_some_and(|c| !link.owed.is_empty() || c.wants_write())
            {
                self.polled.push(i);
            }
        }
        if self.polled.is_empty() {
            self.wakeup.park(timeout);
        } else {
            let (links, polled, wakeup) = (&mut self.links, &self.polled, &self.wakeup);
            wakeup.poll_with(|| {
                let mut fds = Vec::with_capacity(polled.len() + 1);
                fds.push(PollFd::from_borrowed_fd(wakeup.fd(), PollFlags::IN));
                for &i in polled {
                    let (link, conn) = (&links[i], links[i].conn.as_ref().expect("polled"));
                    let mut flags = PollFlags::empty();
                    if !link.owed.is_empty() {
                        flags |= PollFlags::IN;
                    }
                    if conn.wants_write() {
                        flags |= PollFlags::OUT;
                    }
                    fds.push(PollFd::from_borrowed_fd(conn.fd(), flags));
                }
                let _ = poll(&mut fds, Some(&timespec(timeout)));
                let woken = !fds[0].revents().is_empty();
                let ready: Vec<bool> = fds[1..]
                    .iter()
                    .map(|f| f.revents().intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR))
                    .collect();
                drop(fds);
                for (&i, ready) in polled.iter().zip(ready) {
                    links[i].readable |= ready;
                }
                woken
            });
        }
        if accepting {
            self.inbox.withdraw();
        }
    }

    /// The next instant something is due without any socket or wake-up: a deadline, a back-off, a link crossing
    /// a silence threshold, a silent node's next report, or a look at the slot map for held answers.
    fn next_timer(&self, now: Instant, accepting: bool) -> Instant {
        let config = &self.shared.config;
        let mut at = now + IDLE;
        let mut consider = |t: Instant| at = at.min(t);
        if let Some(d) = self.active.next_deadline() {
            consider(d);
        }
        for (t, _) in &self.delayed {
            consider(*t);
        }
        for link in self.links.iter().filter(|l| l.busy()) {
            let since = link.last_progress();
            if !accepting && self.map.nodes.len() > 1 {
                consider(since + config.stall_threshold);
            }
            if self.map.is_cluster() {
                consider(if link.silent {
                    link.reported.map_or(now, |r| r + REPORT_EVERY)
                } else {
                    since + config.silence_timeout
                });
            }
        }
        if !self.unconfirmed.is_empty() {
            consider(now + REPORT_EVERY);
        }
        at
    }
}
