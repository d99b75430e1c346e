//! Sending and reading: the ready keys planned into one pipeline per free node and written; replies read as far
//! as they have arrived, turned into answers per key by the command vocabulary, and settled (a result, or a
//! resend after MOVED / ASK / a back-off).

use std::time::{Duration, Instant};

use super::Worker;
use super::link::{Link, Sent, What};
use crate::batch::{self, Limits, NodePlan, Parts, Spread};
use crate::command::{self, Answers, Args};
use crate::error::{Error, Result};
use crate::reader::{Expect, Reply};
use crate::request::Priority;
use crate::resp::{Head, Outgoing};
use crate::settle::{self, Answer, Decision};
use crate::unit::Unit;
use crate::value::KeyReply;

/// A connection that owes nothing and has been quiet this long is peeked at (`Connection::has_unread`) before a
/// pipeline goes out on it. A busier one is not: with a 1 ms gate the peek cost 16 threads of single small gets a
/// measurable share of their throughput (BENCHMARKS.md). Bytes nobody asked for that arrive with the last reply
/// owed are found by the read that finishes it (`read_link`); ones arriving later on a connection reused sooner
/// than this are not.
const PEEK_AFTER_IDLE: Duration = Duration::from_millis(100);

impl Worker {
    /// Plans the ready units and writes each pipeline whose node is free; keys for a node still busy with its
    /// previous pipeline (or connecting) stay ready for the next plan.
    pub(super) fn dispatch(&mut self) {
        self.replan = false;
        let mut units = std::mem::take(&mut self.ready);
        units.retain(|u| self.active.live(u));
        if units.is_empty() {
            return;
        }
        units.sort_by_cached_key(|u| self.active.order(u));
        let config = &self.shared.config;
        let limits = Limits {
            mget_max_keys: config.batch_max_keys,
            mget_max_bytes: config.batch_max_bytes,
            mget_max_value_size: config.mget_max_value_size,
            read_from: config.read_from,
        };
        let health = &self.shared.health;
        let spread = Spread {
            next: &mut self.pick,
            usable: &|n| health.readable(n),
        };
        let plan = batch::plan(&self.active, units, &self.map, limits, spread);
        for (unit, err) in plan.unroutable {
            self.shared.topology.request_refresh();
            self.finish(&unit, Err(err));
        }
        for np in plan.nodes {
            if let Err(e) = self.shared.health.check(&np.node) {
                if let Some(&i) = self.index.get(np.node.as_str()) {
                    self.links[i].conn = None;
                }
                for unit in np.steps.iter().flat_map(|s| &s.units) {
                    self.finish(unit, Err(e.clone()));
                }
                continue;
            }
            let i = self.link(&np.node);
            let link = &self.links[i];
            if link.owed.is_empty()
                && link
                    .conn
                    .as_ref()
                    .is_some_and(|c| c.last_io().elapsed() >= PEEK_AFTER_IDLE && c.has_unread())
            {
                // Bytes, or a close, on a connection that owes nothing: a reply nobody asked for would answer this
                // pipeline's first request. The connection goes; a fresh one takes the pipeline.
                let e = Error::protocol(&np.node, "bytes on a connection owing no reply");
                log::warn!("{e}: dropping the connection");
                self.fail_link(i, e);
            }
            let link = &self.links[i];
            if link.busy() || link.conn.is_none() {
                if link.conn.is_none() && link.connecting.is_none() {
                    let deadline = np
                        .steps
                        .iter()
                        .flat_map(|s| &s.units)
                        .filter_map(|u| self.active.deadline(u))
                        .max();
                    self.start_connect(i, deadline.unwrap_or_else(Instant::now));
                }
                self.ready.extend(np.steps.into_iter().flat_map(|s| s.units));
                continue;
            }
            self.send(i, np);
        }
    }

    /// This worker's link to `node`, made on first use.
    pub(super) fn link(&mut self, node: &str) -> usize {
        if let Some(&i) = self.index.get(node) {
            return i;
        }
        let node: std::sync::Arc<str> = node.into();
        self.links.push(Link::new(node.clone()));
        self.index.insert(node, self.links.len() - 1);
        self.links.len() - 1
    }

    /// Writes one node's pipeline (queued on its connection; `exchange` flushes it).
    pub(super) fn send(&mut self, i: usize, np: NodePlan) {
        let wait = self.wait_after(&np);
        let link = &mut self.links[i];
        let mut out = Outgoing::default();
        let (mut commands, mut keys) = (0, 0);
        for step in np.steps {
            let part = self.active.part(step.units[0].part);
            let step_keys = if step.command.per_node() {
                Vec::new() // a ping's unit stands for a node, not a key
            } else {
                step.units
                    .iter()
                    .map(|u| &self.active.part(u.part).keys[u.key][..])
                    .collect()
            };
            let args = Args {
                keys: step_keys,
                value: part.command.takes_values().then(|| &part.values[step.units[0].key]),
                // Each unit's own buffer, from its own part (an `MGET` may carry several callers' keys; planning
                // merges only parts that read alike).
                dests: part.dests.as_ref().map(|(_, fill)| {
                    let dests = step.units.iter().map(|u| {
                        let (d, _) = self.active.part(u.part).dests.as_ref().expect("parts that read alike");
                        &d[u.key]
                    });
                    (dests.collect(), *fill)
                }),
                verify: part.verify_frames,
                asking: step.asking,
            };
            command::encode(step.command, &args, &mut out);
            let (asking, own) = command::expect(step.command, &args);
            if let Some(expect) = asking {
                link.owed.push_back(Sent {
                    what: What::Asking,
                    expect,
                });
            }
            commands += 1;
            keys += step.units.len() as u64;
            link.owed.push_back(Sent {
                expect: own,
                what: What::Step {
                    command: step.command,
                    units: step.units,
                },
            });
        }
        if let Some((replicas, timeout)) = wait {
            command::wait::encode(replicas, timeout, &mut out);
            link.owed.push_back(Sent {
                what: What::Wait { replicas },
                expect: command::wait::EXPECT,
            });
            commands += 1;
        }
        self.shared.stats.round_trip(&np.node, commands, keys);
        link.reused = link.used;
        link.used = true;
        link.sent_at = Some(Instant::now());
        link.conn.as_mut().expect("dispatch checked").send(out);
    }

    /// `WAIT` after this node's pipeline: when replicas are asked for and it holds puts.
    pub(super) fn wait_after(&self, np: &NodePlan) -> Option<(usize, Duration)> {
        let wait = self.shared.config.wait_replicas?;
        np.steps.iter().any(|s| s.command.awaits_replicas()).then_some(wait)
    }

    /// Flushes pending writes and reads what readable links have; never waits.
    pub(super) fn exchange(&mut self) {
        for i in 0..self.links.len() {
            let link = &mut self.links[i];
            let Some(conn) = link.conn.as_mut() else { continue };
            if conn.wants_write()
                && let Err(e) = conn.flush()
            {
                self.fail_link(i, e);
                continue;
            }
            if link.readable && !link.owed.is_empty() {
                self.read_link(i);
            }
        }
    }

    /// Reads and settles every reply link `i` has received so far.
    pub(super) fn read_link(&mut self, i: usize) {
        let follows = self.map.follows_failovers();
        let node = self.links[i].node.clone();
        loop {
            let link = &mut self.links[i];
            let (Some(conn), Some(front)) = (link.conn.as_mut(), link.owed.front()) else {
                break;
            };
            let before = conn.last_io();
            let result = conn.read(&front.expect);
            let spoke = conn.last_io() != before;
            if spoke {
                link.unanswered_since = None;
            }
            if link.silent && spoke {
                // It speaks again after a silence: it may have been replaced meanwhile (a frozen primary still
                // acknowledges writes the moment it wakes). Its answers wait for a slot map read from now on.
                link.silent = false;
                if follows {
                    log::info!("{node} answers again after a silence; its answers wait for a slot map check");
                    link.unconfirmed_since.get_or_insert_with(Instant::now);
                    self.shared.topology.request_refresh();
                }
            }
            match result {
                Ok(None) => {
                    link.readable = false;
                    break;
                }
                Ok(Some(reply)) => {
                    let sent = link.owed.pop_front().expect("front");
                    self.moved = true;
                    self.on_reply(i, &node, sent, reply);
                }
                Err(e) => {
                    self.fail_link(i, e);
                    return;
                }
            }
        }
        let link = &mut self.links[i];
        if link.owed.is_empty() {
            // Bytes beyond the last reply owed belong to no request: the stream can no longer be trusted.
            if link.conn.as_ref().is_some_and(|c| c.buffered() > 0) {
                let e = Error::protocol(&node, "more replies than requests");
                return self.fail_link(i, e);
            }
            link.sent_at = None;
            link.marked = false;
            // The node is free for the keys that waited for it.
            self.replan |= !self.ready.is_empty();
        }
    }

    pub(super) fn on_reply(&mut self, i: usize, node: &str, sent: Sent, reply: Reply) {
        match sent.what {
            What::Asking => {
                if let Reply::Scalar(Head::Error(e)) = reply {
                    log::debug!("{node} refused ASKING: {} {}", e.code, e.detail);
                }
            }
            What::Wait { replicas } => {
                let acked = match command::wait::acked(reply, node) {
                    Ok(acked) => acked,
                    Err(e) => return self.fail_link(i, e),
                };
                let deferred = std::mem::take(&mut self.links[i].deferred);
                for (unit, answer) in deferred {
                    let answer = command::wait::verdict(answer, &acked, replicas, node);
                    self.settle(i, unit, answer);
                }
            }
            What::Step { command, units } => {
                let mut corrupt = 0;
                let answers = command::answers(command, units.len(), reply, node, &mut corrupt);
                self.shared.stats.corrupt.add(corrupt);
                match answers {
                    Err(e) => {
                        // Out of step: these units go down with the connection's other ones.
                        self.links[i].owed.push_front(Sent {
                            what: What::Step { command, units },
                            expect: Expect::Scalar,
                        });
                        self.fail_link(i, e);
                    }
                    Ok(Answers::OneByOne { code }) => {
                        let retry = usize::from(code == "TRYAGAIN");
                        self.shared.stats.retries.add(retry as u64);
                        self.ready.extend(units.into_iter().map(|u| Unit {
                            alone: true,
                            retries: u.retries + retry,
                            ..u
                        }));
                        self.replan = true;
                    }
                    Ok(Answers::Keys(answers)) => {
                        let link = &mut self.links[i];
                        let defer = command.awaits_replicas()
                            && matches!(
                                link.owed.back(),
                                Some(Sent {
                                    what: What::Wait { .. },
                                    ..
                                })
                            );
                        if defer {
                            link.deferred.extend(units.into_iter().zip(answers));
                        } else {
                            for (unit, answer) in units.into_iter().zip(answers) {
                                self.settle(i, unit, answer);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Acts on one key's answer from the node of link `i`: final, or a resend.
    pub(super) fn settle(&mut self, i: usize, unit: Unit, answer: Answer) {
        if !self.active.live(&unit) {
            return;
        }
        let node = &*self.links[i].node;
        let config = &self.shared.config;
        let limits = settle::Limits {
            max_redirects: config.max_redirects,
            max_retries: config.max_retries,
        };
        let decision = settle::decide(answer, &unit, limits, node);
        let unconfirmed = self.links[i]
            .unconfirmed_since
            .map(|since| (since, self.links[i].node.clone()));
        let stats = &self.shared.stats;
        match &decision {
            Decision::Final(_) => {}
            Decision::Moved { slot, node: to } => {
                stats.moved.add(1);
                self.shared.topology.apply_moved(*slot, to);
                self.shared.topology.request_refresh();
            }
            Decision::Ask { .. } => stats.asked.add(1),
            Decision::Retry { .. } => stats.retries.add(1),
            Decision::Demoted { .. } => {
                log::info!("{node} refused a write as a replica (READONLY): re-reading the topology");
                stats.retries.add(1);
                self.shared.topology.request_refresh();
            }
        }
        match decision {
            Decision::Final(result) => {
                match unconfirmed {
                    // Sent to that very node on purpose (ASK, PING): nothing to confirm.
                    Some((since, node)) if unit.to.is_none() => self.unconfirmed.push(super::Unconfirmed {
                        unit,
                        result,
                        node: node.to_string(),
                        since,
                    }),
                    _ => self.finish(&unit, result),
                }
            }
            retry @ (Decision::Retry { after } | Decision::Demoted { after }) => {
                let next = settle::resend(&unit, &retry);
                self.delayed.push((Instant::now() + after, next));
            }
            resend => {
                self.ready.push(settle::resend(&unit, &resend));
                self.replan = true;
            }
        }
    }

    pub(super) fn finish(&mut self, unit: &Unit, result: Result<KeyReply>) {
        if let Some(done) = self.active.finish(unit, result, &self.shared) {
            self.moved = true;
            if !self.answered.contains(&done.caller) {
                self.answered.push(done.caller);
            }
            self.part_done(done.priority, done.bytes);
        }
    }

    /// A part taken from the queue is answered.
    pub(super) fn part_done(&mut self, priority: Priority, bytes: usize) {
        if priority == Priority::Put {
            self.inbox.put_done(bytes);
        }
    }

    /// Drops `node`'s connection after `err`; what it owed is resent once on a fresh connection when the failed
    /// one had been reused (it may simply have gone stale; every command sent is idempotent), else failed.
    pub(super) fn fail_link(&mut self, i: usize, err: Error) {
        if self.map.is_replica(&self.links[i].node) && !self.links[i].owed.is_empty() {
            // Reads need no particular replica: try the shard's other nodes rather than fail.
            log::warn!("{err}; reading elsewhere");
            let node = self.links[i].node.clone();
            return self.avoid_replica(&node);
        }
        let link = &mut self.links[i];
        let units: Vec<Unit> = link.units().cloned().collect();
        let reused = link.reused;
        link.reset();
        if units.iter().any(|u| self.active.live(u)) {
            log::warn!("{err}; dropping the connection");
        }
        if self.map.is_cluster() {
            self.shared.topology.request_refresh();
        }
        self.moved = true;
        for unit in units {
            if !self.active.live(&unit) {
                continue;
            }
            if reused && !unit.io_retried && !err.is_timeout() {
                self.shared.stats.io_retries.add(1);
                self.ready.push(Unit {
                    io_retried: true,
                    ..unit
                });
                self.replan = true;
            } else {
                self.finish(&unit, Err(err.clone()));
            }
        }
    }
}
