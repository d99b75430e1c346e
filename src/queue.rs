//! The priority queue: one crossbeam channel per level, shared by every worker, and a doorbell that wakes a worker
//! offering to take work. (Crossbeam's `Select` picks at random among ready channels, and spins and yields before
//! it sleeps, which on few cores costs more CPU per request than the request itself; so workers drain the levels
//! in priority order themselves, and sleep in `poll` on their sockets and their wake-up socket.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::error::Error;
use crate::request::{Part, Priority};
use crate::wake::Waker;

/// A level passed over this many batches in a row while it had work queued goes first in the next batch, so a
/// steady stream of higher levels takes at most this share from a lower one.
const AGING_ROUNDS: u32 = 8;
/// The fewest `Put` parts a batch takes when that many are queued, whatever their size (see `drain`).
const PUTS_IN_A_ROW: usize = 2;
/// The sending side, one sender per level. Dropping it is how shutdown starts.
pub(crate) struct Queues {
    senders: [Sender<Part>; 4],
    receivers: [Receiver<Part>; 4],
    /// Set when the senders go away; a worker that finds it set and the queues empty takes no more work. (Crossbeam
    /// can only report disconnection by receiving, which would take a part.)
    closed: Arc<AtomicBool>,
    put_lanes: Arc<PutLanes>,
    doorbell: Arc<Doorbell>,
}

/// Wakes a worker that offered to take work.
struct Doorbell {
    /// Workers offering, the latest last (woken first: its caches are warm).
    offering: Mutex<Vec<usize>>,
    /// How many offer: when none, ringing takes no lock.
    count: AtomicUsize,
    wakers: Vec<Waker>,
    /// Which workers hold a put lane.
    holding: Vec<AtomicBool>,
    put_lanes: Arc<PutLanes>,
}

impl Doorbell {
    /// Wakes one offering worker that can take a part of `priority`, if any: free when every worker is busy. A
    /// `Put` goes to a worker holding a put lane when no lane is free (one without could not take it, and the
    /// wake-up would be lost); if none offers, the lane holders take it when their own work lets them.
    fn ring(&self, priority: Priority) {
        // Orders the queued part before the look at `count` (the worker side does the opposite).
        fence(Ordering::SeqCst);
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let lanes = &self.put_lanes;
        let holders_only = priority == Priority::Put && !lanes.admits(lanes.busy.load(Ordering::Acquire));
        let mut offering = self.offering.lock();
        let pick = offering
            .iter()
            .rposition(|&id| !holders_only || self.holding[id].load(Ordering::Acquire));
        if let Some(i) = pick {
            let id = offering.remove(i);
            self.count.store(offering.len(), Ordering::SeqCst);
            self.wakers[id].wake();
        }
    }

    fn ring_all(&self) {
        for w in &self.wakers {
            w.wake();
        }
    }
}

/// Caps the writes streaming at once. With two workers or more one is always free for higher levels, so a flood
/// of large writes delays a `Peek` by no in-flight request at all; and a second writer starts only while the
/// bytes being written are under a budget, so mid-size writes still go out over several connections while a
/// flood of huge ones leaves the server's event loop (and the CPUs) free to answer that `Peek` quickly.
struct PutLanes {
    /// Workers holding a lane.
    busy: AtomicUsize,
    /// Bytes of the `Put` parts they took.
    bytes: AtomicUsize,
    max_workers: usize,
    max_bytes: usize,
}

impl PutLanes {
    /// Whether one more worker may start writing: always when none is, else while under both caps.
    fn admits(&self, busy: usize) -> bool {
        busy == 0 || (busy < self.max_workers && self.bytes.load(Ordering::Acquire) < self.max_bytes)
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        // Runs before the senders are dropped; whoever drops this makes sure no send is in progress.
        self.closed.store(true, Ordering::Release);
        self.doorbell.ring_all();
    }
}

/// One worker's receiving side, with its aging state.
pub(crate) struct Inbox {
    id: usize,
    receivers: [Receiver<Part>; 4],
    passed_over: [u32; 4],
    closed: Arc<AtomicBool>,
    put_lanes: Arc<PutLanes>,
    /// Whether this worker holds a put lane: from taking a `Put` part until its last one is answered.
    holds_put_lane: bool,
    /// `Put` parts taken under that lane and not answered yet, and their bytes.
    put_parts: usize,
    put_bytes: usize,
    doorbell: Arc<Doorbell>,
}

impl Queues {
    /// Queues for the workers woken by `wakers`; a second worker starts writing only while fewer than
    /// `write_bytes` are being written (and never all of them write, when there are two or more).
    pub(crate) fn new(wakers: Vec<Waker>, write_bytes: usize) -> Queues {
        let workers = wakers.len();
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..4).map(|_| crossbeam_channel::unbounded()).unzip();
        let put_lanes = Arc::new(PutLanes {
            busy: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_workers: workers.saturating_sub(1).max(1),
            max_bytes: write_bytes,
        });
        Queues {
            senders: senders.try_into().unwrap_or_else(|_| unreachable!()),
            receivers: receivers.try_into().unwrap_or_else(|_| unreachable!()),
            closed: Arc::new(AtomicBool::new(false)),
            put_lanes: put_lanes.clone(),
            doorbell: Arc::new(Doorbell {
                offering: Mutex::new(Vec::with_capacity(workers)),
                count: AtomicUsize::new(0),
                wakers,
                holding: (0..workers).map(|_| AtomicBool::new(false)).collect(),
                put_lanes: put_lanes.clone(),
            }),
        }
    }

    /// The receiving side of worker `id` (the one its waker, given to `new`, wakes).
    pub(crate) fn inbox(&self, id: usize) -> Inbox {
        Inbox {
            id,
            receivers: self.receivers.clone(),
            passed_over: [0; 4],
            closed: self.closed.clone(),
            put_lanes: self.put_lanes.clone(),
            holds_put_lane: false,
            put_parts: 0,
            put_bytes: 0,
            doorbell: self.doorbell.clone(),
        }
    }

    /// Queues a part at its level. Fails only when every worker is gone.
    pub(crate) fn send(&self, part: Part) -> Result<(), Error> {
        let priority = part.priority;
        self.senders[priority.index()]
            .send(part)
            .map_err(|_| Error::WorkerLost)?;
        self.doorbell.ring(priority);
        Ok(())
    }

    /// Parts waiting at all levels.
    pub(crate) fn len(&self) -> usize {
        self.senders.iter().map(Sender::len).sum()
    }
}

impl Inbox {
    /// Takes a batch of at most about `max_keys` keys and `max_bytes` bytes (the part that crosses a bound is kept,
    /// so at least one part is taken when any is queued), highest level first; empty when nothing is queued.
    pub(crate) fn take(&mut self, max_keys: usize, max_bytes: usize) -> Vec<Part> {
        self.drain(max_keys, max_bytes)
    }

    /// Whether no more work will ever come: the client is closing and every queued part has been taken. Read
    /// before a `take` that comes back empty.
    pub(crate) fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether a `take` would find work (or the client is closing), for a worker about to sleep. Without a free put
    /// lane, queued writes are not work for this worker.
    pub(crate) fn has_work(&self) -> bool {
        let levels = if self.put_lane_free() { 4 } else { Priority::Put.index() };
        self.closed.load(Ordering::Acquire) || self.receivers[..levels].iter().any(|r| !r.is_empty())
    }

    /// Parts queued at all levels.
    pub(crate) fn queued(&self) -> usize {
        self.receivers.iter().map(Receiver::len).sum()
    }

    /// When a put waits that this worker cannot take (no put lane for it), rings a worker that can: the wake-up
    /// that brought this one here would otherwise be lost.
    pub(crate) fn pass_on(&self) {
        let put = Priority::Put.index();
        if !self.receivers[put].is_empty() && !self.put_lane_free() {
            self.doorbell.ring(Priority::Put);
        }
    }

    /// Offers this worker to the doorbell: the next part queued wakes it (unless another offered later).
    pub(crate) fn offer(&self) {
        let mut offering = self.doorbell.offering.lock();
        if !offering.contains(&self.id) {
            offering.push(self.id);
        }
        self.doorbell.count.store(offering.len(), Ordering::SeqCst);
    }

    /// Takes back an offer (whether or not the doorbell used it).
    pub(crate) fn withdraw(&self) {
        if self.doorbell.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut offering = self.doorbell.offering.lock();
        offering.retain(|&id| id != self.id);
        self.doorbell.count.store(offering.len(), Ordering::SeqCst);
    }

    /// A `Put` part of `bytes` bytes taken by this worker has been answered; the last one frees the put lane.
    pub(crate) fn put_done(&mut self, bytes: usize) {
        self.put_parts = self.put_parts.saturating_sub(1);
        self.put_bytes = self.put_bytes.saturating_sub(bytes);
        self.put_lanes.bytes.fetch_sub(bytes, Ordering::AcqRel);
        if self.put_parts == 0 {
            self.release_put_lane();
        }
    }

    fn drain(&mut self, max_keys: usize, max_bytes: usize) -> Vec<Part> {
        let mut order: Vec<usize> = (0..4).collect();
        // Starved levels first, keeping their relative order.
        order.sort_by_key(|&l| self.passed_over[l] < AGING_ROUNDS);
        let (mut batch, mut keys, mut bytes) = (Vec::new(), 0usize, 0usize);
        let mut taken = [false; 4];
        let mut put_skipped = false;
        'levels: for level in order {
            if level == Priority::Put.index() && !self.receivers[level].is_empty() && !self.take_put_lane() {
                put_skipped = true;
                continue;
            }
            let mut parts = 0;
            // Writes keep one more value queued on the connection behind the one being written, however large:
            // the server then reads the next value at once instead of after a reply and a wake-up (a 32 MiB put
            // otherwise leaves the connection idle between values). How many workers write is unchanged.
            let min_parts = if level == Priority::Put.index() {
                PUTS_IN_A_ROW
            } else {
                1
            };
            while keys < max_keys && (bytes < max_bytes || parts < min_parts) {
                match self.receivers[level].try_recv() {
                    Ok(part) => {
                        keys += part.keys.len().max(1);
                        bytes += part.bytes;
                        if level == Priority::Put.index() {
                            self.put_parts += 1;
                            self.put_bytes += part.bytes;
                            self.put_lanes.bytes.fetch_add(part.bytes, Ordering::AcqRel);
                        }
                        taken[level] = true;
                        parts += 1;
                        batch.push(part);
                    }
                    Err(_) => continue 'levels,
                }
            }
            break;
        }
        if self.put_parts == 0 {
            self.release_put_lane();
        }
        for ((passed, taken), rx) in self.passed_over.iter_mut().zip(taken).zip(&self.receivers) {
            *passed = if taken || rx.is_empty() { 0 } else { *passed + 1 };
        }
        if put_skipped {
            // Other workers are serving that level; this one did not pass it over.
            self.passed_over[Priority::Put.index()] = 0;
        }
        // Pipelines follow this order, so higher levels' replies come back first.
        batch.sort_by_key(|p| p.priority);
        batch
    }
}

impl Inbox {
    fn put_lane_free(&self) -> bool {
        self.holds_put_lane || self.put_lanes.admits(self.put_lanes.busy.load(Ordering::Acquire))
    }

    fn take_put_lane(&mut self) -> bool {
        if !self.holds_put_lane {
            let lanes = &self.put_lanes;
            let reserved = lanes.busy.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                lanes.admits(b).then_some(b + 1)
            });
            self.holds_put_lane = reserved.is_ok();
            self.doorbell.holding[self.id].store(self.holds_put_lane, Ordering::Release);
        }
        self.holds_put_lane
    }

    /// Gives the put lane back whatever is active (after a panic dropped every part).
    pub(crate) fn forget_puts(&mut self) {
        self.release_put_lane();
    }

    fn release_put_lane(&mut self) {
        if std::mem::take(&mut self.holds_put_lane) {
            self.put_lanes
                .bytes
                .fetch_sub(std::mem::take(&mut self.put_bytes), Ordering::AcqRel);
            self.put_lanes.busy.fetch_sub(1, Ordering::AcqRel);
            self.doorbell.holding[self.id].store(false, Ordering::Release);
            self.put_parts = 0;
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.withdraw();
        self.release_put_lane();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::request::Priority;
    use bytes::Bytes;
    use std::time::Instant;

    fn part(priority: Priority, n: usize) -> Part {
        Part {
            command: Command::Get,
            priority,
            keys: vec![Bytes::from_static(b"k"); n],
            values: Vec::new(),
            bytes: n,
            expected_value: 1,
            verify_frames: false,
            dests: None,
            deadline: Instant::now(),
            reply: Default::default(),
            _ticket: None,
            caller: 0,
        }
    }

    fn queues(workers: usize, write_bytes: usize) -> (Queues, Vec<crate::wake::Wakeup>) {
        let wakeups: Vec<_> = (0..workers).map(|_| crate::wake::Wakeup::new().unwrap()).collect();
        (
            Queues::new(wakeups.iter().map(|w| w.waker()).collect(), write_bytes),
            wakeups,
        )
    }

    #[test]
    fn higher_levels_come_first_within_bounds() {
        let (q, _w) = queues(1, 8 << 20);
        let mut inbox = q.inbox(0);
        for p in [Priority::Put, Priority::Get, Priority::Peek, Priority::Prefetch] {
            q.send(part(p, 1)).unwrap();
        }
        assert_eq!(q.len(), 4);
        let batch = inbox.take(2, usize::MAX);
        let got: Vec<_> = batch.iter().map(|p| p.priority).collect();
        assert_eq!(got, vec![Priority::Peek, Priority::Prefetch]);
        assert_eq!(q.len(), 2);
        let batch = inbox.take(100, usize::MAX);
        let got: Vec<_> = batch.iter().map(|p| p.priority).collect();
        assert_eq!(got, vec![Priority::Get, Priority::Put]);
        assert!(inbox.take(100, usize::MAX).is_empty());
    }

    #[test]
    fn a_starved_level_gets_a_bounded_share() {
        let (q, _w) = queues(1, 8 << 20);
        let mut inbox = q.inbox(0);
        q.send(part(Priority::Put, 1)).unwrap();
        let mut batches = 0;
        loop {
            q.send(part(Priority::Peek, 1)).unwrap();
            let batch = inbox.take(1, usize::MAX);
            batches += 1;
            if batch[0].priority == Priority::Put {
                break;
            }
            assert!(batches <= AGING_ROUNDS as usize + 1, "PUT starved");
        }
        assert_eq!(batches, AGING_ROUNDS as usize + 1);
    }

    #[test]
    fn one_worker_of_several_always_stays_free_of_puts() {
        let (q, _w) = queues(3, 8 << 20);
        let (mut a, mut b, mut c) = (q.inbox(0), q.inbox(1), q.inbox(2));
        for _ in 0..5 {
            q.send(part(Priority::Put, 1)).unwrap();
        }
        assert_eq!(a.take(1, usize::MAX)[0].priority, Priority::Put);
        assert_eq!(b.take(1, usize::MAX)[0].priority, Priority::Put);
        // Never all three workers: the third takes only higher levels while a and b write.
        assert!(!c.has_work());
        assert!(c.take(1, usize::MAX).is_empty());
        q.send(part(Priority::Peek, 1)).unwrap();
        assert!(c.has_work());
        assert_eq!(c.take(1, usize::MAX)[0].priority, Priority::Peek);
        // a's put is answered: it gives its lane back, and may take one again.
        a.put_done(1);
        assert_eq!(a.take(1, usize::MAX)[0].priority, Priority::Put);
        drop(b);
        assert_eq!(c.take(1, usize::MAX)[0].priority, Priority::Put);
    }

    #[test]
    fn a_second_writer_starts_only_under_the_byte_budget() {
        let (q, _w) = queues(4, 10);
        let (mut a, mut b, mut c) = (q.inbox(0), q.inbox(1), q.inbox(2));
        let big = |n| part(Priority::Put, n); // `part` makes parts of n keys and n bytes
        q.send(big(8)).unwrap();
        q.send(big(8)).unwrap();
        q.send(big(1)).unwrap();
        assert_eq!(a.take(1, usize::MAX)[0].bytes, 8);
        // 8 bytes in flight, under the budget of 10: a second writer may start.
        assert_eq!(b.take(1, usize::MAX)[0].bytes, 8);
        // 16 bytes in flight: no third, although a worker is free.
        assert!(c.take(1, usize::MAX).is_empty());
        a.put_done(8);
        drop(b);
        assert_eq!(c.take(1, usize::MAX)[0].bytes, 1);
    }

    #[test]
    fn the_doorbell_wakes_an_offering_worker_only() {
        let (q, w) = queues(2, 8 << 20);
        let (a, b) = (q.inbox(0), q.inbox(1));
        let woken = |i: usize| w[i].take_wakeup();
        q.send(part(Priority::Get, 1)).unwrap();
        assert!(!woken(0) && !woken(1), "nobody offered");
        a.offer();
        b.offer();
        q.send(part(Priority::Get, 1)).unwrap();
        assert!(!woken(0) && woken(1), "the latest offer is woken");
        q.send(part(Priority::Get, 1)).unwrap();
        assert!(woken(0));
        b.offer();
        b.withdraw();
        q.send(part(Priority::Get, 1)).unwrap();
        assert!(!woken(1), "a withdrawn offer is not woken");
    }

    #[test]
    fn a_put_wakes_a_worker_that_can_take_it() {
        // Two workers: one put lane. `a` holds it; `b` cannot write while it does.
        let (q, w) = queues(2, 8 << 20);
        let (mut a, b) = (q.inbox(0), q.inbox(1));
        let woken = |i: usize| w[i].take_wakeup();
        q.send(part(Priority::Put, 1)).unwrap();
        assert_eq!(a.take(1, usize::MAX).len(), 1);
        a.offer();
        b.offer();
        q.send(part(Priority::Put, 1)).unwrap();
        assert!(
            woken(0) && !woken(1),
            "the put must wake the lane holder, not the latest offer"
        );
        assert!(!b.has_work());
        q.send(part(Priority::Get, 1)).unwrap();
        assert!(woken(1), "anything else wakes the latest offer");
    }

    #[test]
    fn closed_and_empty_ends_the_worker() {
        let (q, _w) = queues(1, 8 << 20);
        let mut inbox = q.inbox(0);
        q.send(part(Priority::Get, 1)).unwrap();
        drop(q);
        assert!(inbox.closed() && inbox.has_work());
        assert_eq!(inbox.take(10, 10).len(), 1);
        assert!(inbox.take(10, 10).is_empty());
    }
}
