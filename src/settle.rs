//! What one key's answer means: final (a value, a flag, an error), or a resend (MOVED, ASK, a back-off after
//! TRYAGAIN / CLUSTERDOWN / LOADING / MASTERDOWN) within the redirect and retry limits. Pure: no I/O.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::resp::ServerReply;
use crate::slot::Slot;
use crate::slot_map::Redirect;
use crate::unit::Unit;
use crate::value::KeyReply;

/// First back-off after TRYAGAIN / CLUSTERDOWN / LOADING / MASTERDOWN; doubles per retry up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(320);

/// One key's answer from a node: a reply, the server's refusal, or a local verdict on what came back (a value
/// that does not fit the caller's buffer).
pub(crate) type Answer = std::result::Result<KeyReply, Refusal>;

#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    Server(ServerReply),
    Local(Error),
}

/// What to do with a unit after its answer.
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    /// The key's result.
    Final(Result<KeyReply>),
    /// The slot lives elsewhere now: record it in the map, resend by the map.
    Moved { slot: Slot, node: String },
    /// The slot is migrating: resend to `node` with `ASKING`, map unchanged.
    Ask { node: String },
    /// Resend to the same place after `after`.
    Retry { after: Duration },
    /// The node is no longer the primary (`READONLY`): re-read the topology, resend by the map after `after`.
    Demoted { after: Duration },
}

/// The limits a unit's resends are held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_redirects: usize,
    pub(crate) max_retries: usize,
}

/// Decides what `answer`, from `node`, means for `unit` (whose counters say what its earlier attempts used).
pub(crate) fn decide(answer: Answer, unit: &Unit, limits: Limits, node: &str) -> Decision {
    let e = match answer {
        Ok(reply) => return Decision::Final(Ok(reply)),
        Err(Refusal::Local(e)) => return Decision::Final(Err(e)),
        Err(Refusal::Server(e)) => e,
    };
    let Some(redirect) = Redirect::parse(&e.code, &e.detail) else {
        if e.code == "CROSSSLOT" {
            log::error!("{node}: CROSSSLOT: {}", e.detail);
        }
        return Decision::Final(Err(e.into_error(node)));
    };
    match redirect {
        Redirect::Retry if unit.retries >= limits.max_retries => Decision::Final(Err(e.into_error(node))),
        Redirect::Retry => Decision::Retry {
            after: backoff(unit.retries),
        },
        Redirect::Demoted if unit.retries >= limits.max_retries => Decision::Final(Err(e.into_error(node))),
        Redirect::Demoted => Decision::Demoted {
            after: backoff(unit.retries),
        },
        _ if unit.redirects >= limits.max_redirects => Decision::Final(Err(Error::TooManyRedirects {
            node: node.to_string(),
            limit: limits.max_redirects,
        })),
        Redirect::Moved { slot, node } => Decision::Moved { slot, node },
        Redirect::Ask { node } => Decision::Ask { node },
    }
}

/// The pause before retry number `retries + 1`.
pub(crate) fn backoff(retries: usize) -> Duration {
    (FIRST_BACKOFF * 2u32.pow(retries.min(6) as u32)).min(MAX_BACKOFF)
}

/// `unit` as it is resent after `decision` (which must not be final).
pub(crate) fn resend(unit: &Unit, decision: &Decision) -> Unit {
    let mut next = unit.clone();
    match decision {
        Decision::Moved { .. } => {
            next.redirects += 1;
            next.to = None;
            next.asking = false;
        }
        Decision::Ask { node } => {
            next.redirects += 1;
            next.to = Some(node.clone());
            next.asking = true;
        }
        Decision::Retry { .. } => next.retries += 1,
        Decision::Demoted { .. } => {
            next.retries += 1;
            next.to = None;
            next.asking = false;
        }
        Decision::Final(_) => unreachable!("a final answer is not resent"),
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_redirects: 2,
        max_retries: 3,
    };

    fn refused(code: &str, detail: &str) -> Answer {
        Err(Refusal::Server(ServerReply {
            code: code.into(),
            detail: detail.into(),
        }))
    }

    fn unit(redirects: usize, retries: usize) -> Unit {
        Unit {
            redirects,
            retries,
            ..Unit::new(0, 0)
        }
    }

    #[test]
    fn the_decision_table() {
        let moved = Decision::Moved {
            slot: Slot::new(12).unwrap(),
            node: "h:2".into(),
        };
        let cases: Vec<(Answer, Unit, Decision)> = vec![
            (Ok(KeyReply::Done), unit(0, 0), Decision::Final(Ok(KeyReply::Done))),
            (refused("MOVED", "12 h:2"), unit(0, 0), moved.clone()),
            (refused("MOVED", "12 h:2"), unit(1, 3), moved),
            (
                refused("ASK", "12 h:3"),
                unit(0, 0),
                Decision::Ask { node: "h:3".into() },
            ),
            (
                refused("TRYAGAIN", "x"),
                unit(2, 0),
                Decision::Retry { after: backoff(0) },
            ),
            (
                refused("CLUSTERDOWN", "x"),
                unit(0, 2),
                Decision::Retry { after: backoff(2) },
            ),
            (
                refused("LOADING", "x"),
                unit(0, 1),
                Decision::Retry { after: backoff(1) },
            ),
            (
                refused("MASTERDOWN", "x"),
                unit(0, 0),
                Decision::Retry { after: backoff(0) },
            ),
            (
                refused("READONLY", "You can't write against a read only replica."),
                unit(0, 1),
                Decision::Demoted { after: backoff(1) },
            ),
        ];
        for (answer, unit, want) in cases {
            let got = decide(answer.clone(), &unit, LIMITS, "h:1");
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{answer:?} {unit:?}");
        }
    }

    #[test]
    fn limits_turn_resends_into_errors() {
        let d = decide(refused("MOVED", "12 h:2"), &unit(2, 0), LIMITS, "h:1");
        assert!(
            matches!(&d, Decision::Final(Err(Error::TooManyRedirects { node, limit: 2 })) if node == "h:1"),
            "{d:?}"
        );
        let d = decide(refused("TRYAGAIN", "busy"), &unit(0, 3), LIMITS, "h:1");
        let Decision::Final(Err(e)) = d else { panic!("{d:?}") };
        assert_eq!(e.server_code(), Some("TRYAGAIN"));
        for (code, detail) in [
            ("WRONGTYPE", "x"),
            ("NOPERM", "y"),
            ("MOVED", "garbage"),
            ("CROSSSLOT", "z"),
        ] {
            let d = decide(refused(code, detail), &unit(0, 0), LIMITS, "h:1");
            assert!(
                matches!(&d, Decision::Final(Err(e)) if e.server_code() == Some(code)),
                "{d:?}"
            );
        }
        let local = Err(Refusal::Local(Error::InvalidInput("too big".into())));
        assert!(matches!(
            decide(local, &unit(0, 0), LIMITS, "h:1"),
            Decision::Final(Err(Error::InvalidInput(_)))
        ));
    }

    #[test]
    fn resends_count_and_retarget() {
        let u = unit(0, 0);
        let asked = resend(&u, &Decision::Ask { node: "h:3".into() });
        assert_eq!(
            (asked.redirects, asked.to.as_deref(), asked.asking),
            (1, Some("h:3"), true)
        );
        let moved = resend(
            &asked,
            &Decision::Moved {
                slot: Slot::new(1).unwrap(),
                node: "h:4".into(),
            },
        );
        assert_eq!((moved.redirects, moved.to.clone(), moved.asking), (2, None, false));
        let retried = resend(&moved, &Decision::Retry { after: backoff(0) });
        assert_eq!((retried.redirects, retried.retries), (2, 1));
        let pauses: Vec<u64> = (0..8).map(|r| backoff(r).as_millis() as u64).collect();
        assert_eq!(pauses, vec![10, 20, 40, 80, 160, 320, 320, 320]);
    }
}
