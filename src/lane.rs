//! The direct lane: small reads of a one-primary deployment (standalone, or Sentinel reading from the primary),
//! carried by the calling threads themselves instead of being handed to a worker and back.
//!
//! Each lane is one connection of its own and a queue, combined by whoever finds them idle. A caller that finds no
//! round trip in flight takes the connection and sends its keys itself; callers that come meanwhile queue theirs.
//! When a round trip's reply is read, the queued keys go out at once in one `MGET`, and the first of their callers
//! is woken to read its reply (leader and followers): the common case costs the first caller no hand-off at all,
//! and the others one wake-up each, where the worker path costs a wake-up each way plus the worker's own.
//!
//! Lanes are used only by read calls that start while other read calls are in progress (see `Lanes::reading`).
//!
//! The lane gives only plain answers, a value or a miss. Anything else (no connection yet, an error reply, a
//! connection lost, a reply slower than `stall_threshold`, a node marked down, a new slot map) sends the calls it
//! holds to the workers, which have every fault path (reads are idempotent, so sending again is safe); after a
//! fault the lane stays off for a while. Priorities are untouched: the lane serves reads on a connection of its
//! own, and queued work of every level goes to the workers as before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::command::{self, Answers, Command};
use crate::config::ReadFrom;
use crate::connection::{Connection, connect_in_background};
use crate::reader::Expect;
use crate::resp::Outgoing;
use crate::shared::Shared;
use crate::value::KeyReply;

/// Lanes per client. Two measured best with 16 caller threads on two cores: one round trip in flight leaves the
/// server idle while the next caller is woken; three or four carry fewer keys per round trip (BENCHMARKS.md).
pub(crate) const LANES: usize = 2;
/// Most keys one call may bring to the lane; larger calls are batches the workers plan better.
pub(crate) const MAX_CALL_KEYS: usize = 16;
/// Values expected larger than this are read by the workers (pooled buffers, the memory budget).
pub(crate) const MAX_VALUE: usize = 64 << 10;
/// Most keys in one of the lane's round trips.
const MAX_ROUND_TRIP_KEYS: usize = 256;
/// How long the lane stays off after a fault (the workers carry everything meanwhile).
const PAUSE: Duration = Duration::from_secs(1);
/// An idle connection older than this is checked for bytes nobody asked for before it is used again.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// The lanes of one client, each a connection of its own. See the module docs.
pub(crate) struct Lanes {
    lanes: Vec<Lane>,
    /// Read calls in progress, whichever way they go.
    reading: AtomicUsize,
}

/// One read call in progress (see [`Lanes::reading`]).
pub(crate) struct Reading<'a> {
    count: &'a AtomicUsize,
    others: bool,
}

impl Reading<'_> {
    /// Whether other read calls were in progress when this one started.
    pub(crate) fn with_others(&self) -> bool {
        self.others
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lanes {
    pub(crate) fn new(count: usize) -> Lanes {
        Lanes {
            lanes: (0..count)
                .map(|index| Lane {
                    index,
                    state: Mutex::new(State::default()),
                })
                .collect(),
            reading: AtomicUsize::new(0),
        }
    }

    /// Counts a read call until the guard is dropped. The lanes are used only by calls that start while others
    /// are in progress: they save the hand-off when callers would queue behind each other at the workers. A lone
    /// caller keeps the worker path, which recovers from faults on its own connections at once (a reset retried
    /// on a fresh connection, a timed-out connection dropped), where a lane would first wait out
    /// `stall_threshold`; and a client used by one thread opens no lane connections.
    pub(crate) fn reading(&self) -> Reading<'_> {
        let before = self.reading.fetch_add(1, Ordering::AcqRel);
        Reading {
            count: &self.reading,
            others: before > 0,
        }
    }

    /// Reads `keys` through a lane: one reply per key (a value or a miss), or `None` when the workers must carry
    /// the call. A caller takes the first idle lane, starting from its own (by thread); when all are busy it queues
    /// in its own.
    pub(crate) fn get(&self, shared: &Arc<Shared>, keys: &[Bytes], deadline: Instant) -> Option<Vec<KeyReply>> {
        let n = self.lanes.len();
        if n == 0 {
            return None;
        }
        let own = crate::request::caller_id() as usize % n;
        for k in 0..n {
            if let Some(done) = self.lanes[(own + k) % n].enter(shared, keys, deadline, false) {
                return done;
            }
        }
        self.lanes[own].enter(shared, keys, deadline, true).flatten()
    }
}

/// One lane.
struct Lane {
    index: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The slot map epoch the lane was set up for; a new map sets it up again.
    epoch: Option<u64>,
    /// The node the lane reads from; `None` when the deployment is not one the lane serves.
    node: Option<Arc<str>>,
    /// Changes whenever the lane is set up again or fails: a round trip of an older generation does not give its
    /// connection back.
    generation: u64,
    /// The connection, when no round trip is in flight.
    idle: Option<(Connection, Instant)>,
    connecting: bool,
    /// A round trip is in flight: newcomers queue.
    leading: bool,
    queue: Vec<Arc<Waiter>>,
    queued_keys: usize,
    off_until: Option<Instant>,
}

/// One call waiting in the lane.
struct Waiter {
    keys: Vec<Bytes>,
    /// The call's deadline.
    deadline: Instant,
    outcome: Mutex<Option<Outcome>>,
    /// The caller's thread, unparked when an outcome is set: a wake-up costs a system call only when the caller
    /// sleeps (a condition variable's notify costs one every time).
    thread: Thread,
}

enum Outcome {
    /// One reply per key.
    Answered(Vec<KeyReply>),
    /// To the workers.
    Fallback,
    /// The waiter's keys went out in `batch`: read its reply (and answer everyone in it).
    Read(Box<Batch>),
}

/// One round trip in flight: its callers (in `MGET` order), and the connection it was written on.
struct Batch {
    waiters: Vec<Arc<Waiter>>,
    conn: Connection,
    node: Arc<str>,
    generation: u64,
    keys: usize,
    /// The reply is given up on (and the batch sent to the workers) after this.
    deadline: Instant,
    /// Whether `deadline` is the stall threshold's rather than a caller's: a reply missing a caller's deadline
    /// says nothing of the node, and does not turn the lane off.
    by_stall: bool,
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters the lane with `keys`: `Some` with one reply per key (a value or a miss), `Some(None)` when the
    /// workers must carry the call (nothing of it is then left in the lane), `None` when the lane is busy or not
    /// connected and `queue` is false.
    fn enter(
        &self,
        shared: &Arc<Shared>,
        keys: &[Bytes],
        deadline: Instant,
        queue: bool,
    ) -> Option<Option<Vec<KeyReply>>> {
        let now = Instant::now();
        let mut s = self.lock();
        let epoch = shared.topology.epoch();
        if s.epoch != Some(epoch) {
            s.set_up(shared, epoch);
        }
        let Some(node) = s.node.clone() else { return Some(None) };
        if s.off_until.is_some_and(|t| now < t) || !shared.health.calm(&node) {
            return Some(None);
        }
        let waiter = || {
            Arc::new(Waiter {
                keys: keys.to_vec(),
                deadline,
                outcome: Mutex::new(None),
                thread: std::thread::current(),
            })
        };
        if s.leading {
            if !queue {
                return None;
            }
            if s.queued_keys + keys.len() > MAX_ROUND_TRIP_KEYS {
                return Some(None);
            }
            let me = waiter();
            s.queued_keys += keys.len();
            s.queue.push(me.clone());
            drop(s);
            return Some(self.follow(shared, &me));
        }
        let Some((conn, since)) = s.idle.take() else {
            if !s.connecting {
                s.connecting = connect(shared, self.index, node, s.generation);
            }
            return queue.then_some(None);
        };
        // Something arrived that nobody asked for (or the server closed an idle connection): not this one.
        if now.duration_since(since) >= IDLE_CHECK && conn.has_unread() {
            conn.abort();
            s.connecting = connect(shared, self.index, node, s.generation);
            return queue.then_some(None);
        }
        s.leading = true;
        let generation = s.generation;
        drop(s);
        let me = waiter();
        match Batch::send(vec![me.clone()], conn, node, generation, shared.config.stall_threshold) {
            Ok(batch) => self.read(shared, batch),
            Err(waiters) => self.fail(waiters),
        }
        Some(me.take())
    }

    /// Waits in the queue: for the answers, for the workers, or to read the round trip this caller's keys went in.
    fn follow(&self, shared: &Arc<Shared>, me: &Arc<Waiter>) -> Option<Vec<KeyReply>> {
        loop {
            // Bounded: whoever holds this waiter answers it within one round trip's deadline (or fails it).
            // A park may end early (an earlier unpark of this thread, or none at all): look again.
            let outcome = loop {
                if let Some(o) = me.outcome.lock().unwrap_or_else(PoisonError::into_inner).take() {
                    break o;
                }
                std::thread::park();
            };
            match outcome {
                Outcome::Answered(replies) => return Some(replies),
                Outcome::Fallback => return None,
                Outcome::Read(batch) => self.read(shared, *batch),
            }
        }
    }

    /// Reads `batch`'s reply, sends what queued meanwhile, and answers the batch's callers.
    fn read(&self, shared: &Arc<Shared>, batch: Batch) {
        let Batch {
            waiters,
            mut conn,
            node,
            generation,
            keys,
            deadline,
            by_stall,
        } = batch;
        // Whatever happens from here (a panic included), every waiter of the batch is answered.
        let mut held = Held {
            lane: self,
            waiters,
            pause: true,
        };
        let Some(replies) = receive(shared, &mut conn, &node, keys, deadline) else {
            conn.abort();
            // A caller's own short deadline, not the node's silence: the lane stays on (with a new connection).
            held.pause = by_stall || Instant::now() < deadline;
            return;
        };
        let outcomes = split(shared, &held.waiters, replies);
        // The next round trip goes out before anyone is answered: the server gets work at once.
        let mut handoff = None;
        let mut s = self.lock();
        if s.generation != generation || conn.buffered() > 0 {
            // A new slot map, or bytes nobody asked for: the connection goes, and with it what queued.
            let queued = s.give_up();
            drop(s);
            answer_all(&queued, || Outcome::Fallback);
        } else if s.queue.is_empty() {
            s.leading = false;
            s.idle = Some((conn, Instant::now()));
            drop(s);
        } else {
            let next = std::mem::take(&mut s.queue);
            s.queued_keys = 0;
            drop(s);
            match Batch::send(next, conn, node, generation, shared.config.stall_threshold) {
                Ok(batch) => handoff = Some(batch),
                Err(next) => self.fail(next),
            }
        }
        for (w, outcome) in std::mem::take(&mut held.waiters).iter().zip(outcomes) {
            w.answer(outcome);
        }
        // The reader of the next round trip is woken last: by then its reply has often arrived, and it reads at
        // once instead of going back to sleep until it does.
        if let Some(batch) = handoff {
            let first = batch.waiters[0].clone();
            first.answer(Outcome::Read(Box::new(batch)));
        }
    }

    /// Sends `waiters` and everything queued to the workers, and turns the lane off for a while.
    fn fail(&self, waiters: Vec<Arc<Waiter>>) {
        self.give_up(waiters, true);
    }

    /// Sends `waiters` and everything queued to the workers; the connection in use is not given back. With
    /// `pause`, the lane is off for a while.
    fn give_up(&self, waiters: Vec<Arc<Waiter>>, pause: bool) {
        let queued = {
            let mut s = self.lock();
            if pause {
                s.off_until = Some(Instant::now() + PAUSE);
            }
            s.give_up()
        };
        answer_all(&waiters, || Outcome::Fallback);
        answer_all(&queued, || Outcome::Fallback);
    }
}

/// The waiters of a batch being read: sent to the workers if they are not answered otherwise.
struct Held<'a> {
    lane: &'a Lane,
    waiters: Vec<Arc<Waiter>>,
    /// Whether failing them turns the lane off for a while.
    pause: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if !self.waiters.is_empty() {
            self.lane.give_up(std::mem::take(&mut self.waiters), self.pause);
        }
    }
}

fn answer_all(waiters: &[Arc<Waiter>], outcome: impl Fn() -> Outcome) {
    for w in waiters {
        w.answer(outcome());
    }
}

impl State {
    /// Ends the round trip in flight without giving its connection back (the next caller connects again); returns
    /// what queued meanwhile, for the workers.
    fn give_up(&mut self) -> Vec<Arc<Waiter>> {
        self.leading = false;
        self.generation += 1;
        self.queued_keys = 0;
        std::mem::take(&mut self.queue)
    }

    /// Sets the lane up for the slot map of `epoch`: reads from its one primary, when the deployment has one and
    /// reads go to primaries; otherwise the lane stays unused until the next map.
    fn set_up(&mut self, shared: &Shared, epoch: u64) {
        let map = shared.topology.current();
        let node = (shared.config.direct_reads && !map.is_cluster() && shared.config.read_from == ReadFrom::Primary)
            .then(|| map.nodes.first().map(|n| Arc::<str>::from(n.as_str())))
            .flatten();
        if node != self.node {
            self.node = node;
            self.idle = None;
            self.generation += 1;
        }
        self.epoch = Some(epoch);
    }
}

impl Waiter {
    fn answer(&self, outcome: Outcome) {
        *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
        self.thread.unpark();
    }

    /// The outcome its own round trip left (the caller read it, so it is there).
    fn take(&self) -> Option<Vec<KeyReply>> {
        match self.outcome.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(Outcome::Answered(replies)) => Some(replies),
            _ => None,
        }
    }
}

impl Batch {
    /// Writes one `MGET` (a `GET` for one key) of every waiter's keys. Its reply is waited for `stall`, or until
    /// the earliest of the waiters' deadlines.
    fn send(
        waiters: Vec<Arc<Waiter>>,
        mut conn: Connection,
        node: Arc<str>,
        generation: u64,
        stall: Duration,
    ) -> std::result::Result<Batch, Vec<Arc<Waiter>>> {
        let earliest = waiters.iter().map(|w| w.deadline).min().expect("a batch has a waiter");
        let stalled = Instant::now() + stall;
        let (deadline, by_stall) = if stalled <= earliest {
            (stalled, true)
        } else {
            (earliest, false)
        };
        let all: Vec<&[u8]> = waiters.iter().flat_map(|w| w.keys.iter().map(|k| &k[..])).collect();
        let keys = all.len();
        let mut out = Outgoing::default();
        command::encode(Command::Get, &command::Args::keys(all), &mut out);
        match conn.write_all(out, deadline) {
            Ok(()) => Ok(Batch {
                waiters,
                conn,
                node,
                generation,
                keys,
                deadline,
                by_stall,
            }),
            Err(_) => {
                conn.abort();
                Err(waiters)
            }
        }
    }
}

/// Reads the reply to a `GET` / `MGET` of `keys` keys: a plain answer per key, `None` for a key the server
/// refused (the connection is still in step); `None` for the whole when the connection is not (nothing in time,
/// an I/O error, a reply that does not fit).
fn receive(
    shared: &Shared,
    conn: &mut Connection,
    node: &str,
    keys: usize,
    deadline: Instant,
) -> Option<Vec<Option<KeyReply>>> {
    let expect = if keys == 1 {
        Expect::Bulk { verify: false }
    } else {
        Expect::Bulks { n: keys, verify: false }
    };
    let reply = conn.receive(&expect, deadline).ok()?;
    let mut corrupt = 0;
    let replies: Vec<Option<KeyReply>> = match command::answers(Command::Get, keys, reply, node, &mut corrupt).ok()? {
        Answers::Keys(answers) => answers.into_iter().map(std::result::Result::ok).collect(),
        Answers::OneByOne { .. } => (0..keys).map(|_| None).collect(),
    };
    shared.stats.round_trip(node, 1, keys as u64);
    Some(replies)
}

/// Cuts one reply per key into each waiter's share, in `MGET` order: a waiter with a key the server refused goes
/// to the workers whole (they know what each refusal means).
fn split(shared: &Shared, waiters: &[Arc<Waiter>], replies: Vec<Option<KeyReply>>) -> Vec<Outcome> {
    let stats = &shared.stats;
    let mut replies = replies.into_iter();
    waiters
        .iter()
        .map(|w| {
            let mine: Option<Vec<KeyReply>> = replies.by_ref().take(w.keys.len()).collect();
            let Some(mine) = mine else { return Outcome::Fallback };
            for r in &mine {
                stats.keys.add(1);
                stats.direct_keys.add(1);
                match r {
                    KeyReply::Value(Some(v)) => {
                        stats.hits.add(1);
                        stats.bytes_read.add(v.len() as u64);
                        shared.learn_value_size(v.len());
                    }
                    _ => stats.misses.add(1),
                }
            }
            Outcome::Answered(mine)
        })
        .collect()
}

/// Connects the lane to `node` on a thread of its own (a connect to a partitioned host hangs); the connection
/// is kept only if the lane still reads from `node` in the same generation. Returns whether the connect started.
/// Called with the lane's lock held: takes no lock itself.
fn connect(shared: &Arc<Shared>, lane: usize, node: Arc<str>, generation: u64) -> bool {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let started = connect_in_background(
        node.to_string(),
        shared.connect.clone(),
        shared.pool.clone(),
        "kvcache-redis-lane",
        move |result| {
            let Some(shared) = weak.upgrade() else { return };
            let mut s = shared.lanes.lanes[lane].lock();
            s.connecting = false;
            match result {
                Ok(conn) if s.generation == generation && s.node.as_ref() == Some(&node) => {
                    s.idle = Some((conn, Instant::now()));
                }
                Ok(_) => {}
                Err(e) => {
                    log::debug!("{node}: the direct lane could not connect ({e}); reads go through the workers");
                    s.off_until = Some(Instant::now() + PAUSE);
                }
            }
        },
    );
    started.is_ok()
}
