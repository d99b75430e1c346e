//! Bad input, table by table: each gets a typed error naming the problem, nothing is sent, and the client keeps
//! working (real servers).

#[macro_use]
mod support;

use std::time::Duration;

use kvcache_redis::{Client, Config, Error, Mode};
use support::{Kind, Server, command_calls, shared_standalone};

fn bad_urls_and_settings_are_refused(kind: Kind) {
    let port = shared_standalone(kind).port;
    let urls: &[(String, &str)] = &[
        (format!("http://127.0.0.1:{port}"), "unknown scheme"),
        ("redis://".to_string(), "bad host"),
        ("redis://127.0.0.1:70000".to_string(), "bad host"),
        (format!("redis://127.0.0.1:{port}/x"), "bad database"),
        (format!("redis://:%G1@127.0.0.1:{port}"), "bad percent-encoding"),
        (format!("redis://*:{port}"), "bad host"),
        (format!("redis://127.0.0.1:{port}?speed=max"), "unknown option"),
        (
            format!("redis://127.0.0.1:{port}?workers=0"),
            "workers must be at least 1",
        ),
        (
            format!("redis://127.0.0.1:{port}?batch_max_keys=0"),
            "batch_max_keys must be at least 1",
        ),
        (
            format!("rediss://127.0.0.1:{port}?tls_ca=%2Fno%2Fsuch%2Ffile.pem"),
            "reading /no/such/file.pem",
        ),
    ];
    for (url, reason) in urls {
        match Client::open(url) {
            Err(Error::Config(m)) => assert!(m.contains(reason), "{url}: {m}"),
            other => panic!("{url}: expected a config error, got {other:?}"),
        }
    }
    let base = || Config::from_url(&format!("redis://127.0.0.1:{port}")).unwrap();
    let settings: Vec<(Config, &str)> = vec![
        (base().workers(0), "workers"),
        (base().batch_max_bytes(0), "batch_max_bytes"),
        (base().value_size_hint(0), "value_size_hint"),
        (base().max_key_bytes(0), "max_key_bytes"),
        (base().max_value_bytes(0), "max_value_bytes"),
        (base().request_timeout(Duration::ZERO), "timeouts"),
        (base().ttl_secs(Some(0)), "ttl_secs"),
    ];
    for (config, reason) in settings {
        match Client::with_config(config) {
            Err(Error::Config(m)) => assert!(m.contains(reason), "{reason}: {m}"),
            other => panic!("{reason}: expected a config error, got {other:?}"),
        }
    }
    // Asking for a cluster where there is none.
    let err = Client::with_config(base().mode(Mode::Cluster)).unwrap_err();
    assert!(
        matches!(err, Error::Topology(ref m) if m.contains("not a cluster node")),
        "{err}"
    );
}

fn oversized_keys_and_values_never_leave_the_client(kind: Kind) {
    let server = Server::standalone(kind);
    let config = Config::from_url(&server.url())
        .unwrap()
        .max_key_bytes(16)
        .max_value_bytes(1024);
    let client = Client::with_config(config).unwrap();
    client.put("fine", vec![1u8; 1024]).unwrap();
    let (sets, gets) = (
        command_calls(&server, "set"),
        command_calls(&server, "get") + command_calls(&server, "mget"),
    );
    let long_key = "k".repeat(17);
    let cases: Vec<(Result<(), Error>, &str)> = vec![
        (client.put(&long_key, b"v".to_vec()), "max_key_bytes"),
        (client.get(&long_key).map(|_| ()), "max_key_bytes"),
        (
            client.batched_get(&["ok", long_key.as_str()]).map(|_| ()),
            "key 1 is 17 bytes",
        ),
        (
            client.batched_contains(&[long_key.as_str()]).map(|_| ()),
            "max_key_bytes",
        ),
        (client.put("ok", vec![0u8; 1025]), "max_value_bytes"),
        (
            client
                .batched_put(&["a", "b"], vec![vec![0u8; 1], vec![0u8; 2000]])
                .map(|_| ()),
            "value 1 is 2000 bytes",
        ),
        (
            client.batched_put(&["a", "b"], vec![vec![0u8; 1]]).map(|_| ()),
            "2 keys but 1 values",
        ),
        (client.call().ttl_secs(Some(0)).put("a", b"x".to_vec()), "TTL of 0"),
    ];
    for (result, reason) in cases {
        match result {
            Err(Error::InvalidInput(m)) => assert!(m.contains(reason), "{reason}: {m}"),
            other => panic!("{reason}: expected invalid input, got {other:?}"),
        }
    }
    let gets_after = command_calls(&server, "get") + command_calls(&server, "mget");
    assert_eq!(
        (command_calls(&server, "set"), gets_after),
        (sets, gets),
        "nothing was sent"
    );
    // Still working, and nothing already stored was lost.
    assert_eq!(client.get("fine").unwrap().as_deref(), Some(&vec![1u8; 1024][..]));
}

per_kind!(
    bad_urls_and_settings_are_refused,
    oversized_keys_and_values_never_leave_the_client
);
