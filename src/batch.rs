//! Planning: turns the keys of the parts a worker drained into one pipeline per node, with `GET`s of one slot
//! merged into bounded `MGET`s. Pure: no I/O.

use std::collections::HashMap;

use crate::command::Command;
use crate::config::ReadFrom;
use crate::error::Error;
use crate::request::Part;
use crate::slot_map::SlotMap;
use crate::unit::Unit;
use crate::value::Fill;

/// One command in a node's pipeline and the units it answers, in reply order (several for an `MGET`).
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) command: Command,
    pub(crate) asking: bool,
    pub(crate) units: Vec<Unit>,
}

/// Everything one node gets in one round trip.
#[derive(Debug)]
pub(crate) struct NodePlan {
    pub(crate) node: String,
    pub(crate) steps: Vec<Step>,
}

/// The outcome of planning: pipelines per node, and units that cannot be routed.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) nodes: Vec<NodePlan>,
    pub(crate) unroutable: Vec<(Unit, Error)>,
}

/// Bounds that shape the plan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most keys in one `MGET`.
    pub(crate) mget_max_keys: usize,
    /// Most expected bytes in one `MGET`.
    pub(crate) mget_max_bytes: usize,
    /// Values expected larger than this get a `GET` each.
    pub(crate) mget_max_value_size: usize,
    /// Where reads go.
    pub(crate) read_from: ReadFrom,
}

/// How reads are spread over a shard's nodes: a rotation (kept by the caller from plan to plan) and which replicas
/// may be used now.
pub(crate) struct Spread<'a> {
    pub(crate) next: &'a mut usize,
    pub(crate) usable: &'a dyn Fn(&str) -> bool,
}

/// Where planning finds the part of a unit.
pub(crate) trait Parts {
    fn part(&self, index: usize) -> &Part;
}

impl Parts for [Part] {
    fn part(&self, index: usize) -> &Part {
        &self[index]
    }
}

/// Plans `units` (in the order given, which is priority order) against `map`. Writes go to primaries; reads go
/// where `limits.read_from` says, a shard's node taken in turn per slot for keys that share an `MGET`, per key for
/// the others.
pub(crate) fn plan<P: Parts + ?Sized>(
    parts: &P,
    units: Vec<Unit>,
    map: &SlotMap,
    limits: Limits,
    spread: Spread,
) -> Plan {
    let mut out = Plan::default();
    // Map node index -> index in `out.nodes`, so routing a key costs no string work.
    let mut planned: Vec<Option<usize>> = vec![None; map.nodes.len()];
    // (node, slot, how values are read) -> index of the open MGET step in that node's pipeline. Parts that read
    // values differently (checked as chunk frames, or into caller buffers, and how) never share an `MGET`: its
    // reply is read one way.
    let mut open_mget: HashMap<(usize, Option<u16>, ReadMode), usize> = HashMap::new();
    // (shard, slot) -> the node this plan reads that slot's merged keys from.
    let mut read_at: HashMap<(usize, Option<u16>), usize> = HashMap::new();
    for unit in units {
        let part = parts.part(unit.part);
        // Keys of one slot share one command (`MGET`), bounded in keys and expected bytes; not when a key must go
        // alone (ASK, a refused `MGET` being retried key by key) or is expected large (a caller's buffer says how
        // large it may be).
        let expected = match &part.dests {
            Some((dests, _)) => dests[unit.key].lock().as_mut().map_or(0, |d| d.bytes().len()),
            None => part.expected_value,
        };
        let merges = part.command.merges() && !unit.asking && !unit.alone && expected <= limits.mget_max_value_size;
        let (n, slot) = match &unit.to {
            // Rare (ASK targets, pings): found by name.
            Some(to) => match out.nodes.iter().position(|p| &p.node == to) {
                Some(n) => (n, None),
                None => (push_node(&mut out, to), None),
            },
            None => match map.route(&part.keys[unit.key]) {
                Ok((i, slot)) if part.command.reads() && limits.read_from != ReadFrom::Primary => {
                    let slot = slot.map(|s| s.get());
                    let mut choose = || {
                        let candidates = map.read_candidates(i, limits.read_from, spread.usable);
                        let node = candidates[*spread.next % candidates.len()];
                        *spread.next = spread.next.wrapping_add(1);
                        match out.nodes.iter().position(|p| p.node == node) {
                            Some(n) => n,
                            None => push_node(&mut out, node),
                        }
                    };
                    let n = if merges {
                        match read_at.get(&(i, slot)) {
                            Some(&n) => n,
                            None => {
                                let n = choose();
                                read_at.insert((i, slot), n);
                                n
                            }
                        }
                    } else {
                        choose()
                    };
                    (n, slot)
                }
                Ok((i, slot)) => {
                    let n = match planned[i] {
                        Some(n) => n,
                        None => {
                            let n = out.nodes.iter().position(|p| p.node == map.nodes[i]);
                            let n = n.unwrap_or_else(|| push_node(&mut out, &map.nodes[i]));
                            planned[i] = Some(n);
                            n
                        }
                    };
                    (n, slot.map(|s| s.get()))
                }
                Err(e) => {
                    out.unroutable.push((unit, e));
                    continue;
                }
            },
        };
        let steps = &mut out.nodes[n].steps;
        let single = || Step {
            command: part.command,
            asking: unit.asking,
            units: Vec::new(),
        };
        if merges {
            let per_step = (limits.mget_max_bytes / expected.max(1)).clamp(1, limits.mget_max_keys);
            let mode = ReadMode::of(part);
            match open_mget.get(&(n, slot, mode)).copied() {
                Some(i) if steps[i].units.len() < per_step => steps[i].units.push(unit),
                _ => {
                    open_mget.insert((n, slot, mode), steps.len());
                    let mut step = single();
                    step.units.push(unit);
                    steps.push(step);
                }
            }
            continue;
        }
        let mut step = single();
        step.units.push(unit);
        steps.push(step);
    }
    out
}

/// How a part's values are read: what decides whether two parts' keys may share an `MGET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ReadMode {
    verify: bool,
    fill: Option<Fill>,
}

impl ReadMode {
    fn of(part: &Part) -> ReadMode {
        ReadMode {
            verify: part.verify_frames,
            fill: part.dests.as_ref().map(|(_, f)| *f),
        }
    }
}

fn push_node(out: &mut Plan, node: &str) -> usize {
    out.nodes.push(NodePlan {
        node: node.to_string(),
        steps: Vec::new(),
    });
    out.nodes.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Priority;
    use crate::slot::Slot;
    use bytes::Bytes;
    use std::time::Instant;

    fn part(command: Command, keys: &[&str], expected: usize) -> Part {
        Part {
            command,
            priority: Priority::Get,
            keys: keys.iter().map(|k| Bytes::copy_from_slice(k.as_bytes())).collect(),
            values: Vec::new(),
            bytes: 0,
            expected_value: expected,
            verify_frames: false,
            dests: None,
            deadline: Instant::now(),
            reply: Default::default(),
            _ticket: None,
            caller: 0,
        }
    }

    fn units(parts: &[Part]) -> Vec<Unit> {
        parts
            .iter()
            .enumerate()
            .flat_map(|(p, part)| (0..part.keys.len()).map(move |k| Unit::new(p, k)))
            .collect()
    }

    const LIMITS: Limits = Limits {
        mget_max_keys: 100,
        mget_max_bytes: 1 << 20,
        mget_max_value_size: 128 << 10,
        read_from: ReadFrom::Primary,
    };

    /// Plans with every replica usable and a fresh rotation.
    fn plan_all(parts: &[Part], units: Vec<Unit>, map: &SlotMap, limits: Limits) -> Plan {
        let mut next = 0;
        plan(
            parts,
            units,
            map,
            limits,
            Spread {
                next: &mut next,
                usable: &|_| true,
            },
        )
    }

    fn two_node_map() -> SlotMap {
        use redis::Value;
        let range = |a, b, port| {
            Value::Array(vec![
                Value::Int(a),
                Value::Int(b),
                Value::Array(vec![Value::BulkString(b"h".to_vec()), Value::Int(port)]),
            ])
        };
        SlotMap::from_cluster_slots(&Value::Array(vec![range(0, 8191, 1), range(8192, 16383, 2)]), "h:1").unwrap()
    }

    #[test]
    fn standalone_gets_from_many_parts_share_one_mget() {
        let parts = vec![part(Command::Get, &["a", "b"], 100), part(Command::Get, &["c"], 100)];
        let map = SlotMap::standalone("h:1".into());
        let plan = plan_all(&parts[..], units(&parts), &map, LIMITS);
        assert_eq!(plan.nodes.len(), 1);
        let steps = &plan.nodes[0].steps;
        assert_eq!(steps.len(), 1);
        assert_eq!((steps[0].command, steps[0].units.len()), (Command::Get, 3));
        let order: Vec<_> = steps[0].units.iter().map(|u| (u.part, u.key)).collect();
        assert_eq!(order, vec![(0, 0), (0, 1), (1, 0)]);
    }

    #[test]
    fn mgets_are_bounded_by_keys_and_bytes() {
        let keys: Vec<String> = (0..250).map(|i| format!("k{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let map = SlotMap::standalone("h:1".into());
        let parts = vec![part(Command::Get, &refs, 10)];
        let p = plan_all(&parts[..], units(&parts), &map, LIMITS);
        let sizes: Vec<_> = p.nodes[0].steps.iter().map(|s| s.units.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        // 64 KiB expected: 1 MiB / 64 KiB = 16 keys per MGET.
        let parts = vec![part(Command::Get, &refs[..40], 64 << 10)];
        let p = plan_all(&parts[..], units(&parts), &map, LIMITS);
        let sizes: Vec<_> = p.nodes[0].steps.iter().map(|s| s.units.len()).collect();
        assert_eq!(sizes, vec![16, 16, 8]);
        // Large values: one GET each.
        let parts = vec![part(Command::Get, &refs[..3], 1 << 20)];
        let p = plan_all(&parts[..], units(&parts), &map, LIMITS);
        assert!(
            p.nodes[0]
                .steps
                .iter()
                .all(|s| s.command == Command::Get && s.units.len() == 1)
        );
        assert_eq!(p.nodes[0].steps.len(), 3);
    }

    #[test]
    fn reads_into_buffers_merge_by_buffer_size() {
        use crate::value::{DestSlot, Destination, Fill};
        use parking_lot::Mutex;
        use std::sync::Arc;
        let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let map = SlotMap::standalone("h:1".into());
        let with_buffers = |size: usize| {
            let mut p = part(Command::Get, &refs, 10);
            let dests: Vec<DestSlot> = (0..refs.len())
                .map(|_| Arc::new(Mutex::new(Some(Box::new(vec![0u8; size]) as Box<dyn Destination>))))
                .collect();
            p.dests = Some((dests, Fill::Fit));
            vec![p]
        };
        // Small buffers: MGETs of as many keys as their sizes allow (1 MiB / 64 KiB = 16 keys each).
        let parts = with_buffers(64 << 10);
        let p = plan_all(&parts[..], units(&parts), &map, LIMITS);
        let sizes: Vec<_> = p.nodes[0].steps.iter().map(|s| s.units.len()).collect();
        assert_eq!(sizes, vec![16, 16, 8]);
        // Buffers above the MGET value bound: one GET each, whatever the size hint says.
        let parts = with_buffers(1 << 20);
        let p = plan_all(&parts[..], units(&parts), &map, LIMITS);
        assert!(p.nodes[0].steps.iter().all(|s| s.units.len() == 1));
    }

    #[test]
    fn cluster_mgets_never_cross_slots_and_group_per_node() {
        let keys: Vec<String> = (0..500).map(|i| format!("key:{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let parts = vec![part(Command::Get, &refs, 100)];
        let map = two_node_map();
        let p = plan_all(&parts[..], units(&parts), &map, LIMITS);
        assert_eq!(p.nodes.len(), 2);
        let mut seen = 0;
        for node in &p.nodes {
            for step in &node.steps {
                let slots: std::collections::HashSet<_> = step
                    .units
                    .iter()
                    .map(|u| Slot::of(parts[0].keys[u.key].as_ref()))
                    .collect();
                assert_eq!(slots.len(), 1, "an MGET spans slots");
                let owner = map.route(parts[0].keys[step.units[0].key].as_ref()).unwrap().0;
                assert_eq!(map.nodes[owner], node.node);
                seen += step.units.len();
            }
        }
        assert_eq!(seen, 500);
    }

    #[test]
    fn tagged_keys_share_an_mget_and_writes_are_one_step_per_key() {
        let parts = vec![
            part(Command::Get, &["{t}a", "{t}b", "{t}c"], 100),
            part(Command::Set { ttl_secs: None }, &["x", "y"], 0),
        ];
        let map = two_node_map();
        let p = plan_all(&parts[..], units(&parts), &map, LIMITS);
        let mgets: Vec<_> = p
            .nodes
            .iter()
            .flat_map(|n| &n.steps)
            .filter(|s| s.units.len() > 1)
            .collect();
        assert_eq!(mgets.len(), 1);
        assert_eq!(mgets[0].units.len(), 3);
        let sets = p
            .nodes
            .iter()
            .flat_map(|n| &n.steps)
            .filter(|s| matches!(s.command, Command::Set { .. }));
        assert_eq!(sets.count(), 2);
    }

    #[test]
    fn ask_targets_bypass_the_map_with_asking() {
        let parts = vec![part(Command::Get, &["a", "b"], 100)];
        let mut u = units(&parts);
        u[1].to = Some("other:9".into());
        u[1].asking = true;
        let p = plan_all(&parts[..], u, &SlotMap::standalone("h:1".into()), LIMITS);
        let other = p.nodes.iter().find(|n| n.node == "other:9").unwrap();
        assert_eq!(other.steps.len(), 1);
        assert!(other.steps[0].asking);
        assert_eq!(other.steps[0].command, Command::Get);
    }

    #[test]
    fn reads_spread_over_replicas_and_writes_stay_on_the_primary() {
        let map = SlotMap::sentinel("p:1".into(), vec!["r:1".into(), "r:2".into()]);
        let spread = Limits {
            read_from: ReadFrom::Spread,
            ..LIMITS
        };
        let nodes = |p: &Plan| -> Vec<(String, usize)> {
            p.nodes
                .iter()
                .map(|n| (n.node.clone(), n.steps.iter().map(|s| s.units.len()).sum()))
                .collect()
        };
        // Large values (a GET each): key by key over the three nodes.
        let parts = vec![part(Command::Get, &["a", "b", "c", "d", "e", "f"], 1 << 20)];
        let p = plan_all(&parts, units(&parts), &map, spread);
        assert_eq!(nodes(&p), [("p:1".into(), 2), ("r:1".into(), 2), ("r:2".into(), 2)]);
        // Small values: one MGET on one node per plan; the next plan takes the next node.
        let parts = vec![part(Command::Get, &["a", "b", "c"], 100)];
        let mut next = 0;
        let mut run = || {
            let usable: &dyn Fn(&str) -> bool = &|n| n != "r:2";
            let sp = Spread {
                next: &mut next,
                usable,
            };
            nodes(&plan(&parts[..], units(&parts), &map, spread, sp))
        };
        assert_eq!(run(), [("p:1".to_string(), 3)]);
        assert_eq!(run(), [("r:1".to_string(), 3)]);
        assert_eq!(run(), [("p:1".to_string(), 3)], "an unusable replica is skipped");
        // Replicas only; writes always on the primary.
        let replica = Limits {
            read_from: ReadFrom::Replica,
            ..LIMITS
        };
        let parts = vec![
            part(Command::Exists, &["a"], 1),
            part(Command::Set { ttl_secs: None }, &["b"], 1),
        ];
        let p = plan_all(&parts, units(&parts), &map, replica);
        assert_eq!(nodes(&p), [("r:1".into(), 1), ("p:1".into(), 1)]);
    }
}
