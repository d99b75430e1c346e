//! Sentinel-managed deployments. Every Sentinel is asked for the primary of the service and its replicas; the
//! answer of the highest config epoch wins, so as soon as any Sentinel names a new primary the client follows it,
//! whatever the old primary still answers. The primary named is verified with `ROLE` (one a newer epoch names that
//! cannot be asked is followed all the same: the old one must take no more writes); replicas flagged down,
//! disconnected or not linked to their primary are left out. The Sentinels' announcements (`+promoted-slave`,
//! `+switch-master`) are watched on a thread of their own, so a failover is learned the moment it is made.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use redis::Value;

use crate::connection::{ConnectOptions, Connection};
use crate::error::{Error, Result};
use crate::reader::{Expect, Reply};
use crate::resp::Outgoing;
use crate::slot_map::SlotMap;

mod view;
mod watch;

pub use view::{SentinelAnswer, SentinelReplica, SentinelView};
use view::{address, parse_view};
pub(crate) use watch::watch;

/// Once a majority of the Sentinels answered, the others are waited for this much longer.
const GRACE: Duration = Duration::from_millis(200);

/// The Sentinels of one service, and how to reach them.
#[derive(Clone)]
pub(crate) struct Sentinels {
    pub(crate) addrs: Vec<String>,
    pub(crate) service: String,
    /// The Sentinels' own credentials and the deployment's TLS.
    pub(crate) opts: ConnectOptions,
    /// The config epoch of the primary followed so far (-1 before the first): answers older than it are stale.
    pub(crate) followed_epoch: Arc<AtomicI64>,
}

impl Sentinels {
    /// What every Sentinel says now (each asked within `timeout`), for tools to show.
    pub(crate) fn answers(&self, timeout: Duration) -> Vec<SentinelAnswer> {
        self.ask_all(timeout)
            .into_iter()
            .map(|(sentinel, view)| SentinelAnswer {
                sentinel,
                service: self.service.clone(),
                view,
            })
            .collect()
    }

    /// Asks every Sentinel at once (each within `timeout`) for the service; their answers, in order. Returns once
    /// all have answered, or once a majority has and the others had `GRACE` more: a frozen or cut-off Sentinel
    /// must not hold an open or every refresh for a whole `timeout` (the one after a failover among them).
    /// Sentinels that had not answered by then appear with a timeout error.
    pub(crate) fn ask_all(&self, timeout: Duration) -> Vec<(String, Result<SentinelView>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut answers: Vec<Option<Result<SentinelView>>> = self.addrs.iter().map(|_| None).collect();
        for (i, addr) in self.addrs.iter().enumerate() {
            let (me, addr, tx) = (self.clone(), addr.clone(), tx.clone());
            let spawned = std::thread::Builder::new()
                .name("kvcache-redis-ask".into())
                .spawn(move || {
                    let _ = tx.send((i, me.ask(&addr, timeout)));
                });
            if let Err(e) = spawned {
                answers[i] = Some(Err(Error::io("local thread for a Sentinel query", e)));
            }
        }
        let majority = self.addrs.len() / 2 + 1;
        let deadline = Instant::now() + timeout * 2;
        let mut until = deadline;
        while answers.iter().any(Option::is_none) {
            let Ok((i, answer)) = rx.recv_deadline(until) else {
                break;
            };
            answers[i] = Some(answer);
            let ok = answers.iter().filter(|a| matches!(a, Some(Ok(_)))).count();
            if ok >= majority {
                until = until.min(Instant::now() + GRACE);
            }
        }
        self.addrs
            .iter()
            .zip(answers)
            .map(|(a, r)| {
                let r = r.unwrap_or_else(|| Err(Error::Timeout { node: Some(a.clone()) }));
                (a.clone(), r)
            })
            .collect()
    }

    fn ask(&self, addr: &str, timeout: Duration) -> Result<SentinelView> {
        let opts = ConnectOptions {
            timeout,
            ..self.opts.clone()
        };
        let mut conn = Connection::connect(addr, &opts)?;
        let service = self.service.as_bytes();
        let mut out = Outgoing::default();
        out.push(&[b"SENTINEL", b"MASTER", service]);
        out.push(&[b"SENTINEL", b"REPLICAS", service]);
        // The Sentinel leading a failover names the promoted replica here as soon as it is promoted, while its
        // `SENTINEL MASTER` still shows the old primary (with the new config epoch) until every replica follows.
        out.push(&[b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", service]);
        let replies = conn.round_trip(
            out,
            &[Expect::Value, Expect::Value, Expect::Value],
            Instant::now() + timeout,
        )?;
        let mut replies = replies.into_iter().map(|r| match r {
            Reply::Value(v) => v,
            other => unreachable!("Value asked, got {other:?}"),
        });
        let mut next = || replies.next().expect("three replies");
        let (master, replicas, current) = (next(), next(), next());
        let mut view = parse_view(&master, &replicas, addr)?;
        if let Some(primary) = address(&current) {
            view.primary = primary;
        }
        view.replicas.retain(|r| r.addr != view.primary);
        Ok(view)
    }

    /// The map of the service: the primary of the highest config epoch any Sentinel reports, verified with `ROLE`
    /// over `data` (the data nodes' settings) unless it is `current` (verified when it was first named: asking a
    /// primary that is cut off would hold every refresh for a connect timeout, the failover's among them), and its
    /// usable replicas. The error says which Sentinels were asked and what each answered.
    ///
    /// Epochs never go back: when the Sentinels that answered in time all report an older config epoch than the
    /// primary already followed (the one that led the last failover was slow to answer, the others had not heard
    /// of it yet), the round is refused and the client keeps its primary. Following them would send writes to the
    /// old primary, which a restart brings back as a primary until the Sentinels demote it, and lose them there.
    ///
    /// For the same reason, a newer epoch naming another primary is followed even when `ROLE` cannot be asked of it
    /// (its connection refused, timed out, or the client's user disabled there): the old primary keeps saying it is
    /// one until the Sentinels demote it, seconds later, and writes it takes meanwhile are lost when they do. Calls
    /// to the new primary fail until it answers, then go through. A node that answers it is not a primary is still
    /// refused.
    pub(crate) fn discover(&self, data: &ConnectOptions, timeout: Duration, current: Option<&str>) -> Result<SlotMap> {
        let answers = self.ask_all(timeout);
        let best = answers
            .iter()
            .filter_map(|(a, r)| r.as_ref().ok().map(|v| (a, v)))
            .fold(None::<(&String, &SentinelView)>, |best, (a, v)| match best {
                Some((_, b)) if b.epoch >= v.epoch => best,
                _ => Some((a, v)),
            });
        let Some((from, view)) = best else {
            return Err(self.no_answer(answers));
        };
        let followed = self.followed_epoch.load(Ordering::Acquire);
        if view.epoch < followed {
            return Err(Error::Topology(format!(
                "the Sentinels that answered name {} at config epoch {}, older than epoch {followed} of the primary \
                 this client follows; keeping it",
                view.primary, view.epoch
            )));
        }
        if current != Some(view.primary.as_str()) {
            match primary_role(&view.primary, data, timeout) {
                Ok(role) if role == "master" => {}
                Ok(role) => {
                    return Err(Error::Topology(format!(
                        "Sentinel {from} names {} as the primary of {:?}, but it says it is a {role}",
                        view.primary, self.service
                    )));
                }
                Err(e) => match current {
                    Some(old) if view.epoch > followed => log::warn!(
                        "Sentinel {from} names {} as the primary of {:?} at config epoch {} (newer than {followed}); \
                         following it unverified ({e}): {old} is no longer the primary",
                        view.primary,
                        self.service,
                        view.epoch
                    ),
                    _ => return Err(e),
                },
            }
        }
        let replicas = view
            .replicas
            .iter()
            .filter(|r| r.usable())
            .map(|r| r.addr.clone())
            .collect();
        self.followed_epoch.fetch_max(view.epoch, Ordering::AcqRel);
        Ok(SlotMap::sentinel(view.primary.clone(), replicas))
    }

    /// The error when no Sentinel gave a view: an authentication error, or the refusal every Sentinel gave, as it
    /// is (typed), else one that names the service and what each Sentinel said.
    fn no_answer(&self, answers: Vec<(String, Result<SentinelView>)>) -> Error {
        let auth = answers.iter().find_map(|(_, r)| match r {
            Err(e) if matches!(e.server_code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM")) => Some(e.clone()),
            _ => None,
        });
        if let Some(e) = auth {
            return e;
        }
        if answers.iter().all(|(_, r)| matches!(r, Err(Error::Server { .. }))) {
            return answers
                .into_iter()
                .find_map(|(_, r)| r.err())
                .expect("one answer at least");
        }
        let unknown = answers
            .iter()
            .all(|(_, r)| matches!(r, Err(Error::Topology(m)) if m.contains("knows no service")));
        let asked: Vec<String> = answers
            .into_iter()
            .map(|(a, r)| format!("{a}: {}", r.err().map_or_else(String::new, |e| e.to_string())))
            .collect();
        if unknown {
            Error::Topology(format!(
                "no Sentinel knows a service named {:?} (asked {})",
                self.service,
                asked.join("; ")
            ))
        } else {
            Error::Topology(format!(
                "no Sentinel answered for service {:?}: {}",
                self.service,
                asked.join("; ")
            ))
        }
    }
}

/// The first element of `ROLE` on `node`: `master`, `slave` (Redis and Valkey still say so), `sentinel`.
fn primary_role(node: &str, data: &ConnectOptions, timeout: Duration) -> Result<String> {
    let opts = ConnectOptions {
        timeout,
        db: 0,
        readonly: false,
        ..data.clone()
    };
    let mut conn = Connection::connect(node, &opts)?;
    match conn.call(&[b"ROLE"], timeout)? {
        Value::Array(items) => match items.first() {
            Some(Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
            Some(Value::SimpleString(s)) => Ok(s.clone()),
            _ => Err(Error::protocol(node, "ROLE without a role")),
        },
        Value::ServerError(e) => Err(Error::Server {
            node: node.to_string(),
            code: e.code().to_string(),
            detail: e.details().unwrap_or("").to_string(),
        }),
        other => Err(Error::protocol(node, format!("ROLE: {other:?}"))),
    }
}
