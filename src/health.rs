//! What the workers know of nodes that misbehave. A node that owes replies and has sent nothing for
//! `silence_timeout` is reported silent: while any is, or is down, the slot map is re-read from the other nodes
//! (by the topology's refresher), so a promoted replica is found without waiting for a `MOVED`. A node whose connect failed
//! slowly (a blackholed or hung host), or that stayed silent until a request's deadline (a stalled server), is
//! marked down: from then on requests for it fail at once instead of each waiting out its own connect or
//! deadline, and a background probe reconnects and `PING`s, backing off, until the node answers or leaves the
//! slot map.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::connection::{ConnectOptions, Connection};
use crate::error::Error;

/// First pause between probes of a down node; doubles up to `MAX_PROBE_PAUSE`.
const FIRST_PROBE_PAUSE: Duration = Duration::from_millis(10);
const MAX_PROBE_PAUSE: Duration = Duration::from_millis(200);
/// How long a probe waits for its `PING` to be answered, so that a node which left the slot map meanwhile stops
/// being probed soon.
const MAX_PING_WAIT: Duration = Duration::from_secs(1);
/// The TCP connect timeout of most probes.
const SHORT_CONNECT: Duration = Duration::from_millis(250);

/// Whether a node is still worth probing (still in the slot map, and the client still open).
pub(crate) type Wanted = Box<dyn Fn(&str) -> bool + Send>;

/// A silence report counts for this long after it was made (workers renew theirs while the silence lasts).
const SILENCE_REMEMBERED: Duration = Duration::from_secs(1);

/// The down nodes, with why, the silent ones, and the replicas not to read from for now.
#[derive(Default)]
pub(crate) struct Health {
    down: Mutex<HashMap<String, Down>>,
    /// How many nodes are down: when none (the usual case), `check` takes no lock.
    count: AtomicUsize,
    /// When each node was last reported silent.
    silent: Mutex<HashMap<String, Instant>>,
    /// When any node was last reported silent (`since_start`; 0: never), read without a lock.
    last_silence: AtomicU64,
    /// Replicas avoided for reads, until when: shared, so that every worker moves off a replica the moment one
    /// finds it silent or refusing.
    avoided: Mutex<HashMap<String, Instant>>,
    /// How many entries `avoided` has: when none (the usual case), `avoided` takes no lock.
    avoided_count: AtomicUsize,
}

struct Down {
    since: Instant,
    error: Error,
}

impl Health {
    /// `Err` when `node` is down: the error of its last connect, said to be remembered.
    pub(crate) fn check(&self, node: &str) -> Result<(), Error> {
        if self.count.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let down = self.down.lock();
        let Some(d) = down.get(node) else { return Ok(()) };
        Err(Error::Io {
            node: node.to_string(),
            source: Arc::new(io::Error::new(
                io::ErrorKind::NotConnected,
                format!(
                    "marked down {} ms ago ({}); probed in the background",
                    d.since.elapsed().as_millis(),
                    d.error
                ),
            )),
        })
    }

    /// Records that `node` owes replies and has said nothing for a while.
    pub(crate) fn report_silent(&self, node: &str) {
        self.silent.lock().insert(node.to_string(), Instant::now());
        self.last_silence.store(since_start(), Ordering::Release);
    }

    /// Whether `node` may be read from by a path without fault handling of its own (the direct lane): `node` is not
    /// down, and no node was reported silent lately. Lock-free in the usual case.
    pub(crate) fn calm(&self, node: &str) -> bool {
        let last = self.last_silence.load(Ordering::Acquire);
        let quiet = last == 0 || since_start().saturating_sub(last) > SILENCE_REMEMBERED.as_millis() as u64;
        quiet && self.check(node).is_ok()
    }

    /// The nodes reported silent lately or marked down: the slot map is watched while there are any.
    pub(crate) fn troubled(&self) -> Vec<String> {
        let mut nodes: Vec<String> = {
            let mut silent = self.silent.lock();
            silent.retain(|_, at| at.elapsed() < SILENCE_REMEMBERED);
            silent.keys().cloned().collect()
        };
        if self.count.load(Ordering::Acquire) > 0 {
            nodes.extend(self.down.lock().keys().cloned());
        }
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Whether reads may go to `node` now: not marked down, not avoided.
    pub(crate) fn readable(&self, node: &str) -> bool {
        self.check(node).is_ok() && !self.avoided(node)
    }

    /// Stops reads from going to `node` (a replica, or a silent primary while replicas are read from) for `span`.
    pub(crate) fn avoid(&self, node: &str, span: Duration) {
        let mut avoided = self.avoided.lock();
        avoided.insert(node.to_string(), Instant::now() + span);
        self.avoided_count.store(avoided.len(), Ordering::Release);
    }

    /// Whether reads should stay off `node` for now.
    pub(crate) fn avoided(&self, node: &str) -> bool {
        if self.avoided_count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut avoided = self.avoided.lock();
        let now = Instant::now();
        avoided.retain(|_, until| *until > now);
        self.avoided_count.store(avoided.len(), Ordering::Release);
        avoided.contains_key(node)
    }

    /// The nodes down now, sorted.
    pub(crate) fn down_nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.down.lock().keys().cloned().collect();
        nodes.sort();
        nodes
    }

    /// Marks `node` down, and starts its probe unless one runs. Returns whether it was up until now.
    pub(crate) fn mark_down(
        self: &Arc<Self>,
        node: &str,
        error: &Error,
        opts: &ConnectOptions,
        wanted: Wanted,
    ) -> bool {
        let mut down = self.down.lock();
        if let Some(d) = down.get_mut(node) {
            d.error = error.clone();
            return false;
        }
        down.insert(
            node.to_string(),
            Down {
                since: Instant::now(),
                error: error.clone(),
            },
        );
        self.count.store(down.len(), Ordering::Release);
        crate::telemetry::nodes_down(down.len());
        drop(down);
        let health = Arc::downgrade(self);
        let (node, opts) = (node.to_string(), opts.clone());
        let spawned = std::thread::Builder::new().name("kvcache-redis-probe".into()).spawn({
            let node = node.clone();
            move || probe(health, wanted, node, opts)
        });
        if let Err(e) = spawned {
            // Without a probe the node would stay down: leave reconnecting to the workers.
            log::warn!("no probe thread for {node}: {e}");
            self.up(&node);
        }
        true
    }

    fn up(&self, node: &str) {
        let mut down = self.down.lock();
        down.remove(node);
        self.count.store(down.len(), Ordering::Release);
        crate::telemetry::nodes_down(down.len());
    }
}

/// Reconnects to `node` with growing pauses until it answers (then it is up again), until it is no longer
/// `wanted` (out of the slot map: the workers will connect themselves if it ever is again), or until the client is
/// gone.
fn probe(health: Weak<Health>, wanted: Wanted, node: String, opts: ConnectOptions) {
    let mut pause = FIRST_PROBE_PAUSE;
    for attempt in 0u64.. {
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_PROBE_PAUSE);
        let Some(health) = health.upgrade() else { return };
        if !wanted(&node) {
            log::info!("{node} left the slot map; no longer probed");
            health.up(&node);
            return;
        }
        // Behind a partition a TCP connect hangs until a SYN is retransmitted (after 1 s, then 3 s): fresh ones
        // notice a healed link sooner. Every few attempts a connect gets the full time, for a slow network.
        let syn = if attempt % 4 == 3 {
            MAX_PING_WAIT * 2
        } else {
            SHORT_CONNECT
        };
        let opts = ConnectOptions {
            timeout: opts.timeout.min(MAX_PING_WAIT * 2),
            ..opts.clone()
        };
        match Connection::connect_with(&node, &opts, syn).and_then(|mut conn| {
            // A stalled server still accepts connections (the kernel does): it must answer too.
            conn.call(&[b"PING"], opts.timeout.min(MAX_PING_WAIT)).map(|_| ())
        }) {
            Ok(()) => {
                log::info!("{node} answers again");
                health.up(&node);
                return;
            }
            Err(e) => {
                log::debug!("probe of {node}: {e}");
                if let Some(d) = health.down.lock().get_mut(&node) {
                    d.error = e;
                }
            }
        }
    }
}

/// Milliseconds since the first call in this process, plus one (so that 0 can mean "never").
fn since_start() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}
