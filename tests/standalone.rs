//! The client against a real standalone Redis 7 and Valkey 9.

mod support;

use kvcache_redis::{Client, Config};
use support::{Kind, Server, command_calls, shared_standalone, suite, unique};

fn client(kind: Kind) -> Client {
    Client::open(&shared_standalone(kind).url()).expect("open")
}

fn ttl_probe(server: &Server) -> impl Fn(&[u8]) -> i64 + '_ {
    move |key| redis::cmd("TTL").arg(key).query(&mut server.admin()).unwrap()
}

macro_rules! per_kind {
    ($($kind:ident => $k:expr),*) => {$(
        mod $kind {
            use super::*;

            #[test]
            fn detects_standalone() {
                assert!(!client($k).is_cluster());
            }
            #[test]
            fn single_key_operations() {
                suite::single_key_operations(&client($k));
            }
            #[test]
            fn batched_get_is_positional() {
                suite::batched_get_is_positional(&client($k));
            }
            #[test]
            fn prefix_calls_stop_at_the_first_miss() {
                suite::prefix_calls_stop_at_the_first_miss(&client($k));
            }
            #[test]
            fn empty_batches_are_answered_locally() {
                suite::empty_batches_are_answered_locally(&client($k));
            }
            #[test]
            fn large_values_round_trip() {
                suite::large_values_round_trip(&client($k));
            }
            #[test]
            fn bad_input_is_rejected() {
                suite::bad_input_is_rejected_and_the_client_keeps_working(&client($k));
            }
            #[test]
            fn ttl_is_set_per_call() {
                let server = shared_standalone($k);
                suite::ttl_is_set_per_call(&client($k), &ttl_probe(server));
            }
            #[test]
            fn many_threads_share_one_client() {
                suite::many_threads_share_one_client(&client($k));
            }
            #[test]
            fn a_batch_is_one_mget_in_one_round_trip() {
                one_mget_per_batch($k);
            }
            #[test]
            fn empty_key_and_database_selection() {
                empty_key_and_db($k);
            }
        }
    )*};
}

per_kind!(redis7 => Kind::Redis, valkey9 => Kind::Valkey);

/// 1000 keys from one call go out as one MGET in one pipeline (one worker, bounds above 1000).
fn one_mget_per_batch(kind: Kind) {
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
}

fn empty_key_and_db(kind: Kind) {
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
