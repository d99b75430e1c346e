//! What the client handle and its workers share: the configuration, the slot map, the counters, the buffers, the
//! queue budget and what is known of misbehaving nodes. Workers hold it, never the handle, so they do not keep the
//! client alive.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::budget::Budget;
use crate::config::Config;
use crate::connection::ConnectOptions;
use crate::health::Health;
use crate::pool::BufferPool;
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
    /// Nodes that are silent or could not be connected to.
    pub(crate) health: Arc<Health>,
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
