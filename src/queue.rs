//! The priority queue: one crossbeam channel per level, shared by every worker. Crossbeam's `Select` picks at
//! random among ready channels, so it is used only to sleep until something arrives; the order is decided here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Select, Sender};

use crate::request::Part;

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
}

impl Drop for Queues {
    fn drop(&mut self) {
        // Runs before the senders are dropped; whoever drops this makes sure no send is in progress.
        self.closed.store(true, Ordering::Release);
    }
}

/// One worker's receiving side, with its aging state.
pub(crate) struct Inbox {
    receivers: [Receiver<Part>; 4],
    passed_over: [u32; 4],
    closed: Arc<AtomicBool>,
}

impl Queues {
    pub(crate) fn new() -> Queues {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..4).map(|_| crossbeam_channel::unbounded()).unzip();
        Queues {
            senders: senders.try_into().unwrap_or_else(|_| unreachable!()),
            receivers: receivers.try_into().unwrap_or_else(|_| unreachable!()),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn inbox(&self) -> Inbox {
        Inbox {
            receivers: self.receivers.clone(),
            passed_over: [0; 4],
            closed: self.closed.clone(),
        }
    }

    /// Queues a part at its level. Fails only when every worker is gone.
    pub(crate) fn send(&self, part: Part) -> Result<(), Part> {
        self.senders[part.priority.index()]
            .send(part)
            .map_err(|e| e.into_inner())
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
            let mut sel = Select::new();
            for r in &self.receivers {
                sel.recv(r);
            }
            // Only a wake-up: the winner is chosen by `drain`, in priority order.
            let _ = sel.ready_timeout(IDLE_WAIT);
        }
    }

    fn drain(&mut self, max_keys: usize, max_bytes: usize) -> Vec<Part> {
        let mut order: Vec<usize> = (0..4).collect();
        // Starved levels first, keeping their relative order.
        order.sort_by_key(|&l| self.passed_over[l] < AGING_ROUNDS);
        let (mut batch, mut keys, mut bytes) = (Vec::new(), 0usize, 0usize);
        let mut taken = [false; 4];
        'levels: for level in order {
            while keys < max_keys && bytes < max_bytes {
                match self.receivers[level].try_recv() {
                    Ok(part) => {
                        keys += part.keys.len().max(1);
                        bytes += part.bytes;
                        taken[level] = true;
                        batch.push(part);
                    }
                    Err(_) => continue 'levels,
                }
            }
            break;
        }
        for ((passed, taken), rx) in self.passed_over.iter_mut().zip(taken).zip(&self.receivers) {
            *passed = if taken || rx.is_empty() { 0 } else { *passed + 1 };
        }
        // Pipelines follow this order, so higher levels' replies come back first.
        batch.sort_by_key(|p| p.priority);
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Kind, Priority};
    use bytes::Bytes;
    use std::time::Instant;

    fn part(priority: Priority, n: usize) -> Part {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        Part {
            kind: Kind::Get,
            priority,
            keys: vec![Bytes::from_static(b"k"); n],
            values: Vec::new(),
            bytes: n,
            expected_value: 1,
            deadline: Instant::now(),
            reply: tx,
        }
    }

    #[test]
    fn higher_levels_come_first_within_bounds() {
        let q = Queues::new();
        let mut inbox = q.inbox();
        for p in [Priority::Put, Priority::Get, Priority::Peek, Priority::Prefetch] {
            q.send(part(p, 1)).ok().unwrap();
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
        let q = Queues::new();
        let mut inbox = q.inbox();
        q.send(part(Priority::Put, 1)).ok().unwrap();
        let mut batches = 0;
        loop {
            q.send(part(Priority::Peek, 1)).ok().unwrap();
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
    fn closed_and_empty_ends_the_worker() {
        let q = Queues::new();
        let mut inbox = q.inbox();
        q.send(part(Priority::Get, 1)).ok().unwrap();
        drop(q);
        assert_eq!(inbox.next_batch(10, 10).map(|b| b.len()), Some(1));
        assert!(inbox.next_batch(10, 10).is_none());
    }
}
