//! Coalescing across caller threads and priority order, made deterministic by freezing the server (SIGSTOP): it
//! holds the first request while the others queue up in the client, until it is thawed.

#[macro_use]
mod support;

use kvcache_redis::{Client, Config, Priority};
use support::{Kind, Server, command_calls, unique, wait_for};

fn coalesces_single_gets_from_many_threads(kind: Kind) {
    let server = Server::standalone(kind);
    let config = Config::from_url(&server.url()).unwrap().workers(2);
    let client = Client::with_config(config).unwrap();
    let p = unique("coalesce");
    let keys: Vec<String> = (0..64).map(|i| format!("{p}{i}")).collect();
    let values: Vec<Vec<u8>> = (0..64).map(|i| support::value(&p, i, 4096)).collect();
    client.batched_put(&keys, values.clone()).unwrap();
    client.ping().unwrap();

    let before = client.stats();
    let (mget0, get0) = (command_calls(&server, "mget"), command_calls(&server, "get"));
    server.freeze();
    std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .iter()
            .map(|k| {
                let client = client.clone();
                s.spawn(move || client.get(k))
            })
            .collect();
        // Every call is submitted while the server holds the workers' first pipelines.
        wait_for(&client, "all 64 queued", |s| s.parts - before.parts == 64);
        server.thaw();
        for (h, v) in handles.into_iter().zip(&values) {
            assert_eq!(h.join().unwrap().unwrap().as_deref(), Some(&v[..]));
        }
    });
    let after = client.stats();
    let round_trips = after.round_trips - before.round_trips;
    let commands = command_calls(&server, "mget") - mget0 + command_calls(&server, "get") - get0;
    eprintln!("{kind:?}: 64 single gets from 64 threads -> {round_trips} round trips, {commands} commands");
    assert!(round_trips <= 4, "{round_trips} round trips for 64 calls");
    assert_eq!(commands, round_trips, "one read command per round trip");
    assert_eq!(after.hits - before.hits, 64);
}

fn higher_priority_runs_first(kind: Kind) {
    let server = Server::standalone(kind);
    let config = Config::from_url(&server.url()).unwrap().workers(1);
    let client = Client::with_config(config).unwrap();
    let p = unique("prio");
    let key = format!("{p}k");
    for (get_priority, expect) in [(None, &b"old"[..]), (Some(Priority::Put), &b"new"[..])] {
        client.put(&key, b"old".to_vec()).unwrap();
        server.freeze();
        std::thread::scope(|s| {
            let parts0 = client.stats().parts;
            let blocker = {
                let client = client.clone();
                s.spawn(move || client.ping())
            };
            // The only worker has taken the ping and waits for the frozen server.
            wait_for(&client, "ping taken", |s| s.parts == parts0 + 1 && s.queued == 0);
            let put = {
                let (client, key) = (client.clone(), key.clone());
                s.spawn(move || client.put(&key, b"new".to_vec()))
            };
            wait_for(&client, "put queued", |s| s.queued == 1);
            let get = {
                let (client, key) = (client.clone(), key.clone());
                s.spawn(move || match get_priority {
                    Some(pr) => client.call().priority(pr).get(&key),
                    None => client.get(&key),
                })
            };
            wait_for(&client, "get queued", |s| s.queued == 2);
            server.thaw();
            blocker.join().unwrap().unwrap();
            put.join().unwrap().unwrap();
            // Queued after the PUT: at the GET level it overtakes it; at the same level it follows it.
            assert_eq!(
                get.join().unwrap().unwrap().as_deref(),
                Some(expect),
                "get priority {get_priority:?}"
            );
        });
    }
}

fn peeks_overtake_queued_puts(kind: Kind) {
    let server = Server::standalone(kind);
    let config = Config::from_url(&server.url()).unwrap().workers(1).batch_max_keys(1);
    let client = Client::with_config(config).unwrap();
    let p = unique("peek");
    let key = format!("{p}k");
    server.freeze();
    std::thread::scope(|s| {
        let blocker = {
            let client = client.clone();
            s.spawn(move || client.ping())
        };
        wait_for(&client, "ping taken", |s| s.parts == 1 && s.queued == 0);
        let puts: Vec<_> = (0..20)
            .map(|i| {
                let (client, key) = (client.clone(), key.clone());
                s.spawn(move || client.put(&key, vec![i as u8; 1 << 20]))
            })
            .collect();
        wait_for(&client, "puts queued", |s| s.queued == 20);
        let peek = {
            let (client, key) = (client.clone(), key.clone());
            s.spawn(move || client.exists(&key))
        };
        wait_for(&client, "peek queued", |s| s.queued == 21);
        server.thaw();
        blocker.join().unwrap().unwrap();
        // One part per batch (batch_max_keys = 1): the PEEK runs before every queued PUT, so the key is absent.
        assert!(!peek.join().unwrap().unwrap(), "the PEEK waited behind PUTs");
        for h in puts {
            h.join().unwrap().unwrap();
        }
    });
    assert!(client.exists(&key).unwrap());
}

per_kind!(
    coalesces_single_gets_from_many_threads,
    higher_priority_runs_first,
    peeks_overtake_queued_puts
);
