//! What does not go to plan: deadlines (a node silent until one passes is marked down), back-offs, nodes silent
//! past `silence_timeout` (reported, so the slot map is re-read), new slot maps (keys waiting on a silent node that
//! no longer serves them are resent), answers held until a slot map confirms their node, and connects, which run on
//! threads of their own since a connect to a partitioned host hangs.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{AVOID_REPLICA, Connected, REPORT_EVERY, SLOW_CONNECT, Worker};
use crate::batch::Parts;
use crate::config::ReadFrom;
use crate::connection::connect_in_background;
use crate::error::Error;
use crate::unit::Unit;

impl Worker {
    /// Answers every unit whose part's deadline has passed, marking down a node that stayed silent until then,
    /// and drops connections whose replies nobody waits for any more (a late reply must never be read as the
    /// answer to a later request).
    pub(super) fn expire(&mut self, now: Instant) {
        if self.active.next_deadline().is_none_or(|d| d > now) {
            return;
        }
        let expired: HashSet<(usize, u32)> = self
            .active
            .expired(now)
            .iter()
            .map(|u| (u.part, u.generation))
            .collect();
        let silence = self.shared.config.silence_timeout;
        let mut timed_out = Vec::new();
        for link in &mut self.links {
            let mine: Vec<Unit> = link
                .units()
                .filter(|u| expired.contains(&(u.part, u.generation)) && self.active.live(u))
                .cloned()
                .collect();
            if mine.is_empty() {
                continue;
            }
            let quiet = now.duration_since(link.last_progress());
            let down = !link.marked && link.conn.is_some() && quiet >= silence;
            link.marked |= down;
            timed_out.push((link.node.clone(), mine, down.then_some(quiet)));
        }
        for (node, units, down) in timed_out {
            let err = Error::Timeout {
                node: Some(node.to_string()),
            };
            if let Some(quiet) = down {
                // Not a byte for that long: the server is stalled. Marked down, so that other requests fail at
                // once instead of each waiting out its deadline; a probe notices when it answers again.
                log::warn!("{node} sent nothing for {quiet:?}: marked down");
                if self
                    .shared
                    .health
                    .mark_down(&node, &err, &self.shared.connect, self.in_map())
                {
                    self.shared.stats.marked_down.add(1);
                }
            }
            for unit in units {
                self.finish(&unit, Err(err.clone()));
            }
        }
        let waiting: Vec<(Unit, Option<String>)> = self
            .ready
            .iter()
            .map(|u| (u.clone(), u.to.clone()))
            .chain(self.delayed.iter().map(|(_, u)| (u.clone(), u.to.clone())))
            .chain(self.unconfirmed.iter().map(|c| (c.unit.clone(), Some(c.node.clone()))))
            .filter(|(u, _)| expired.contains(&(u.part, u.generation)))
            .collect();
        for (unit, node) in waiting {
            self.finish(&unit, Err(Error::Timeout { node }));
        }
        for unit in self.active.expired(now) {
            self.finish(&unit, Err(Error::Timeout { node: None }));
        }
        self.delayed.retain(|(_, u)| self.active.live(u));
        self.unconfirmed.retain(|c| self.active.live(&c.unit));
        for link in &mut self.links {
            if !link.owed.is_empty() && !link.units().any(|u| self.active.live(u)) {
                log::debug!(
                    "{}: every reply owed is past its deadline; dropping the connection",
                    link.node
                );
                link.drop_unanswered();
            }
        }
    }

    pub(super) fn release_delayed(&mut self, now: Instant) {
        if self.delayed.iter().any(|(at, _)| *at <= now) {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            self.delayed = later;
            self.ready.extend(due.into_iter().map(|(_, u)| u));
            self.replan = true;
            self.moved = true;
        }
    }

    /// Settles the answers held from nodes that were silent, once a slot map read after them says whether the
    /// node still serves their keys: if so they stand, else the keys are resent to the new owner.
    pub(super) fn confirm(&mut self) {
        if self.unconfirmed.is_empty() && self.links.iter().all(|l| l.unconfirmed_since.is_none()) {
            return;
        }
        let Some(read_at) = self.shared.topology.refreshed_at() else {
            return;
        };
        // Read after `refreshed_at`: the map is at least as new as that refresh.
        let map = self.shared.topology.current();
        for link in &mut self.links {
            if link.unconfirmed_since.is_some_and(|s| s < read_at) {
                link.unconfirmed_since = None;
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unconfirmed)
            .into_iter()
            .partition(|c| c.since < read_at);
        self.unconfirmed = later;
        for c in due {
            if !self.active.live(&c.unit) {
                continue;
            }
            self.moved = true;
            let part = Parts::part(&self.active, c.unit.part);
            let (key, write) = (&part.keys[c.unit.key], !part.command.reads());
            if map.serves(&c.node, key, write, self.shared.config.read_from) {
                self.finish(&c.unit, c.result);
            } else {
                log::info!("{} no longer serves a key it answered after a silence: resent", c.node);
                self.shared.stats.rerouted.add(1);
                self.ready.push(Unit {
                    to: None,
                    asking: false,
                    redirects: c.unit.redirects + 1,
                    ..c.unit
                });
                self.replan = true;
            }
        }
    }

    /// Takes a new slot map: keys waiting on a node that went silent and no longer serves them are resent to the
    /// new owner now, on a fresh connection, rather than at their deadline.
    pub(super) fn follow_topology(&mut self) {
        if self.shared.topology.epoch() == self.epoch {
            return;
        }
        let (map, epoch) = self.shared.topology.current_with_epoch();
        self.map = map;
        self.epoch = epoch;
        self.replan = true;
        self.moved = true;
        let read_from = self.shared.config.read_from;
        for link in &mut self.links {
            // A key waiting on a node that no longer serves it (a replaced primary, a slot moved, a replica gone)
            // is resent by the new map: whatever that node may still answer (a replaced primary acknowledges writes
            // until it learns it was replaced) would be lost or stale.
            let moved = link.units().any(|u| {
                u.to.is_none() && self.active.live(u) && {
                    let part = Parts::part(&self.active, u.part);
                    !self
                        .map
                        .serves(&link.node, &part.keys[u.key], !part.command.reads(), read_from)
                }
            });
            if !moved {
                continue;
            }
            let units: Vec<Unit> = link.units().filter(|u| self.active.live(u)).cloned().collect();
            log::info!(
                "the map no longer has {} serve what it was sent: {} key(s) resent by the new map",
                link.node,
                units.len()
            );
            link.reset();
            self.shared.stats.rerouted.add(units.len() as u64);
            self.ready.extend(units);
        }
    }

    /// Reports nodes silent past `silence_timeout`, or whose connect has hung that long (Cluster only): the slot
    /// map is then re-read from the others.
    pub(super) fn watch(&mut self, now: Instant) {
        if !self.map.follows_failovers() {
            return;
        }
        let (mut silent_replicas, mut silent_primaries) = (Vec::new(), Vec::new());
        for i in 0..self.links.len() {
            let silence = self.silence_for(&self.links[i].node);
            let replica = self.map.is_replica(&self.links[i].node);
            let link = &mut self.links[i];
            let node = &link.node;
            // A connect that hangs (a blackholed address) is silence too.
            if !link.busy() {
                continue;
            }
            if replica && self.shared.health.avoided(node) {
                // Another worker found it silent or refusing.
                silent_replicas.push(node.clone());
                continue;
            }
            let quiet = now.duration_since(link.last_progress());
            if quiet < silence {
                continue;
            }
            if !link.silent {
                // Whatever it says next waits for a slot map read (it may have been replaced meanwhile), also when
                // it is a connect that hung so long.
                link.silent = true;
                self.shared.stats.silences.add(1);
                log::warn!("{node} owes replies and has sent nothing for {quiet:?}: re-reading the slot map");
            }
            if replica {
                silent_replicas.push(node.clone());
            }
            if link.reported.is_none_or(|at| now.duration_since(at) >= REPORT_EVERY) {
                link.reported = Some(now);
                if !replica && self.shared.config.read_from != ReadFrom::Primary {
                    // Renewed with each report (the avoidance outlasts REPORT_EVERY), not replanned every turn.
                    silent_primaries.push(node.clone());
                }
                self.shared.health.report_silent(node);
                self.shared.topology.request_refresh();
            }
        }
        // Reads need no particular replica: a silent one is avoided at once, its reads resent elsewhere.
        for node in silent_replicas {
            self.avoid_replica(&node);
        }
        for node in silent_primaries {
            self.read_off_primary(&node);
        }
    }

    /// A silent primary while replicas are read from: reads stay off it for now (its replicas serve them), and
    /// the reads it owes are resent there when reads are all it owes and a replica of its shard is usable (writes
    /// wait for it, or for its successor).
    fn read_off_primary(&mut self, node: &str) {
        let health = &self.shared.health;
        health.avoid(node, AVOID_REPLICA);
        self.replan = true;
        let Some(shard) = self.map.nodes.iter().position(|n| n.as_str() == node) else {
            return;
        };
        let elsewhere = self
            .map
            .read_candidates(shard, self.shared.config.read_from, &|n| health.readable(n))
            .iter()
            .any(|n| *n != node);
        let Some(&i) = self.index.get(node) else { return };
        let units = self.owed_units(i);
        let reads_only = units
            .iter()
            .all(|u| u.to.is_none() && Parts::part(&self.active, u.part).command.reads());
        if elsewhere && !units.is_empty() && reads_only {
            self.links[i].drop_unanswered();
            self.resend(units, &format!("primary {node} is silent"));
        }
    }

    /// The live units link `i` owes replies for.
    fn owed_units(&self, i: usize) -> Vec<Unit> {
        self.links[i].units().filter(|u| self.active.live(u)).cloned().collect()
    }

    /// Plans `units` again (their link was dropped) and counts them as rerouted, saying why.
    fn resend(&mut self, units: Vec<Unit>, why: &str) {
        if !units.is_empty() {
            log::info!("{why}: {} read(s) resent elsewhere", units.len());
            self.shared.stats.rerouted.add(units.len() as u64);
        }
        self.ready.extend(units);
        self.replan = true;
        self.moved = true;
    }

    pub(super) fn start_connect(&mut self, i: usize, deadline: Instant) {
        let now = Instant::now();
        let link = &mut self.links[i];
        let node = link.node.clone();
        link.connecting = Some(now);
        let mut opts = self.shared.connect.clone();
        // Cluster replicas answer reads only on a connection that said READONLY (harmless on a primary).
        opts.readonly = self.map.is_cluster() && self.shared.config.read_from != crate::config::ReadFrom::Primary;
        opts.timeout = opts
            .timeout
            .min(deadline.saturating_duration_since(now))
            .max(Duration::from_millis(1));
        let (tx, waker, pool, name) = (
            self.connects.0.clone(),
            self.wakeup.waker(),
            self.shared.pool.clone(),
            node.to_string(),
        );
        let spawned = connect_in_background(name.clone(), opts, pool, "kvcache-redis-connect", move |result| {
            let _ = tx.send(Connected {
                node: name,
                started: now,
                result,
            });
            waker.wake();
        });
        if let Err(e) = spawned {
            link.connecting = None;
            self.fail_waiting(&node, &Error::io("local connect thread", e));
        }
    }

    pub(super) fn collect_connects(&mut self) {
        while let Ok(c) = self.connects.1.try_recv() {
            self.moved = true;
            self.replan = true;
            let i = self.link(&c.node);
            let link = &mut self.links[i];
            link.connecting = None;
            match c.result {
                Ok(conn) => {
                    self.shared.stats.connects.add(1);
                    // A frozen server's kernel still accepts connections: a silence carried over from the
                    // connection dropped unanswered goes on until the node sends a byte.
                    link.reset_keeping_silence();
                    link.conn = Some(conn);
                }
                Err(e) => {
                    log::debug!("connect to {}: {e}", c.node);
                    // A connect that failed slowly (a blackholed or hung host): mark the node down, so that other
                    // workers do not wait on it too, and probe it in the background. A quick refusal is simply
                    // tried again by the next request, so a restarted server is used the moment it is back.
                    if (e.is_io() || e.is_timeout()) && c.started.elapsed() >= SLOW_CONNECT {
                        log::warn!("{} is down: {e}", c.node);
                        if self
                            .shared
                            .health
                            .mark_down(&c.node, &e, &self.shared.connect, self.in_map())
                        {
                            self.shared.stats.marked_down.add(1);
                        }
                    }
                    if self.map.is_cluster() {
                        self.shared.topology.request_refresh();
                    }
                    self.fail_waiting(&c.node, &e);
                }
            }
        }
    }

    /// Fails the ready units that would go to `node`.
    pub(super) fn fail_waiting(&mut self, node: &str, err: &Error) {
        if self.map.is_replica(node) {
            // Reads need no particular replica: the waiting ones go to the shard's other nodes.
            log::warn!("replica {node}: {err}");
            return self.avoid_replica(node);
        }
        let units = std::mem::take(&mut self.ready);
        for unit in units {
            if !self.active.live(&unit) {
                continue;
            }
            let target = match &unit.to {
                Some(to) => Some(to.as_str()),
                None => {
                    let key = &Parts::part(&self.active, unit.part).keys[unit.key];
                    self.map.route(key).ok().map(|(i, _)| self.map.nodes[i].as_str())
                }
            };
            if target == Some(node) {
                self.finish(&unit, Err(err.clone()));
            } else {
                self.ready.push(unit);
            }
        }
    }

    /// For a probe: whether a node is still in the slot map (false once the client is gone).
    fn in_map(&self) -> crate::health::Wanted {
        let topology = std::sync::Arc::downgrade(&self.shared.topology);
        Box::new(move |node| {
            topology
                .upgrade()
                .is_some_and(|t| t.current().nodes.iter().any(|n| n == node))
        })
    }

    /// Stops reading from replica `node` for a while (it is silent or refuses connections), and resends the reads
    /// waiting on it to the shard's other nodes.
    pub(super) fn avoid_replica(&mut self, node: &str) {
        self.shared.health.avoid(node, AVOID_REPLICA);
        let Some(&i) = self.index.get(node) else { return };
        let units = self.owed_units(i);
        self.links[i].reset();
        self.resend(units, &format!("replica {node} is avoided for reads"));
    }
}
