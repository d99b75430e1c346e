//! Planning: turns the keys of the parts a worker drained into one pipeline per node, with `GET`s of one slot
//! merged into bounded `MGET`s. Pure: no I/O.

use std::collections::HashMap;

use crate::command::Command;
use crate::error::Error;
use crate::request::Part;
use crate::slot_map::SlotMap;
use crate::unit::Unit;

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

/// Plans `units` (in the order given, which is priority order) against `map`.
pub(crate) fn plan<P: Parts + ?Sized>(parts: &P, units: Vec<Unit>, map: &SlotMap, limits: Limits) -> Plan {
    let mut out = Plan::default();
    // Map node index -> index in `out.nodes`, so routing a key costs no string work.
    let mut planned: Vec<Option<usize>> = vec![None; map.nodes.len()];
    // (node, slot) -> index of the open MGET step in that node's pipeline.
    let mut open_mget: HashMap<(usize, Option<u16>), usize> = HashMap::new();
    for unit in units {
        let part = parts.part(unit.part);
        let (n, slot) = match &unit.to {
            // Rare (ASK targets, pings): found by name.
            Some(to) => match out.nodes.iter().position(|p| &p.node == to) {
                Some(n) => (n, None),
                None => (push_node(&mut out, to), None),
            },
            None => match map.route(&part.keys[unit.key]) {
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
        // Keys of one slot share one command (`MGET`), bounded in keys and expected bytes; not when a key must go
        // alone (ASK, a refused `MGET` being retried key by key), into a caller's buffer, or is expected large.
        let merges = part.command.merges()
            && !unit.asking
            && !unit.alone
            && part.dests.is_none()
            && part.expected_value <= limits.mget_max_value_size;
        if merges {
            let per_step = (limits.mget_max_bytes / part.expected_value.max(1)).clamp(1, limits.mget_max_keys);
            match open_mget.get(&(n, slot)).copied() {
                Some(i) if steps[i].units.len() < per_step => steps[i].units.push(unit),
                _ => {
                    open_mget.insert((n, slot), steps.len());
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
    };

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
        let plan = plan(&parts[..], units(&parts), &map, LIMITS);
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
        let p = plan(&parts[..], units(&parts), &map, LIMITS);
        let sizes: Vec<_> = p.nodes[0].steps.iter().map(|s| s.units.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        // 64 KiB expected: 1 MiB / 64 KiB = 16 keys per MGET.
        let parts = vec![part(Command::Get, &refs[..40], 64 << 10)];
        let p = plan(&parts[..], units(&parts), &map, LIMITS);
        let sizes: Vec<_> = p.nodes[0].steps.iter().map(|s| s.units.len()).collect();
        assert_eq!(sizes, vec![16, 16, 8]);
        // Large values: one GET each.
        let parts = vec![part(Command::Get, &refs[..3], 1 << 20)];
        let p = plan(&parts[..], units(&parts), &map, LIMITS);
        assert!(
            p.nodes[0]
                .steps
                .iter()
                .all(|s| s.command == Command::Get && s.units.len() == 1)
        );
        assert_eq!(p.nodes[0].steps.len(), 3);
    }

    #[test]
    fn cluster_mgets_never_cross_slots_and_group_per_node() {
        let keys: Vec<String> = (0..500).map(|i| format!("key:{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let parts = vec![part(Command::Get, &refs, 100)];
        let map = two_node_map();
        let p = plan(&parts[..], units(&parts), &map, LIMITS);
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
        let p = plan(&parts[..], units(&parts), &map, LIMITS);
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
        let p = plan(&parts[..], u, &SlotMap::standalone("h:1".into()), LIMITS);
        let other = p.nodes.iter().find(|n| n.node == "other:9").unwrap();
        assert_eq!(other.steps.len(), 1);
        assert!(other.steps[0].asking);
        assert_eq!(other.steps[0].command, Command::Get);
    }
}
