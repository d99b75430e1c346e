//! The worker: its loop (here), its links to nodes (`link`), sending and reading (`exchange`), and deadlines,
//! back-offs, silent nodes, new slot maps and connects (`faults`). A worker owns one connection per node it talks to and never blocks on any of them: it takes
//! batches from the priority queue, plans them into one pipeline per node, writes, and sleeps in one `poll` on its
//! sockets and its wake-up socket until a reply, a deadline, a back-off or news wakes it.
//!
//! A node that goes silent holds up only the keys waiting on it. Each connection carries one pipeline at a time;
//! keys for a node whose pipeline is still out wait in the worker, in priority order, and go out when it is
//! answered. After `stall_threshold` of silence the worker takes other queued work (with several nodes); after
//! `silence_timeout` the node is reported silent, the slot map is re-read from the other nodes, and as soon as it
//! shows the node's slots elsewhere the keys waiting on it are resent there (every command sent is idempotent).

mod exchange;
mod faults;
mod link;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::active::Active;
use crate::connection::{Connection, timespec};
use crate::error::{Error, Result};
use crate::queue::Inbox;
use crate::request::Part;
use crate::shared::Shared;
use crate::slot_map::SlotMap;
use crate::unit::Unit;
use crate::value::KeyReply;
use crate::wake::Wakeup;
use link::Link;

/// A failed connect that took this long marks its node down (see `health`).
const SLOW_CONNECT: Duration = Duration::from_millis(100);
/// How long reads stay off a replica that went silent, refused a connection or failed.
const AVOID_REPLICA: Duration = Duration::from_secs(2);
/// A replica owing replies that sends nothing for this long (or `silence_timeout`, if shorter) is avoided for reads
/// and its reads resent to the shard's other nodes: reads need no particular node, so there is no reason to wait
/// as long as for a primary.
const REPLICA_SILENCE: Duration = Duration::from_millis(100);
/// A silent node is reported (and a refresh asked for) at most this often by one worker.
const REPORT_EVERY: Duration = Duration::from_millis(100);
/// How many times a worker that just answered callers yields the CPU to let them queue their next requests.
const YIELDS_FOR_CALLERS: usize = 3;
/// The longest a worker sleeps with nothing to wait for.
const IDLE: Duration = Duration::from_secs(1);

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
                pick: id,
                moved: false,
                answered: Vec::new(),
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
    /// Where the next read goes among a shard's nodes (see `batch::Spread`).
    pick: usize,
    /// Something happened this turn that may let more happen at once (a reply, new work): look again before
    /// sleeping.
    moved: bool,
    /// The caller threads answered this turn (woken).
    answered: Vec<u64>,
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
        self.answered.clear();
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
        if self.moved {
            self.let_answered_callers_queue();
        } else {
            self.sleep();
        }
        true
    }

    /// Callers just answered mostly queue their next request at once. A worker that answered several caller
    /// threads and has nothing left in flight lets them: it yields the CPU (a few times at most, until as many parts
    /// are queued as threads were answered) before it takes its next batch, so that batch carries their requests
    /// too: bigger pipelines, and fewer round trips and wake-ups per key. With 16 threads of single gets on two
    /// cores this took keys per round trip from 3.5 to about 5 (BENCHMARKS.md). One thread answered (one caller's
    /// batched call, even split over several parts) is not waited for: its next request would make a batch of one
    /// either way, and a yielding worker, offered to no doorbell, can lose its CPU to busy servers for a while.
    fn let_answered_callers_queue(&self) {
        let callers = self.answered.len();
        if callers > 1 && self.active.is_empty() {
            for _ in 0..YIELDS_FOR_CALLERS {
                if self.inbox.queued() >= callers {
                    break;
                }
                thread::yield_now();
            }
        }
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
                self.shared.stats.timeouts.add(1);
                Some(Error::Timeout { node: None })
            } else {
                None
            };
            if let Some(e) = refused {
                part.fail(e);
                self.part_done(priority, bytes);
                continue;
            }
            let pings = part.command.per_node().then(|| self.map.nodes.clone());
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

    /// How long `node` may owe replies without a byte before it counts as silent.
    fn silence_for(&self, node: &str) -> Duration {
        let silence = self.shared.config.silence_timeout;
        if self.map.is_replica(node) {
            silence.min(REPLICA_SILENCE)
        } else {
            silence
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
            if self.map.follows_failovers() {
                consider(if link.silent {
                    link.reported.map_or(now, |r| r + REPORT_EVERY)
                } else {
                    since + self.silence_for(&link.node)
                });
            }
        }
        if !self.unconfirmed.is_empty() {
            consider(now + REPORT_EVERY);
        }
        at
    }
}
