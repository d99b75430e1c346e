//! The counters behind [`Stats`](crate::Stats), and, with the `metrics` feature, the same events reported through
//! the `metrics` facade as they happen (to whichever recorder the service installed: Prometheus, StatsD, ...).
//! Without the feature nothing of the facade is compiled: a [`Stat`] is one atomic.
//!
//! Handles are registered when the client opens, so the recorder must be installed before. The names, units and
//! labels are listed in the README's table (`tests/metrics.rs` checks that every metric reported is there).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::error::Error;
use crate::priority::Priority;

/// One counter: what [`Client::stats`](crate::Client::stats) reads and, with the `metrics` feature, the facade's
/// counter of the same event.
pub(crate) struct Stat {
    value: AtomicU64,
    #[cfg(feature = "metrics")]
    metric: ::metrics::Counter,
}

impl Stat {
    /// A counter reported as `name` with `labels`; with an empty name, one reported otherwise (or not at all).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(name: &'static str, labels: &[(&'static str, &'static str)]) -> Stat {
        Stat {
            value: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            metric: if name.is_empty() {
                ::metrics::Counter::noop()
            } else {
                ::metrics::counter!(name, to_labels(labels))
            },
        }
    }

    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Relaxed);
        #[cfg(feature = "metrics")]
        self.metric.increment(n);
    }

    pub(crate) fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }
}

#[cfg(feature = "metrics")]
fn to_labels(labels: &[(&'static str, &'static str)]) -> Vec<::metrics::Label> {
    labels.iter().map(|(k, v)| ::metrics::Label::new(*k, *v)).collect()
}

/// The label of a priority level.
#[cfg(feature = "metrics")]
pub(crate) fn priority_label(p: Priority) -> &'static str {
    match p {
        Priority::Peek => "peek",
        Priority::Prefetch => "prefetch",
        Priority::Get => "get",
        Priority::Put => "put",
    }
}

/// The `kind` label of a key's error.
#[cfg(feature = "metrics")]
pub(crate) fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Closed => "closed",
        Error::Timeout { .. } => "timeout",
        Error::Io { .. } => "io",
        Error::Tls { .. } => "tls",
        Error::Server { .. } => "server",
        Error::TooManyRedirects { .. } => "redirects",
        Error::Protocol { .. } => "protocol",
        Error::Topology(_) => "topology",
        Error::Overloaded(_) => "overloaded",
        Error::InvalidInput(_) | Error::Config(_) => "invalid",
        Error::WorkerLost => "worker_lost",
        Error::Interrupted => "interrupted",
        Error::NotReplicated { .. } => "not_replicated",
    }
}

/// A key answered with `e`, reported by kind (the count itself is in `Stat`s).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn key_error(e: &Error) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("kvcache_key_errors_total", "kind" => error_kind(e)).increment(1);
}

/// A whole call of `priority` took `took`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn call_duration(priority: Priority, took: Duration) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!("kvcache_call_duration_seconds", "priority" => priority_label(priority))
        .record(took.as_secs_f64());
}

/// Parts and bytes queued or in flight now.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn in_flight(parts: usize, bytes: usize) {
    #[cfg(feature = "metrics")]
    {
        ::metrics::gauge!("kvcache_in_flight_bytes").set(bytes as f64);
        ::metrics::gauge!("kvcache_queued_parts").set(parts as f64);
    }
}

/// Nodes marked down now.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn nodes_down(n: usize) {
    #[cfg(feature = "metrics")]
    ::metrics::gauge!("kvcache_nodes_down").set(n as f64);
}
