//! Backpressure: the parts queued or in flight, and their bytes, are bounded. A call that finds no room waits up to
//! its deadline, or fails at once with [`Error::Overloaded`] when so configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::telemetry;

/// What is queued or in flight, against the limits.
pub(crate) struct Budget {
    /// (parts, bytes). One lock, because admission checks both together.
    used: Mutex<(usize, usize)>,
    room: Condvar,
    waiting: AtomicUsize,
    max_parts: usize,
    max_bytes: usize,
    fail_fast: bool,
}

/// One admitted part's share of the budget, given back when the part is dropped (answered and done with).
pub(crate) struct Ticket {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Budget {
    pub(crate) fn new(max_parts: usize, max_bytes: usize, fail_fast: bool) -> Arc<Budget> {
        Arc::new(Budget {
            used: Mutex::new((0, 0)),
            room: Condvar::new(),
            waiting: AtomicUsize::new(0),
            max_parts,
            max_bytes,
            fail_fast,
        })
    }

    /// Admits a part of `bytes`, waiting for room until `deadline` unless configured to fail fast. A part larger
    /// than the whole budget is admitted when nothing else is queued, so it can never wait forever.
    pub(crate) fn admit(self: &Arc<Self>, bytes: usize, deadline: Instant) -> Result<Ticket> {
        let mut used = self.used.lock();
        loop {
            let (parts, queued) = *used;
            if parts == 0 || (parts < self.max_parts && queued + bytes <= self.max_bytes) {
                *used = (parts + 1, queued + bytes);
                telemetry::in_flight(parts + 1, queued + bytes);
                return Ok(Ticket {
                    budget: self.clone(),
                    bytes,
                });
            }
            if self.fail_fast {
                return Err(Error::Overloaded(format!(
                    "{parts} parts and {queued} bytes queued or in flight; limits {} parts, {} bytes",
                    self.max_parts, self.max_bytes
                )));
            }
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let timed_out = self.room.wait_until(&mut used, deadline).timed_out();
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if timed_out {
                return Err(Error::Timeout { node: None });
            }
        }
    }

    /// (parts, bytes) queued or in flight now.
    pub(crate) fn used(&self) -> (usize, usize) {
        *self.used.lock()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock();
        used.0 -= 1;
        used.1 -= self.bytes;
        telemetry::in_flight(used.0, used.1);
        drop(used);
        if self.budget.waiting.load(Ordering::SeqCst) > 0 {
            self.budget.room.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bounds_parts_and_bytes_and_gives_back_on_drop() {
        let soon = || Instant::now() + Duration::from_millis(20);
        let b = Budget::new(3, 100, true);
        let t1 = b.admit(60, soon()).unwrap();
        assert!(matches!(b.admit(50, soon()), Err(Error::Overloaded(_))), "bytes");
        let t2 = b.admit(40, soon()).unwrap();
        assert_eq!(b.used(), (2, 100));
        drop(t1);
        let _t3 = b.admit(10, soon()).unwrap();
        let _t4 = b.admit(10, soon()).unwrap();
        assert!(matches!(b.admit(0, soon()), Err(Error::Overloaded(_))), "parts");
        drop(t2);
        assert_eq!(b.used(), (2, 20));
        // Larger than the whole budget: admitted alone.
        let big = Budget::new(3, 100, true);
        let _t = big.admit(1000, soon()).unwrap();
    }

    #[test]
    fn waits_for_room_until_the_deadline() {
        let b = Budget::new(1, 100, false);
        let t = b.admit(10, Instant::now()).unwrap();
        let started = Instant::now();
        assert!(matches!(
            b.admit(10, Instant::now() + Duration::from_millis(50)),
            Err(Error::Timeout { .. })
        ));
        assert!(started.elapsed() >= Duration::from_millis(45));
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || b.admit(10, Instant::now() + Duration::from_secs(5)).map(|_| ()))
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(t);
        waiter.join().unwrap().unwrap();
    }
}
