//! Entry points for the crate's own benchmarks of its pure parts; not part of the API (hidden from the docs).

use std::time::Instant;

use bytes::Bytes;

use crate::batch::{self, Limits};
use crate::command::Command;
use crate::request::{Part, Priority};
use crate::slot_map::SlotMap;
use crate::unit::Unit;

/// Plans one batched get of `keys` (values of `value_size` bytes) against a standalone server or a 3-primary
/// cluster, as a worker does; returns the number of commands planned.
pub fn plan_gets(keys: &[Bytes], cluster: bool, value_size: usize) -> usize {
    let map = if cluster {
        three_primaries()
    } else {
        SlotMap::standalone("127.0.0.1:6379".into())
    };
    let parts = [Part {
        command: Command::Get,
        priority: Priority::Get,
        keys: keys.to_vec(),
        values: Vec::new(),
        bytes: keys.len() * value_size,
        expected_value: value_size,
        verify_frames: false,
        dests: None,
        deadline: Instant::now(),
        reply: Default::default(),
        _ticket: None,
        caller: 0,
    }];
    let units = (0..keys.len()).map(|k| Unit::new(0, k)).collect();
    let limits = Limits {
        mget_max_keys: 512,
        mget_max_bytes: 2 << 20,
        mget_max_value_size: 128 << 10,
        read_from: crate::config::ReadFrom::Primary,
    };
    let mut next = 0;
    let spread = batch::Spread {
        next: &mut next,
        usable: &|_| true,
    };
    let plan = batch::plan(&parts[..], units, &map, limits, spread);
    plan.nodes.iter().map(|n| n.steps.len()).sum()
}

fn three_primaries() -> SlotMap {
    use redis::Value;
    let range = |a: i64, b: i64, port: i64| {
        Value::Array(vec![
            Value::Int(a),
            Value::Int(b),
            Value::Array(vec![Value::BulkString(b"127.0.0.1".to_vec()), Value::Int(port)]),
        ])
    };
    let reply = Value::Array(vec![
        range(0, 5460, 7000),
        range(5461, 10922, 7001),
        range(10923, 16383, 7002),
    ]);
    SlotMap::from_cluster_slots(&reply, "127.0.0.1:7000").expect("a valid map")
}
