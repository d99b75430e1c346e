//! Reusable buffers for large values. A fresh multi-MiB allocation page-faults its whole length while the reply
//! is read into it, which costs as much as the read itself; so a large value is read into a buffer from this
//! pool, handed out as `Bytes`, and its buffer comes back here when the caller drops the last reference.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;

/// Values at least this large are read into pooled buffers.
pub(crate) const POOLED_VALUE: usize = 256 << 10;

/// Idle buffers, bounded in total bytes; the oldest give way to the newest, since recent sizes are the likely
/// next ones.
pub(crate) struct BufferPool {
    /// Oldest first. Locked briefly to take or return one buffer, never around I/O.
    idle: Mutex<VecDeque<Vec<u8>>>,
    idle_bytes: AtomicUsize,
    max_bytes: usize,
}

/// A pooled buffer owned by the `Bytes` it backs.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Weak<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give_back(std::mem::take(&mut self.buf));
        }
    }
}

impl BufferPool {
    /// A pool keeping at most `max_bytes` of idle buffers (0: no pooling).
    pub(crate) fn new(max_bytes: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            idle: Mutex::new(VecDeque::new()),
            idle_bytes: AtomicUsize::new(0),
            max_bytes,
        })
    }

    /// An initialized buffer of at least `len` bytes (at most twice that, so memory is not wasted): an idle
    /// one when there is one, else a new one.
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let found = {
            let mut idle = self.idle.lock();
            let best = idle
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= len && b.len() <= len.saturating_mul(2))
                .min_by_key(|(_, b)| b.len())
                .map(|(i, _)| i);
            let found = best.and_then(|i| idle.remove(i));
            if let Some(buf) = &found {
                self.idle_bytes.fetch_sub(buf.len(), Ordering::Relaxed);
            }
            found
        };
        match found {
            Some(buf) => buf,
            None => vec![0; len],
        }
    }

    /// Hands out the first `len` bytes of `buf` as `Bytes`; the buffer returns to the pool when they are dropped.
    pub(crate) fn wrap(self: &Arc<Self>, buf: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            len,
            pool: Arc::downgrade(self),
        })
    }

    fn give_back(&self, buf: Vec<u8>) {
        let size = buf.len();
        if size == 0 || size > self.max_bytes {
            return;
        }
        let mut idle = self.idle.lock();
        let mut held = self.idle_bytes.load(Ordering::Relaxed) + size;
        while held > self.max_bytes {
            match idle.pop_front() {
                Some(old) => held -= old.len(),
                None => break,
            }
        }
        idle.push_back(buf);
        // Updated under the lock, so it always equals the sum of `idle`.
        self.idle_bytes.store(held, Ordering::Relaxed);
    }

    /// Bytes held by idle buffers.
    #[cfg(test)]
    fn idle_bytes(&self) -> usize {
        self.idle_bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_reference_drops() {
        let pool = BufferPool::new(10 << 20);
        let buf = pool.take(1 << 20);
        let ptr = buf.as_ptr();
        let value = pool.wrap(buf, 1000);
        assert_eq!(value.len(), 1000);
        let clone = value.slice(10..20);
        drop(value);
        assert_eq!(pool.idle_bytes(), 0, "a slice still holds the buffer");
        drop(clone);
        assert_eq!(pool.idle_bytes(), 1 << 20);
        // Reused for a value of similar size, not for a much smaller one.
        assert_eq!(pool.take(400 << 10).len(), 400 << 10);
        let again = pool.take(700 << 10);
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn idle_bytes_are_bounded_and_the_newest_stay() {
        let pool = BufferPool::new(3 << 20);
        let values: Vec<Bytes> = (0..5).map(|_| pool.wrap(pool.take(1 << 20), 1 << 20)).collect();
        drop(values);
        assert_eq!(pool.idle_bytes(), 3 << 20);
        // A burst of another size replaces the old buffers rather than being turned away.
        let big = pool.take(2 << 20);
        let ptr = big.as_ptr();
        drop(pool.wrap(big, 2 << 20));
        assert_eq!(pool.idle_bytes(), 3 << 20, "one 1 MiB and the 2 MiB buffer");
        let reused = pool.take(2 << 20);
        assert_eq!(reused.as_ptr(), ptr);
        let off = BufferPool::new(0);
        drop(off.wrap(off.take(1 << 20), 1));
        assert_eq!(off.idle_bytes(), 0);
    }
}
