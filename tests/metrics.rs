//! The `metrics` feature against a real server: a known sequence of calls, then the values a real recorder
//! (`metrics-util`'s debugging recorder, installed once for the whole test binary) received, checked one by one
//! and against `Client::stats`. Run with `cargo test --features metrics --test metrics`.

#![cfg(feature = "metrics")]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use kvcache_redis::{Client, Priority};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use support::{Kind, Server};

/// (name, sorted labels) -> value, from one snapshot.
type Seen = HashMap<(String, Vec<(String, String)>), DebugValue>;

fn snapshot(snapshotter: &metrics_util::debugging::Snapshotter) -> Seen {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            labels.sort();
            ((key.name().to_string(), labels), value)
        })
        .collect()
}

fn counter(seen: &Seen, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    labels.sort();
    match seen.get(&(name.to_string(), labels.clone())) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

#[test]
fn events_are_reported_as_they_happen() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this test binary");

    let server = Server::standalone(Kind::Redis);
    let client = Client::open(&server.url()).unwrap();
    let keys: Vec<String> = (0..10).map(|i| format!("metrics:{i}")).collect();
    let values: Vec<Vec<u8>> = (0..10).map(|i| vec![i as u8; 1000]).collect();
    assert!(client.batched_put(&keys, values).unwrap().iter().all(Result::is_ok));
    let mut asked = keys.clone();
    asked.extend((0..5).map(|i| format!("metrics:absent:{i}")));
    let got = client.batched_get(&asked).unwrap();
    assert_eq!(got.iter().filter(|g| matches!(g, Ok(Some(_)))).count(), 10);
    assert_eq!(client.get("metrics:absent:x").unwrap(), None);
    assert_eq!(client.batched_contains(&keys[..4]).unwrap(), 4);
    // One timeout: the server frozen, a short deadline.
    server.freeze();
    let err = client
        .call()
        .timeout(Duration::from_millis(200))
        .get("metrics:0")
        .unwrap_err();
    server.thaw();
    assert!(err.is_timeout(), "{err}");
    // Let the worker give up the frozen connection and settle.
    assert!(client.get("metrics:1").unwrap().is_some());

    let seen = snapshot(&snapshotter);
    let stats = client.stats();
    let calls = |op, p| counter(&seen, "kvcache_calls_total", &[("op", op), ("priority", p)]);
    let call_keys = |op, p| counter(&seen, "kvcache_call_keys_total", &[("op", op), ("priority", p)]);
    assert_eq!((calls("put", "put"), call_keys("put", "put")), (1, 10));
    assert_eq!((calls("get", "get"), call_keys("get", "get")), (4, 18));
    assert_eq!((calls("exists", "peek"), call_keys("exists", "peek")), (1, 4));
    assert_eq!(counter(&seen, "kvcache_hits_total", &[]), 11);
    assert_eq!(counter(&seen, "kvcache_misses_total", &[]), 6);
    assert_eq!(counter(&seen, "kvcache_written_bytes_total", &[]), 10_000);
    assert_eq!(counter(&seen, "kvcache_read_bytes_total", &[]), 11_000);
    assert_eq!(counter(&seen, "kvcache_key_errors_total", &[("kind", "timeout")]), 1);
    // The same events as `stats()`.
    for (name, value) in [
        ("kvcache_hits_total", stats.hits),
        ("kvcache_misses_total", stats.misses),
        ("kvcache_keys_total", stats.keys),
        ("kvcache_direct_keys_total", stats.direct_keys),
        ("kvcache_parts_total", stats.parts),
        ("kvcache_round_trips_total", stats.round_trips),
        ("kvcache_connects_total", stats.connects),
        ("kvcache_timeouts_total", stats.timeouts),
        ("kvcache_read_bytes_total", stats.bytes_read),
        ("kvcache_written_bytes_total", stats.bytes_written),
    ] {
        assert_eq!(counter(&seen, name, &[]), value, "{name}");
    }
    assert!(stats.connects >= 1 && stats.round_trips >= 5, "{stats:?}");
    // One latency sample per call, in seconds.
    let durations = |p: &str| match seen.get(&(
        "kvcache_call_duration_seconds".to_string(),
        vec![("priority".to_string(), p.to_string())],
    )) {
        Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect::<Vec<f64>>(),
        other => panic!("durations {p}: {other:?}"),
    };
    let gets = durations("get");
    assert_eq!(gets.len(), 4);
    assert!(gets.iter().all(|s| *s > 0.0 && *s < 5.0), "{gets:?}");
    assert!(
        gets.iter().any(|s| *s >= 0.19),
        "the timed-out call took its deadline: {gets:?}"
    );
    assert_eq!(durations("put").len(), 1);
    assert_eq!(stats.requests_at(Priority::Get), 4);
    // Every metric reported is in the README's table.
    let readme = include_str!("../README.md");
    for (name, _) in seen.keys() {
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not documented in the README"
        );
    }
    // Gauges: something was in flight (the puts' bytes at least), and nothing is once the last part is released
    // (a worker lets go of a part just after answering it).
    let gauge = |seen: &Seen, name: &str| match seen.get(&(name.to_string(), vec![])) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name}: {other:?}"),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut now = seen;
    while gauge(&now, "kvcache_in_flight_bytes") != 0.0 || gauge(&now, "kvcache_queued_parts") != 0.0 {
        assert!(std::time::Instant::now() < deadline, "bytes still in flight: {now:?}");
        std::thread::sleep(Duration::from_millis(10));
        now = snapshot(&snapshotter);
    }
    assert_eq!(gauge(&now, "kvcache_nodes_down"), 0.0);
}
