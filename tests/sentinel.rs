//! Sentinel-managed deployments against real Sentinels (a primary, two replicas, three Sentinels, quorum 2):
//! discovery, replica reads, and every way opening can go wrong, each a clear error in time. Failovers under load
//! are in `tests/sentinel_failover.rs`.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, Error, ReadFrom};
use support::fake::{FakeNode, Reply};
use support::sentinel::{SentinelOptions, SentinelSet};
use support::{Kind, store_values, unique, value};

fn set(kind: Kind) -> SentinelSet {
    SentinelSet::start(
        kind,
        SentinelOptions {
            replicas: 2,
            sentinels: 3,
            ..SentinelOptions::default()
        },
    )
}

/// The client finds the primary through the Sentinels, writes there, and reads from the replicas when asked.
fn discovers_the_primary_and_reads_from_replicas(kind: Kind) {
    let s = set(kind);
    let client = Client::open(&s.url("redis+sentinel", "")).unwrap();
    assert!(!client.is_cluster());
    assert_eq!(client.primaries(), vec![s.nodes[0].addr()]);
    let (keys, values) = store_values(&client, "sentinel", 50, 3000);
    let got = client.batched_get(&keys).unwrap();
    assert!(
        got.iter()
            .zip(&values)
            .all(|(g, v)| g.as_ref().unwrap().as_deref() == Some(&v[..]))
    );
    // Replica reads: every value eventually read back from the replicas alone (replication is asynchronous: a miss
    // is allowed right after the write, never other bytes).
    let replicas = Client::with_config(
        s.url("redis+sentinel", "")
            .parse::<Config>()
            .unwrap()
            .read_from(ReadFrom::Replica),
    )
    .unwrap();
    let reads_before = support::reads_served_each(&s.nodes);
    support::read_until_all_hit(&replicas, &keys, &values, "read_from=replica");
    for _ in 0..10 {
        replicas.batched_get(&keys).unwrap();
    }
    let reads = support::reads_served_since(&s.nodes, &reads_before);
    println!("{kind:?}: reads per node (primary first) with read_from=replica: {reads:?}");
    assert_eq!(reads[0], 0, "read_from=replica read from the primary");
    assert!(reads[1] > 0 && reads[2] > 0, "both replicas serve reads: {reads:?}");
}

/// Opening fails clearly, and in time, for each way the Sentinel side can be wrong.
fn bad_sentinel_setups_fail_clearly(kind: Kind) {
    let s = set(kind);
    let timed = |url: &str| {
        let config = url
            .parse::<Config>()
            .unwrap()
            .connect_timeout(Duration::from_millis(500));
        let started = Instant::now();
        let r = Client::with_config(config);
        (r, started.elapsed())
    };
    // An unknown service: the error names it and the Sentinels asked.
    let sentinels: Vec<String> = s.sentinels.iter().map(|n| n.addr()).collect();
    let url = format!("redis+sentinel://{}/no-such-service", sentinels.join(","));
    let (r, took) = timed(&url);
    let err = r.unwrap_err();
    assert!(
        matches!(&err, Error::Topology(m) if m.contains("no-such-service") && m.contains(&sentinels[0])),
        "{err}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    // No Sentinel reachable: nothing listens on these ports.
    let dead: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", support::server::free_port()))
        .collect();
    let (r, took) = timed(&format!("redis+sentinel://{}/{}", dead.join(","), s.service));
    let err = r.unwrap_err();
    assert!(
        matches!(&err, Error::Topology(m) if m.contains("no Sentinel answered")),
        "{err}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    // A password for Sentinels that have none: their refusal, typed.
    let (r, _) = timed(&format!("{}?sentinel_password=nope", s.url("redis+sentinel", "")));
    let err = r.unwrap_err();
    assert!(err.server_code().is_some(), "{err:?}");
    // read_from needs replicas: a plain standalone server has none known.
    let plain = format!("redis://{}?read_from=spread", s.nodes[0].addr());
    let err = Client::open(&plain).unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("needs replicas")),
        "{err}"
    );
}

/// A Sentinel that names a node which is not a primary (here: a replica) is refused at open.
fn a_sentinel_naming_a_replica_is_refused(kind: Kind) {
    let s = set(kind);
    let replica = s.nodes[1].port;
    let fake = FakeNode::start(move |args, _| {
        let cmd = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).to_uppercase());
        match (cmd(0).as_deref(), cmd(1).as_deref()) {
            (Some("SENTINEL"), Some("MASTER")) => Reply::Bytes(
                format!(
                    "*6\r\n$4\r\nname\r\n$3\r\nsvc\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nport\r\n${}\r\n{replica}\r\n",
                    replica.to_string().len()
                )
                .into_bytes(),
            ),
            (Some("SENTINEL"), Some("REPLICAS")) => Reply::Bytes(b"*0\r\n".to_vec()),
            _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
        }
    });
    let err = Client::open(&format!("redis+sentinel://127.0.0.1:{}/svc", fake.port)).unwrap_err();
    assert!(
        matches!(&err, Error::Topology(m) if m.contains("says it is a slave")),
        "{err}"
    );
}

/// Sentinels with their own password, data nodes with another: both kept apart, neither printed.
fn sentinels_and_data_nodes_have_their_own_credentials(kind: Kind) {
    let s = SentinelSet::start(
        kind,
        SentinelOptions {
            replicas: 1,
            sentinels: 3,
            data_password: Some("data-pw".into()),
            sentinel_password: Some("sentinel-pw".into()),
            ..SentinelOptions::default()
        },
    );
    let hosts: Vec<String> = s.sentinels.iter().map(|n| n.addr()).collect();
    let url = format!(
        "redis+sentinel://:data-pw@{}/{}?sentinel_password=sentinel-pw",
        hosts.join(","),
        s.service
    );
    let client = Client::open(&url).unwrap();
    client.put("creds", b"ok".to_vec()).unwrap();
    assert_eq!(client.get("creds").unwrap().as_deref(), Some(&b"ok"[..]));
    let shown = format!("{client:?}");
    assert!(!shown.contains("data-pw") && !shown.contains("sentinel-pw"), "{shown}");
    // Without the Sentinels' password: their refusal, typed, naming no password.
    let err = Client::open(&format!("redis+sentinel://:data-pw@{}/{}", hosts.join(","), s.service)).unwrap_err();
    assert!(
        err.server_code().is_some() && !err.to_string().contains("pw"),
        "{err:?}"
    );
}

/// The CLI takes Sentinel URLs: `check` shows what each Sentinel says and passes with replica reads, `bench`
/// and `inspect` run against the service.
fn the_cli_takes_sentinel_urls(kind: Kind) {
    let s = set(kind);
    let url = s.url("redis+sentinel", "");
    let tool = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvcache-redis"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, out) = tool(&["check", &url, "--read-from", "spread"]);
    println!("{out}");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Sentinel-managed"), "{out}");
    assert!(
        out.contains(&format!("service {:?}: 3 of 3 Sentinels answered", s.service)),
        "{out}"
    );
    let primary = format!("primary {} (epoch", s.nodes[0].addr());
    assert_eq!(out.matches(&primary).count(), 3, "{out}");
    for replica in &s.nodes[1..] {
        assert!(out.contains(&format!("{} (up; link ok", replica.addr())), "{out}");
    }
    let (code, out) = tool(&[
        "bench",
        &url,
        "--read-from",
        "replica",
        "--count",
        "200",
        "--keys",
        "20",
        "--value-size",
        "4KiB",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = tool(&["inspect", &url]);
    assert_eq!(code, Some(0), "{out}");
}

/// The split layouts read from replicas stay consistent: read right after the write and until every replica has
/// them, a chunk is either a miss or its exact bytes and metadata (both keys are needed for a hit, whichever
/// nodes they are read from); values large enough to be read with a `GET` each take the other read path.
fn split_chunks_read_from_replicas(kind: Kind) {
    use kvcache_redis::{ChunkKey, ChunkMeta, ChunkStore, Dtype, Layout, MemoryFormat, SplitNaming};
    let s = set(kind);
    let config: Config = s.url("redis+sentinel", "").parse().unwrap();
    let client = Client::with_config(config.read_from(ReadFrom::Spread)).unwrap();
    let meta = ChunkMeta::new(MemoryFormat::Kv2Ltd, Dtype::Bfloat16, &[2, 32, 256, 1024]).unwrap();
    for naming in [SplitNaming::HashTagged, SplitNaming::Plain, SplitNaming::Colon] {
        let store = ChunkStore::new(client.clone(), Layout::Split { naming }).with_namespace(unique("split-replica"));
        let keys: Vec<ChunkKey> = (0..20)
            .map(|i| ChunkKey::new("m", 1, 0, &ChunkKey::hash_of_int(i), Dtype::Bfloat16).unwrap())
            .collect();
        let payloads: Vec<bytes::Bytes> = (0..20)
            .map(|i| value("split-replica", i as usize, if i % 2 == 0 { 3000 } else { 300_000 }).into())
            .collect();
        let put = store.batched_put(&keys, payloads.clone(), Some(meta)).unwrap();
        assert!(put.iter().all(Result::is_ok), "{put:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = store.batched_get(&keys).unwrap();
            let mut hits = 0;
            for (g, want) in got.iter().zip(&payloads) {
                if let Some(chunk) = g.as_ref().unwrap() {
                    assert_eq!(&chunk.payload[..], &want[..], "{naming:?}: other bytes");
                    assert_eq!(chunk.meta, Some(meta), "{naming:?}: other metadata");
                    hits += 1;
                }
            }
            if hits == keys.len() && store.batched_contains(&keys).unwrap() == keys.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{naming:?}: replicas never caught up ({hits} hits)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A scripted Sentinel for service `svc` naming `named` (a port on 127.0.0.1, and a config epoch), which the test
/// may change at any time; `asked` counts its `SENTINEL MASTER` questions.
fn scripted_sentinel(
    named: std::sync::Arc<parking_lot::Mutex<(u16, i64)>>,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> FakeNode {
    use std::sync::atomic::Ordering;
    FakeNode::start(move |args, _| {
        let cmd = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).to_uppercase());
        let (port, epoch) = *named.lock();
        match (cmd(0).as_deref(), cmd(1).as_deref()) {
            (Some("SENTINEL"), Some("MASTER")) => {
                asked.fetch_add(1, Ordering::SeqCst);
                let fields = [
                    ("name", "svc".to_string()),
                    ("ip", "127.0.0.1".into()),
                    ("port", port.to_string()),
                    ("flags", "master".into()),
                    ("config-epoch", epoch.to_string()),
                ];
                let mut out = format!("*{}\r\n", fields.len() * 2);
                for (k, v) in fields {
                    out.push_str(&format!("${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len()));
                }
                Reply::Bytes(out.into_bytes())
            }
            (Some("SENTINEL"), Some("REPLICAS")) => Reply::Bytes(b"*0\r\n".to_vec()),
            (Some("SENTINEL"), Some("GET-MASTER-ADDR-BY-NAME")) => {
                Reply::Bytes(format!("*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{port}\r\n", port.to_string().len()).into_bytes())
            }
            _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
        }
    })
}

/// Drops the client's connections to `server`, so that it reconnects and asks the Sentinels again; returns once
/// the Sentinel was asked after the call (poking the client with puts meanwhile).
fn make_the_client_ask_again(client: &Client, server: &support::Server, asked: &std::sync::atomic::AtomicUsize) {
    use std::sync::atomic::Ordering;
    let before = asked.load(Ordering::SeqCst);
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut server.admin())
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while asked.load(Ordering::SeqCst) == before {
        assert!(Instant::now() < until, "the client never asked the Sentinel again");
        let _ = client.put("poke", b"x".to_vec());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Found by the nemesis (`tests/chaos.rs`): after a failover, a refresh in which only Sentinels that had not yet heard
/// of it answered in time named the old primary again, and the client went back to it (restarted, a primary again
/// until the Sentinels demoted it), losing the writes it took there. Config epochs never go back now: here two real
/// primaries, and a scripted Sentinel that first names one at epoch 5, then the other at epoch 3; the client stays.
fn an_older_config_epoch_never_takes_the_client_back(kind: Kind) {
    use std::sync::Arc;
    let (a, b) = (support::Server::standalone(kind), support::Server::standalone(kind));
    let named = Arc::new(parking_lot::Mutex::new((a.port, 5)));
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fake = scripted_sentinel(named.clone(), asked.clone());
    let client = Client::open(&format!("redis+sentinel://127.0.0.1:{}/svc", fake.port)).unwrap();
    client.put("before", b"1".to_vec()).unwrap();
    *named.lock() = (b.port, 3);
    make_the_client_ask_again(&client, &a, &asked);
    for i in 0..20 {
        let _ = client.put(format!("after{i}"), b"2".to_vec());
        std::thread::sleep(Duration::from_millis(20));
    }
    let on_b: Option<Vec<u8>> = redis::cmd("GET").arg("after19").query(&mut b.admin()).unwrap();
    let on_a: Option<Vec<u8>> = redis::cmd("GET").arg("after19").query(&mut a.admin()).unwrap();
    assert_eq!(
        (on_a.as_deref(), on_b.as_deref()),
        (Some(&b"2"[..]), None),
        "writes went to the older epoch's primary"
    );
}

/// Found by the nemesis (`tests/chaos.rs`, Redis Sentinel, seed 1004): a failover while the client's ACL user was
/// disabled. The client could not ask the new primary's `ROLE` and kept the old one, which still said it was a
/// primary until the Sentinels demoted it seconds later; when the user came back on, the old primary acknowledged
/// writes that its demotion then lost. A newer epoch's primary is followed unverified now: here two real primaries,
/// the client's user off on the second when a scripted Sentinel names it at a newer epoch. No put is acknowledged
/// by the old primary after that; puts fail with the second's refusal, typed, until the user is on again, then land
/// there.
fn a_newer_epoch_is_followed_while_its_primary_refuses_the_client(kind: Kind) {
    use std::sync::Arc;
    let (a, b) = (support::Server::standalone(kind), support::Server::standalone(kind));
    let user = |server: &support::Server, on: &str| {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("kv")
            .arg(on)
            .arg(">kv-pw")
            .arg("~*")
            .arg("+@all")
            .query(&mut server.admin())
            .unwrap();
    };
    user(&a, "on");
    user(&b, "off");
    let named = Arc::new(parking_lot::Mutex::new((a.port, 5)));
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fake = scripted_sentinel(named.clone(), asked.clone());
    let client = Client::open(&format!("redis+sentinel://kv:kv-pw@127.0.0.1:{}/svc", fake.port)).unwrap();
    client.put("before", b"1".to_vec()).unwrap();
    *named.lock() = (b.port, 6);
    make_the_client_ask_again(&client, &a, &asked);
    // The refresh that asked is under way: give it time to end (its ROLE question is refused at once).
    std::thread::sleep(Duration::from_millis(500));
    let mut refusals = 0;
    for i in 0..20 {
        match client.put(format!("after{i}"), b"2".to_vec()) {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.server_code(), Some("WRONGPASS"), "{e:?}");
                assert!(!e.to_string().contains("kv-pw"), "{e}");
                refusals += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        refusals, 20,
        "puts went through while the new primary refused the client"
    );
    for i in 0..20 {
        let on_a: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("after{i}"))
            .query(&mut a.admin())
            .unwrap();
        assert_eq!(
            on_a, None,
            "after{i} was written to the old primary after a newer epoch named another"
        );
    }
    // The user on again: puts go through, to the new primary, without waiting for the Sentinels.
    user(&b, "on");
    let until = Instant::now() + Duration::from_secs(5);
    while client.put("back", b"3".to_vec()).is_err() {
        assert!(
            Instant::now() < until,
            "puts never went through once the user was on again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let on_b: Option<Vec<u8>> = redis::cmd("GET").arg("back").query(&mut b.admin()).unwrap();
    let on_a: Option<Vec<u8>> = redis::cmd("GET").arg("back").query(&mut a.admin()).unwrap();
    assert_eq!((on_a, on_b.as_deref()), (None, Some(&b"3"[..])));
    assert_eq!(client.get("back").unwrap().as_deref(), Some(&b"3"[..]));
}

per_kind!(
    an_older_config_epoch_never_takes_the_client_back,
    a_newer_epoch_is_followed_while_its_primary_refuses_the_client,
    split_chunks_read_from_replicas,
    the_cli_takes_sentinel_urls,
    discovers_the_primary_and_reads_from_replicas,
    bad_sentinel_setups_fail_clearly,
    a_sentinel_naming_a_replica_is_refused,
    sentinels_and_data_nodes_have_their_own_credentials
);
