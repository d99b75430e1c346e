//! The client against a real standalone Redis 7 and Valkey 9.

#[macro_use]
mod support;

use kvcache_redis::{Client, Config};
use support::{Kind, Server, command_calls, shared_standalone, suite, unique};

fn client(kind: Kind) -> Client {
    Client::open(&shared_standalone(kind).url()).expect("open")
}

fn ttl_of(kind: Kind, key: &[u8]) -> i64 {
    redis::cmd("TTL")
        .arg(key)
        .query(&mut shared_standalone(kind).admin())
        .unwrap()
}

contract_tests!(
    detects_standalone,
    a_batch_is_one_mget_in_one_round_trip,
    empty_key_and_database_selection,
    a_server_without_cluster_commands_is_standalone
);

/// Behind a proxy, or with `CLUSTER` renamed away, `CLUSTER SLOTS` is an unknown command: `mode=auto` uses the
/// server as a standalone one; `mode=cluster` fails at open, saying why.
fn a_server_without_cluster_commands_is_standalone(kind: Kind) {
    let server = Server::start(
        kind,
        support::server::free_port(),
        support::server::Options {
            extra: vec!["--rename-command".into(), "CLUSTER".into(), "".into()],
            ..Default::default()
        },
    );
    let client = Client::open(&server.url()).unwrap();
    assert!(!client.is_cluster());
    let p = unique("no-cluster");
    client.put(format!("{p}k"), b"v".to_vec()).unwrap();
    assert_eq!(client.get(format!("{p}k")).unwrap().as_deref(), Some(&b"v"[..]));
    let err = Client::open(&format!("{}?mode=cluster", server.url())).unwrap_err();
    let text = err.to_string();
    assert!(text.to_lowercase().contains("cluster"), "{text}");
    println!("{kind:?}: mode=cluster on a server without CLUSTER: {text}");
}

fn detects_standalone(kind: Kind) {
    assert!(!client(kind).is_cluster());
}

/// 1000 keys from one call go out as one MGET in one pipeline (one worker, bounds above 1000).
fn a_batch_is_one_mget_in_one_round_trip(kind: Kind) {
    let server = Server::standalone(kind);
    let config = Config::from_url(&server.url())
        .unwrap()
        .workers(1)
        .batch_max_keys(2000)
        .value_size_hint(64);
    let client = Client::with_config(config).unwrap();
    let p = unique("mget");
    let keys: Vec<String> = (0..1000).map(|i| format!("{p}{i}")).collect();
    let values: Vec<Vec<u8>> = (0..1000).map(|i| format!("v{i}").into_bytes()).collect();
    client.batched_put(&keys, values.clone()).unwrap();
    let (mget_before, get_before) = (command_calls(&server, "mget"), command_calls(&server, "get"));
    let rt_before = client.stats().round_trips;
    let got = client.batched_get(&keys).unwrap();
    assert!(
        got.into_iter()
            .zip(&values)
            .all(|(g, v)| g.unwrap().as_deref() == Some(&v[..]))
    );
    assert_eq!(command_calls(&server, "mget") - mget_before, 1, "one MGET");
    assert_eq!(command_calls(&server, "get") - get_before, 0, "no single GETs");
    assert_eq!(client.stats().round_trips - rt_before, 1, "one round trip");
    let node = client.stats().node(&server.addr()).cloned().unwrap();
    assert!(node.keys >= 2000, "{node:?}");
    // Into caller buffers too: one MGET, each value straight into its buffer.
    let (mget_before, get_before) = (command_calls(&server, "mget"), command_calls(&server, "get"));
    let filled = client.batched_get_into(&keys, vec![vec![0u8; 16]; 1000]);
    for (f, v) in filled.iter().zip(&values) {
        assert_eq!(f.result.as_ref().unwrap(), &Some(v.len()));
        assert_eq!(&f.buf.as_ref().unwrap()[..v.len()], &v[..]);
    }
    assert_eq!(command_calls(&server, "mget") - mget_before, 1, "one MGET into buffers");
    assert_eq!(command_calls(&server, "get") - get_before, 0, "no single GETs");
}

fn empty_key_and_database_selection(kind: Kind) {
    let server = Server::standalone(kind);
    let db0 = Client::open(&server.url()).unwrap();
    suite::empty_key(&db0);
    let db3 = Client::open(&format!("{}/3", server.url())).unwrap();
    db3.put(b"where", b"three".to_vec()).unwrap();
    assert_eq!(db0.get(b"where").unwrap(), None, "db 3 is separate from db 0");
    let in_db3: Option<Vec<u8>> = {
        let mut admin = server.admin();
        redis::cmd("SELECT").arg(3).exec(&mut admin).unwrap();
        redis::cmd("GET").arg("where").query(&mut admin).unwrap()
    };
    assert_eq!(in_db3.as_deref(), Some(&b"three"[..]));
}

#[test]
fn call_latencies_are_recorded_per_priority() {
    let client = Client::open(&shared_standalone(Kind::Redis).url()).unwrap();
    for i in 0..50 {
        client.put(format!("lat{i}"), vec![1u8; 100]).unwrap();
        client.get(format!("lat{i}")).unwrap();
    }
    client.exists("lat0").unwrap();
    let stats = client.stats();
    let (get, put, peek, prefetch) = (stats.latency[2], stats.latency[3], stats.latency[0], stats.latency[1]);
    assert_eq!((get.count, put.count, peek.count, prefetch.count), (50, 50, 1, 0));
    for l in [get, put] {
        assert!(l.p50_us > 0 && l.p50_us <= l.p99_us && l.p99_us <= l.max_us, "{l:?}");
        assert!(l.max_us < 5_000_000, "{l:?}");
    }
}
