//! Availability probes: one thread per probe key (a key in each shard) reads it in a loop with a short deadline
//! and records when its answers changed between "answered" (a value or a miss) and "failed". From that record,
//! `recovery` says how long after a moment every shard answered again, and `longest_outage` how long the longest
//! silence of any shard overlapping a window was.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvcache_redis::Client;

/// When a probe's answers changed: `(time on the load clock, answered)`; the first entry is the first answer.
pub type Transitions = Vec<(Duration, bool)>;

pub struct Prober {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Transitions>>,
}

impl Prober {
    /// Probes each of `keys` every 10 ms with a `deadline` per read.
    pub fn start(client: &Client, keys: Vec<String>, started: Instant, deadline: Duration) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = keys
            .into_iter()
            .map(|key| {
                let (client, stop) = (client.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen: Transitions = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let ok = client.call().timeout(deadline).get(&key).is_ok();
                        let at = started.elapsed();
                        if seen.last().is_none_or(|(_, was)| *was != ok) {
                            seen.push((at, ok));
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    seen
                })
            })
            .collect();
        Prober { stop, threads }
    }

    pub fn finish(self) -> Vec<Transitions> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().expect("probe thread panicked"))
            .collect()
    }
}

/// How long after `from` every probe had answered again (zero for a probe answering at `from`); `None` when one
/// never did.
pub fn recovery(probes: &[Transitions], from: Duration) -> Option<Duration> {
    let mut worst = Duration::ZERO;
    for seen in probes {
        let answering_at_from = seen.iter().rev().find(|(t, _)| *t <= from).is_some_and(|(_, ok)| *ok);
        if answering_at_from {
            continue;
        }
        let back = seen.iter().find(|(t, ok)| *t > from && *ok)?;
        worst = worst.max(back.0 - from);
    }
    Some(worst)
}

/// The longest stretch in which some probe failed, among stretches overlapping `[from, to]` (a stretch still open
/// at the end counts up to `end`).
pub fn longest_outage(probes: &[Transitions], from: Duration, to: Duration, end: Duration) -> Duration {
    let mut longest = Duration::ZERO;
    for seen in probes {
        for (i, (t, ok)) in seen.iter().enumerate() {
            if *ok {
                continue;
            }
            let until = seen.get(i + 1).map_or(end, |(t, _)| *t);
            if *t <= to && until >= from {
                longest = longest.max(until - *t);
            }
        }
    }
    longest
}
