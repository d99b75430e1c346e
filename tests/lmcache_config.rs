//! LMCache configuration files reused as they are, against real servers.

#[macro_use]
mod support;

use kvcache_redis::{Client, Config};
use support::{Kind, Server};

fn load(file: &str, port: u16) -> kvcache_redis::LmcacheConfig {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("PORT", &port.to_string());
    Config::from_lmcache_yaml(&text).unwrap()
}

fn valkey_connector_file(kind: Kind) {
    let server = Server::standalone(kind);
    let mut admin = server.admin();
    redis::cmd("ACL")
        .arg(&["SETUSER", "lmcache", "on", ">lmcache-secret", "~*", "+@all"])
        .exec(&mut admin)
        .unwrap();
    let loaded = load("lmcache-valkey.yaml", server.port);
    assert!(loaded.unknown.is_empty(), "{:?}", loaded.unknown);
    let client = Client::with_config(loaded.config).unwrap();
    client.put("from-lmcache-config", b"v".to_vec()).unwrap();
    // Database 2, TTL 600 s, as the file says.
    redis::cmd("SELECT").arg(2).exec(&mut admin).unwrap();
    let ttl: i64 = redis::cmd("TTL").arg("from-lmcache-config").query(&mut admin).unwrap();
    assert!((500..=600).contains(&ttl), "ttl {ttl}");
}

fn redis_connector_file(kind: Kind) {
    let server = Server::standalone(kind);
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("lmcache-secret")
        .exec(&mut server.admin())
        .unwrap();
    let loaded = load("lmcache-redis.yaml", server.port);
    assert_eq!(
        loaded.unknown,
        vec!["extra_config.typo_key"],
        "unknown keys are reported"
    );
    let client = Client::with_config(loaded.config).unwrap();
    let keys: Vec<String> = (0..120).map(|i| format!("k{i}")).collect();
    client
        .batched_put(&keys, keys.iter().map(|k| k.clone().into_bytes()))
        .unwrap();
    let got = client.batched_get(&keys).unwrap();
    assert!(
        got.iter()
            .zip(&keys)
            .all(|(g, k)| g.as_ref().unwrap().as_deref() == Some(k.as_bytes()))
    );
}

per_kind!(valkey_connector_file, redis_connector_file);
