//! Counters the workers bump and [`Client::stats`](crate::Client::stats) reads: what was asked, what went over
//! the wire to which node, and what went wrong.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::latency::{Histogram, Latency};
use crate::request::Priority;

/// A snapshot of the client's counters since it was opened. Counters only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls submitted, per priority level (index = [`Priority`] as usize).
    pub requests: [u64; 4],
    /// Parts queued (counted once in the queue): calls are split into parts bounded in keys and bytes.
    pub parts: u64,
    /// Keys (or pings) answered by the workers, whatever the outcome.
    pub keys: u64,
    /// Reads that found a value.
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Keys answered with an error.
    pub key_errors: u64,
    /// Stored chunks that did not check out against their layout (read as misses).
    pub corrupt: u64,
    /// Prefix calls (`batched_contains`, non-blocking get) whose prefix stopped at a failed key.
    pub prefix_failures: u64,
    /// MOVED replies followed.
    pub moved: u64,
    /// ASK replies followed.
    pub asked: u64,
    /// TRYAGAIN / CLUSTERDOWN / LOADING / MASTERDOWN replies retried after a back-off.
    pub retries: u64,
    /// Keys resent on a fresh connection after an I/O error on a reused one.
    pub io_retries: u64,
    /// Connections opened by the workers.
    pub connects: u64,
    /// Keys answered with a timeout.
    pub timeouts: u64,
    /// Pipelines sent: one per node per round of a batch.
    pub round_trips: u64,
    /// Calls refused with [`Error::Overloaded`](crate::Error::Overloaded).
    pub overloads: u64,
    /// Times a node was marked down (a slow failed connect, or silence past a deadline); see `nodes_down`.
    pub marked_down: u64,
    /// Times a Cluster node that owed replies was found silent past
    /// [`Config::silence_timeout`](crate::Config::silence_timeout) (by one worker; it is then reported, and the
    /// slot map re-read until it speaks or is replaced).
    pub silences: u64,
    /// Keys resent to a new owner after their node went silent and the slot map moved their slot (they would
    /// otherwise have waited for their deadline).
    pub rerouted: u64,
    /// Slot-map refreshes completed (after MOVED, connection failures, and every 100 ms while a node is silent or
    /// down).
    pub refreshes: u64,
    /// Nodes marked down right now, whose keys fail at once while a background probe waits for them to answer
    /// (a gauge).
    pub nodes_down: Vec<String>,
    /// Calls waiting in the queues right now (a gauge, not a counter).
    pub queued: u64,
    /// Bytes of the parts queued or in flight right now (a gauge; bounded by `max_queued_bytes`).
    pub in_flight_bytes: u64,
    /// Per-node wire counters, sorted by node address.
    pub nodes: Vec<NodeStats>,
    /// Latency of whole calls, submission to answer, per priority level (index = [`Priority`] as usize).
    pub latency: [Latency; 4],
}

/// What went over the wire to one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// `host:port`.
    pub node: String,
    /// Pipelines written to it (each answered in one read pass).
    pub round_trips: u64,
    /// Commands in those pipelines (an `MGET` is one command).
    pub commands: u64,
    /// Keys in those commands.
    pub keys: u64,
}

impl Stats {
    /// The counters of `node`, if it was ever sent anything.
    pub fn node(&self, node: &str) -> Option<&NodeStats> {
        self.nodes.iter().find(|n| n.node == node)
    }

    /// Submitted calls of one priority level.
    pub fn requests_at(&self, p: Priority) -> u64 {
        self.requests[p.index()]
    }
}

macro_rules! counters {
    ($($name:ident),*) => {
        /// Live counters shared by the client and its workers.
        #[derive(Default)]
        pub(crate) struct Counters {
            pub(crate) requests: [AtomicU64; 4],
            $(pub(crate) $name: AtomicU64,)*
            /// Locked once per round trip, never around I/O.
            nodes: Mutex<HashMap<String, NodeStats>>,
            pub(crate) latency: [Histogram; 4],
        }

        impl Counters {
            pub(crate) fn snapshot(&self, queued: u64) -> Stats {
                let mut nodes: Vec<NodeStats> = self.nodes.lock().values().cloned().collect();
                nodes.sort_by(|a, b| a.node.cmp(&b.node));
                Stats {
                    requests: std::array::from_fn(|i| self.requests[i].load(Relaxed)),
                    $($name: self.$name.load(Relaxed),)*
                    queued,
                    refreshes: 0,
                    in_flight_bytes: 0,
                    nodes_down: Vec::new(),
                    nodes,
                    latency: std::array::from_fn(|i| self.latency[i].summary()),
                }
            }
        }
    };
}

counters!(
    parts,
    keys,
    hits,
    misses,
    key_errors,
    corrupt,
    prefix_failures,
    moved,
    asked,
    retries,
    io_retries,
    connects,
    timeouts,
    overloads,
    round_trips,
    marked_down,
    silences,
    rerouted
);

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn round_trip(&self, node: &str, commands: u64, keys: u64) {
        Counters::add(&self.round_trips, 1);
        let mut nodes = self.nodes.lock();
        let n = nodes.entry(node.to_string()).or_insert_with(|| NodeStats {
            node: node.to_string(),
            ..NodeStats::default()
        });
        n.round_trips += 1;
        n.commands += commands;
        n.keys += keys;
    }
}
