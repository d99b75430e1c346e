//! Waking a worker. A worker with nothing in flight parks on a condition variable (one futex wake to rouse it,
//! the common hand-off from an idle worker to a caller's request); a worker watching sockets sleeps in `poll`,
//! which also watches the reading end of a socket pair that a wake-up writes a byte to. Whoever has news for a
//! worker (a queued call, a finished connect, a new slot map) calls `wake`, which reaches it either way.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

const RUNNING: u8 = 0;
const PARKED: u8 = 1;
const POLLING: u8 = 2;

/// The worker's side.
pub(crate) struct Wakeup {
    read: UnixStream,
    waker: Waker,
}

/// Wakes one worker; cheap to clone.
#[derive(Clone)]
pub(crate) struct Waker(Arc<Signal>);

struct Signal {
    /// How the worker sleeps right now.
    state: AtomicU8,
    /// A wake-up not consumed yet.
    pending: AtomicBool,
    /// Held by a parked worker from its last look at `pending` until it waits. The standard library's lock and
    /// condition variable, not parking_lot's: an idle worker is parked at almost any moment, and parking_lot keeps
    /// its sleepers in a process-wide table that a forked child inherits; a thread the child starts can reuse a
    /// parked parent thread's stack (and its entry in that table), which corrupts the table in the child. These
    /// wait on a futex of their own.
    lock: Mutex<()>,
    parked: Condvar,
    write: UnixStream,
}

impl Wakeup {
    pub(crate) fn new() -> io::Result<Wakeup> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        Ok(Wakeup {
            read,
            waker: Waker(Arc::new(Signal {
                state: AtomicU8::new(RUNNING),
                pending: AtomicBool::new(false),
                lock: Mutex::new(()),
                parked: Condvar::new(),
                write,
            })),
        })
    }

    pub(crate) fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Sleeps until woken or `timeout` passes, with no socket to watch.
    pub(crate) fn park(&self, timeout: Duration) {
        let s = &self.waker.0;
        let mut guard = s.lock.lock().unwrap_or_else(PoisonError::into_inner);
        s.state.store(PARKED, SeqCst);
        if !s.pending.swap(false, SeqCst) {
            guard = s
                .parked
                .wait_timeout(guard, timeout)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        s.state.store(RUNNING, SeqCst);
        s.pending.store(false, SeqCst);
        drop(guard);
    }

    /// Calls `poll` (which must watch `fd()` too) unless a wake-up is already pending; returns whether a wake-up
    /// came (then consumed).
    pub(crate) fn poll_with(&self, poll: impl FnOnce() -> bool) -> bool {
        let s = &self.waker.0;
        s.state.store(POLLING, SeqCst);
        let woken = s.pending.swap(false, SeqCst) || poll();
        s.state.store(RUNNING, SeqCst);
        if s.pending.swap(false, SeqCst) || woken {
            self.drain();
            return true;
        }
        false
    }

    /// Consumes a pending wake-up, if any (for tests of who gets woken).
    #[cfg(test)]
    pub(crate) fn take_wakeup(&self) -> bool {
        self.waker.0.pending.swap(false, SeqCst)
    }

    /// What a polling worker watches.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Consumes the bytes written, so the next poll sleeps again. (A short read emptied the socket: no second
    /// read just to be told so.)
    fn drain(&self) {
        let mut buf = [0u8; 256];
        while matches!((&self.read).read(&mut buf), Ok(n) if n == buf.len()) {}
    }
}

impl Waker {
    pub(crate) fn wake(&self) {
        let s = &self.0;
        // Orders `pending` before the look at `state` (the worker does the opposite): either it sees the wake-up
        // before sleeping, or this sees how it sleeps.
        s.pending.store(true, SeqCst);
        match s.state.load(SeqCst) {
            PARKED => {
                let _guard = s.lock.lock().unwrap_or_else(PoisonError::into_inner);
                s.parked.notify_one();
            }
            // A full socket already holds a wake-up; a closed one means the worker is gone.
            POLLING => {
                let _ = (&s.write).write(&[1]);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn poll_fd(w: &Wakeup, timeout: Duration) -> bool {
        use rustix::event::{PollFd, PollFlags, poll};
        let mut fds = [PollFd::from_borrowed_fd(w.fd(), PollFlags::IN)];
        poll(&mut fds, Some(&crate::connection::timespec(timeout))).unwrap() > 0
    }

    #[test]
    fn a_wake_up_reaches_a_parked_or_polling_worker_and_is_consumed_once() {
        let w = Wakeup::new().unwrap();
        // Pending before the sleep: no sleep at all.
        w.waker().wake();
        let t = Instant::now();
        w.park(Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(1));
        // Consumed: the next park times out.
        let t = Instant::now();
        w.park(Duration::from_millis(30));
        assert!(t.elapsed() >= Duration::from_millis(25));
        // From another thread, while parked and while polling.
        for polling in [false, true] {
            let waker = w.waker();
            let t = Instant::now();
            let other = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                waker.wake();
            });
            if polling {
                assert!(w.poll_with(|| poll_fd(&w, Duration::from_secs(5))));
            } else {
                w.park(Duration::from_secs(5));
            }
            assert!(t.elapsed() < Duration::from_secs(2), "not woken");
            other.join().unwrap();
        }
        // Many wake-ups never block the waker, and leave one wake-up.
        for _ in 0..10_000 {
            w.waker().wake();
        }
        assert!(w.poll_with(|| poll_fd(&w, Duration::from_secs(5))));
        assert!(!w.poll_with(|| poll_fd(&w, Duration::from_millis(10))));
    }
}
