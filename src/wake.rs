//! Waking a worker that sleeps in `poll` on its sockets: each worker owns the reading end of a socket pair, and
//! whoever has news for it (a queued call, a finished connect, a new slot map) writes a byte to the other end.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// The end a worker polls.
pub(crate) struct Wakeup {
    read: UnixStream,
    waker: Waker,
}

/// Wakes one worker; cheap to clone.
#[derive(Clone)]
pub(crate) struct Waker(Arc<UnixStream>);

impl Wakeup {
    pub(crate) fn new() -> io::Result<Wakeup> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        Ok(Wakeup {
            read,
            waker: Waker(Arc::new(write)),
        })
    }

    pub(crate) fn waker(&self) -> Waker {
        self.waker.clone()
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Consumes the wake-ups received, so the next poll sleeps again.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
    }
}

impl Waker {
    pub(crate) fn wake(&self) {
        // A full pipe already holds a wake-up; a closed one means the worker is gone.
        let _ = (&*self.0).write(&[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_up_makes_the_fd_readable_until_drained() {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let w = Wakeup::new().unwrap();
        let ready = |w: &Wakeup| {
            let mut fds = [PollFd::new(&w.read, PollFlags::IN)];
            let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
            poll(&mut fds, Some(&zero)).unwrap() > 0
        };
        assert!(!ready(&w));
        for _ in 0..100_000 {
            w.waker().wake(); // never blocks, even when the pipe is full
        }
        assert!(ready(&w));
        w.drain();
        assert!(!ready(&w));
    }
}
