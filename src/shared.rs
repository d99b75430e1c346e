//! What the client handle and its workers share: the configuration, the slot map, the counters, the buffers, the
//! queue budget and what is known of misbehaving nodes. Workers hold it, never the handle, so they do not keep the
//! client alive.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::RwLock;

use crate::budget::Budget;
use crate::config::Config;
use crate::connection::ConnectOptions;
use crate::error::{Error, Result};
use crate::health::Health;
use crate::lane::Lanes;
use crate::pool::BufferPool;
use crate::queue::Queues;
use crate::request::Part;
use crate::stats::Counters;
use crate::topology::Topology;

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
    pub(crate) budget: Arc<Budget>,
    /// Buffers for large values, shared by every worker's connections.
    pub(crate) pool: Arc<BufferPool>,
    /// Set once by close: queued parts are executed until then and answered `Closed` after.
    pub(crate) drain_deadline: OnceLock<Instant>,
    /// The sending side of the priority queues; `None` once closing. Write-locked only by close, so that nothing
    /// can be queued after the senders are dropped. (The workers hold the receiving sides.)
    pub(crate) queues: RwLock<Option<Queues>>,
    /// Nodes that are silent or could not be connected to.
    pub(crate) health: Arc<Health>,
    /// Small reads carried by the calling threads themselves (see `lane`).
    pub(crate) lanes: Lanes,
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

impl Shared {
    /// Queues a part; `Closed` once the client is closing.
    pub(crate) fn queue(&self, part: Part) -> Result<()> {
        // Read lock held while queueing: close takes the write lock, so nothing is queued after it.
        let queues = self.queues.read();
        queues.as_ref().ok_or(Error::Closed)?.send(part)
    }

    /// Whether the client is closing or closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.queues.read().is_none()
    }

    /// Parts waiting in the queues.
    pub(crate) fn queued(&self) -> usize {
        self.queues.read().as_ref().map_or(0, Queues::len)
    }

    /// Starts the drain deadline and drops the senders, which tells the workers to finish what is queued and
    /// exit; `false` when that was done already.
    pub(crate) fn close_queues(&self) -> bool {
        // The write lock waits out every send in progress, so nothing is queued after this.
        let mut queues = self.queues.write();
        if queues.is_none() {
            return false;
        }
        let _ = self.drain_deadline.set(Instant::now() + self.config.drain_timeout);
        *queues = None;
        true
    }
}
