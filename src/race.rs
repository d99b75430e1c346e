//! Asking several nodes the same question when any one answer will do (a slot map at open or refresh): the nodes
//! are asked in order, the next one as soon as the one before failed or has not answered within a stagger, and the
//! first answer wins. A node that is frozen or cut off (its connect hangs, or it accepts and never replies) then
//! delays the answer by one stagger instead of by its whole timeout, while a healthy first node is the only one
//! asked.

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::error::{Error, Result};

/// How long a node is given before the next one is asked as well.
pub(crate) const STAGGER: Duration = Duration::from_millis(200);

/// The first answer of `ask` over `nodes`, asked in order with `stagger` between starts (each on a short-lived
/// thread of its own, as `ask` may block up to its own timeout). Each attempt must be bounded in time by `ask`
/// itself; `deadline` bounds the whole. When every node failed, the error of the first node (in order) is
/// returned: the one a user listed first, or the likeliest to say what is wrong.
pub(crate) fn first_answer<T, F>(nodes: &[String], stagger: Duration, deadline: Instant, ask: F) -> Result<T>
where
    T: Send + 'static,
    F: Fn(&str) -> Result<T> + Send + Sync + 'static,
{
    let ask = std::sync::Arc::new(ask);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut errors: Vec<Option<Error>> = (0..nodes.len()).map(|_| None).collect();
    let (mut started, mut finished) = (0, 0);
    let mut next_start = Instant::now();
    loop {
        let now = Instant::now();
        // Start the next node when the stagger has passed, or when nothing is pending any more.
        if started < nodes.len() && now < deadline && (now >= next_start || finished == started) {
            let (node, tx, ask) = (nodes[started].clone(), tx.clone(), ask.clone());
            let i = started;
            let spawned = std::thread::Builder::new()
                .name("kvcache-redis-ask".into())
                .spawn(move || {
                    let _ = tx.send((i, ask(&node)));
                });
            if let Err(e) = spawned {
                errors[i] = Some(Error::io("local thread for a node query", e));
                finished += 1;
            }
            started += 1;
            next_start = now + stagger;
            continue;
        }
        if finished == nodes.len() {
            break;
        }
        let until = if started < nodes.len() {
            next_start.min(deadline)
        } else {
            deadline
        };
        match rx.recv_deadline(until) {
            Ok((_, Ok(answer))) => return Ok(answer),
            Ok((i, Err(e))) => {
                errors[i] = Some(e);
                finished += 1;
            }
            Err(RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                return Err(Error::Topology(format!(
                    "no node answered in time (asked: {})",
                    nodes[..started].join(", ")
                )));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("a sender is held here"),
        }
    }
    Err(errors
        .into_iter()
        .flatten()
        .next()
        .unwrap_or_else(|| Error::Topology("no node to ask".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn a_healthy_first_node_is_the_only_one_asked() {
        let asked = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let log = asked.clone();
        let got = first_answer(&nodes(&["a", "b"]), STAGGER, far(), move |n| {
            log.lock().push(n.to_string());
            Ok(n.to_string())
        });
        assert_eq!(got.unwrap(), "a");
        std::thread::sleep(STAGGER + Duration::from_millis(50));
        assert_eq!(*asked.lock(), ["a"]);
    }

    #[test]
    fn a_silent_node_costs_one_stagger() {
        let t = Instant::now();
        let got = first_answer(&nodes(&["silent", "b"]), Duration::from_millis(50), far(), |n| {
            if n == "silent" {
                std::thread::sleep(Duration::from_secs(2));
            }
            Ok(n.to_string())
        });
        assert_eq!(got.unwrap(), "b");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }

    #[test]
    fn a_failed_node_is_followed_at_once_and_the_first_error_is_kept() {
        let t = Instant::now();
        let got: Result<()> = first_answer(&nodes(&["a", "b", "c"]), Duration::from_secs(5), far(), |n| {
            Err(Error::Topology(format!("{n} refused")))
        });
        assert!(matches!(got, Err(Error::Topology(m)) if m == "a refused"));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let got: Result<()> = first_answer(&[], STAGGER, far(), |_| Ok(()));
        assert!(got.is_err());
    }

    #[test]
    fn the_deadline_bounds_everything() {
        let t = Instant::now();
        let got: Result<()> = first_answer(
            &nodes(&["a", "b"]),
            Duration::from_millis(20),
            Instant::now() + Duration::from_millis(200),
            |_| {
                std::thread::sleep(Duration::from_secs(2));
                Ok(())
            },
        );
        assert!(matches!(got, Err(Error::Topology(m)) if m.contains("a, b")));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
}
