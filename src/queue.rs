//! The priority queue: one crossbeam channel per level, shared by every worker, and a doorbell that idle workers
//! sleep on. (Crossbeam's `Select` picks at random among ready channels, and spins and yields before it sleeps,
//! which on few cores costs more CPU per request than the request itself; so workers drain the levels in
//! priority order themselves and sleep on a condition variable.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::request::{Part, Priority};

/// A level passed over this many batches in a row while it had work queued goes first in the next batch, so a
/// steady stream of higher levels takes at most this share from a lower one.
const AGING_ROUNDS: u32 = 8;
/// How long a worker sleeps in one wait before looking again (shutdown is also noticed by disconnection).
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// The sending side, one sender per level. Dropping it is how shutdown starts.
pub(crate) struct Queues {
    senders: [Sender<Part>; 4],
    receivers: [Receiver<Part>; 4],
    /// Set when the senders go away; a worker that finds it set and the queues empty exits. (Crossbeam can only
    /// report disconnection by receiving, which would take a part.)
    closed: Arc<AtomicBool>,
    put_lanes: Arc<PutLanes>,
    doorbell: Arc<Doorbell>,
}

/// Where idle workers sleep until a part is queued.
#[derive(Default)]
struct Doorbell {
    /// Held from a worker's last look at the queues until it sleeps, so no ring falls in between.
    lock: Mutex<()>,
    ring: Condvar,
    sleepers: AtomicUsize,
}

impl Doorbell {
    /// Wakes one sleeping worker, if any sleeps: free when every worker is busy.
    fn ring(&self) {
        // Orders the queued part before the look at `sleepers` (the worker side does the opposite).
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock();
            self.ring.notify_one();
        }
    }

    fn ring_all(&self) {
        let _guard = self.lock.lock();
        self.ring.notify_all();
    }

    /// Sleeps until rung or `timeout`, unless `ready()` says there is work already.
    fn sleep(&self, ready: impl Fn() -> bool, timeout: Duration) {
        let mut guard = self.lock.lock();
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        if !ready() {
            self.ring.wait_for(&mut guard, timeout);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
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
    receivers: [Receiver<Part>; 4],
    passed_over: [u32; 4],
    closed: Arc<AtomicBool>,
    put_lanes: Arc<PutLanes>,
    /// Whether this worker's current batch holds a put lane (released when it asks for the next batch).
    holds_put_lane: bool,
    /// Bytes of the `Put` parts taken under that lane.
    put_bytes: usize,
    doorbell: Arc<Doorbell>,
}

impl Queues {
    /// Queues for `workers` workers; a second worker starts writing only while fewer than `write_bytes` are being
    /// written (and never all of them write, when there are two or more).
    pub(crate) fn new(workers: usize, write_bytes: usize) -> Queues {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..4).map(|_| crossbeam_channel::unbounded()).unzip();
        Queues {
            senders: senders.try_into().unwrap_or_else(|_| unreachable!()),
            receivers: receivers.try_into().unwrap_or_else(|_| unreachable!()),
            closed: Arc::new(AtomicBool::new(false)),
            put_lanes: Arc::new(PutLanes {
                busy: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
                max_workers: workers.saturating_sub(1).max(1),
                max_bytes: write_bytes,
            }),
            doorbell: Arc::default(),
        }
    }

    pub(crate) fn inbox(&self) -> Inbox {
        Inbox {
            receivers: self.receivers.clone(),
            passed_over: [0; 4],
            closed: self.closed.clone(),
            put_lanes: self.put_lanes.clone(),
            holds_put_lane: false,
            put_bytes: 0,
            doorbell: self.doorbell.clone(),
        }
    }

    /// Queues a part at its level. Fails only when every worker is gone.
    pub(crate) fn send(&self, part: Part) -> Result<(), crate::Error> {
        self.senders[part.priority.index()]
            .send(part)
            .map_err(|_| crate::Error::WorkerLost)?;
        self.doorbell.ring();
        Ok(())
    }

    /// Parts waiting at all levels.
    pub(crate) fn len(&self) -> usize {
        self.senders.iter().map(Sender::len).sum()
    }
}

impl Inbox {
    /// Waits for work and takes a batch of at most about `max_keys` keys and `max_bytes` bytes (the part that
    /// crosses a bound is kept, so at least one part is always taken), highest level first. `None` once the
    /// queues are disconnected and empty: the client is closed and everything queued has been taken.
    pub(crate) fn next_batch(&mut self, max_keys: usize, max_bytes: usize) -> Option<Vec<Part>> {
        self.release_put_lane();
        loop {
            // Read before draining: once set, nothing more can arrive, so an empty drain means done.
            let closed = self.closed.load(Ordering::Acquire);
            let batch = self.drain(max_keys, max_bytes);
            if !batch.is_empty() {
                return Some(batch);
            }
            if closed {
                return None;
            }
            // Without a free put lane, queued writes are not work for this worker; it looks again when rung or
            // after IDLE_WAIT.
            let levels = if self.put_lane_free() { 4 } else { Priority::Put.index() };
            let receivers = &self.receivers[..levels];
            let closed = &self.closed;
            self.doorbell.sleep(
                || closed.load(Ordering::Acquire) || receivers.iter().any(|r| !r.is_empty()),
                IDLE_WAIT,
            );
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
            while keys < max_keys && bytes < max_bytes {
                match self.receivers[level].try_recv() {
                    Ok(part) => {
                        keys += part.keys.len().max(1);
                        bytes += part.bytes;
                        if level == Priority::Put.index() {
                            self.put_bytes += part.bytes;
                            self.put_lanes.bytes.fetch_add(part.bytes, Ordering::AcqRel);
                        }
                        taken[level] = true;
                        batch.push(part);
                    }
                    Err(_) => continue 'levels,
                }
            }
            break;
        }
        if !taken[Priority::Put.index()] {
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
        }
        self.holds_put_lane
    }

    fn release_put_lane(&mut self) {
        if std::mem::take(&mut self.holds_put_lane) {
            self.put_lanes
                .bytes
                .fetch_sub(std::mem::take(&mut self.put_bytes), Ordering::AcqRel);
            self.put_lanes.busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.release_put_lane();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Kind, Priority};
    use bytes::Bytes;
    use std::time::Instant;

    fn part(priority: Priority, n: usize) -> Part {
        Part {
            kind: Kind::Get,
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
        }
    }

    #[test]
    fn higher_levels_come_first_within_bounds() {
        let q = Queues::new(1, 8 << 20);
        let mut inbox = q.inbox();
        for p in [Priority::Put, Priority::Get, Priority::Peek, Priority::Prefetch] {
            q.send(part(p, 1)).unwrap();
        }
        assert_eq!(q.len(), 4);
        let batch = inbox.next_batch(2, usize::MAX).unwrap();
        let got: Vec<_> = batch.iter().map(|p| p.priority).collect();
        assert_eq!(got, vec![Priority::Peek, Priority::Prefetch]);
        assert_eq!(q.len(), 2);
        let batch = inbox.next_batch(100, usize::MAX).unwrap();
        let got: Vec<_> = batch.iter().map(|p| p.priority).collect();
        assert_eq!(got, vec![Priority::Get, Priority::Put]);
    }

    #[test]
    fn a_starved_level_gets_a_bounded_share() {
        let q = Queues::new(1, 8 << 20);
        let mut inbox = q.inbox();
        q.send(part(Priority::Put, 1)).unwrap();
        let mut batches = 0;
        loop {
            q.send(part(Priority::Peek, 1)).unwrap();
            let batch = inbox.next_batch(1, usize::MAX).unwrap();
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
        let q = Queues::new(3, 8 << 20);
        let (mut a, mut b, mut c) = (q.inbox(), q.inbox(), q.inbox());
        for _ in 0..5 {
            q.send(part(Priority::Put, 1)).unwrap();
        }
        assert_eq!(a.next_batch(1, usize::MAX).unwrap()[0].priority, Priority::Put);
        assert_eq!(b.next_batch(1, usize::MAX).unwrap()[0].priority, Priority::Put);
        // Never all three workers: the third takes only higher levels while a and b write.
        assert!(c.drain(1, usize::MAX).is_empty());
        q.send(part(Priority::Peek, 1)).unwrap();
        assert_eq!(c.next_batch(1, usize::MAX).unwrap()[0].priority, Priority::Peek);
        // a asks for more: it gives its lane back and takes it again.
        assert_eq!(a.next_batch(1, usize::MAX).unwrap()[0].priority, Priority::Put);
        drop(b);
        assert_eq!(c.next_batch(1, usize::MAX).unwrap()[0].priority, Priority::Put);
    }

    #[test]
    fn a_second_writer_starts_only_under_the_byte_budget() {
        let q = Queues::new(4, 10);
        let (mut a, mut b, mut c) = (q.inbox(), q.inbox(), q.inbox());
        let big = |n| part(Priority::Put, n); // `part` makes parts of n keys and n bytes
        q.send(big(8)).unwrap();
        q.send(big(8)).unwrap();
        q.send(big(1)).unwrap();
        assert_eq!(a.next_batch(1, usize::MAX).unwrap()[0].bytes, 8);
        // 8 bytes in flight, under the budget of 10: a second writer may start.
        assert_eq!(b.next_batch(1, usize::MAX).unwrap()[0].bytes, 8);
        // 16 bytes in flight: no third, although a worker is free.
        assert!(c.drain(1, usize::MAX).is_empty());
        drop(a);
        drop(b);
        assert_eq!(c.next_batch(1, usize::MAX).unwrap()[0].bytes, 1);
    }

    #[test]
    fn closed_and_empty_ends_the_worker() {
        let q = Queues::new(1, 8 << 20);
        let mut inbox = q.inbox();
        q.send(part(Priority::Get, 1)).unwrap();
        drop(q);
        assert_eq!(inbox.next_batch(10, 10).map(|b| b.len()), Some(1));
        assert!(inbox.next_batch(10, 10).is_none());
    }
}
