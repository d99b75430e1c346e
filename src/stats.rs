//! Counters the workers bump and [`Client::stats`](crate::Client::stats) reads: what was asked, what went over
//! the wire to which node, and what went wrong.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::latency::{Histogram, Latency};
use crate::priority::Priority;
use crate::telemetry::{self, Stat};

/// A snapshot of the client's counters since it was opened. Counters only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls submitted, per priority level (index = [`Priority`] as usize).
    pub requests: [u64; 4],
    /// Parts queued (counted once in the queue): calls are split into parts bounded in keys and bytes.
    pub parts: u64,
    /// Keys (or pings) answered, whatever the outcome.
    pub keys: u64,
    /// Of `keys`, those read through the direct lanes (see
    /// [`Config::direct_reads`](crate::Config::direct_reads)) rather than by the workers.
    pub direct_keys: u64,
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
    /// Value bytes read (hits; values read into caller buffers included).
    pub bytes_read: u64,
    /// Value bytes written.
    pub bytes_written: u64,
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
    ($($name:ident => $metric:literal),* $(,)?) => {
        /// Live counters shared by the client and its workers.
        pub(crate) struct Counters {
            pub(crate) requests: [Stat; 4],
            $(pub(crate) $name: Stat,)*
            /// Locked once per round trip, never around I/O.
            nodes: Mutex<HashMap<String, NodeStats>>,
            pub(crate) latency: [Histogram; 4],
        }

        impl Counters {
            /// Counters at zero, registered with the `metrics` recorder installed now (if the feature is on).
            pub(crate) fn new() -> Counters {
                Counters {
                    // Reported with the operation as well, by `call`.
                    requests: std::array::from_fn(|_| Stat::new("", &[])),
                    $($name: Stat::new($metric, &[]),)*
                    nodes: Mutex::default(),
                    latency: Default::default(),
                }
            }

            pub(crate) fn snapshot(&self, queued: u64) -> Stats {
                let mut nodes: Vec<NodeStats> = self.nodes.lock().values().cloned().collect();
                nodes.sort_by(|a, b| a.node.cmp(&b.node));
                Stats {
                    requests: std::array::from_fn(|i| self.requests[i].get()),
                    $($name: self.$name.get(),)*
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
    parts => "kvcache_parts_total",
    keys => "kvcache_keys_total",
    direct_keys => "kvcache_direct_keys_total",
    hits => "kvcache_hits_total",
    misses => "kvcache_misses_total",
    // Reported by kind, by `key_error`.
    key_errors => "",
    corrupt => "kvcache_corrupt_chunks_total",
    prefix_failures => "kvcache_prefix_failures_total",
    moved => "kvcache_moved_total",
    asked => "kvcache_asked_total",
    retries => "kvcache_retries_total",
    io_retries => "kvcache_io_retries_total",
    connects => "kvcache_connects_total",
    timeouts => "kvcache_timeouts_total",
    overloads => "kvcache_overloads_total",
    round_trips => "kvcache_round_trips_total",
    marked_down => "kvcache_nodes_marked_down_total",
    silences => "kvcache_silences_total",
    rerouted => "kvcache_rerouted_keys_total",
    bytes_read => "kvcache_read_bytes_total",
    bytes_written => "kvcache_written_bytes_total",
);

impl Counters {
    /// A call of `op` at `priority` with `keys` keys was submitted.
    pub(crate) fn call(&self, op: &'static str, priority: Priority, keys: usize) {
        self.requests[priority.index()].add(1);
        #[cfg(feature = "metrics")]
        {
            let p = telemetry::priority_label(priority);
            ::metrics::counter!("kvcache_calls_total", "op" => op, "priority" => p).increment(1);
            ::metrics::counter!("kvcache_call_keys_total", "op" => op, "priority" => p).increment(keys as u64);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (op, keys);
    }

    /// A whole call of `priority` took `took`.
    pub(crate) fn call_done(&self, priority: Priority, took: std::time::Duration) {
        self.latency[priority.index()].record(took);
        telemetry::call_duration(priority, took);
    }

    /// A key was answered with `e`.
    pub(crate) fn key_error(&self, e: &crate::error::Error) {
        self.key_errors.add(1);
        telemetry::key_error(e);
    }

    pub(crate) fn round_trip(&self, node: &str, commands: u64, keys: u64) {
        self.round_trips.add(1);
        let mut nodes = self.nodes.lock();
        // Found by `&str` first: no allocation per round trip once the node is known.
        if !nodes.contains_key(node) {
            nodes.insert(
                node.to_string(),
                NodeStats {
                    node: node.to_string(),
                    ..NodeStats::default()
                },
            );
        }
        let n = nodes.get_mut(node).expect("inserted");
        n.round_trips += 1;
        n.commands += commands;
        n.keys += keys;
    }
}
