//! The `kvcache-redis` command-line tool, end to end against real servers: `check`, `bench` and `inspect` on
//! standalone servers and Clusters of Redis 7 and Valkey 9, TLS on Redis, and the failure exit codes.

#[macro_use]
mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use kvcache_redis::{ChunkKey, ChunkStore, Client, Dtype, Layout, SplitNaming};
use support::tls::{Certs, tls_server};
use support::{Kind, Server, shared_cluster, unique};

fn tool(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvcache-redis"))
        .args(args)
        .env_remove("KVCACHE_URL")
        .env_remove("KVCACHE_PASSWORD")
        .env_remove("KVCACHE_USER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kvcache-redis");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    println!(
        "$ kvcache-redis {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn dbsize(server: &Server) -> i64 {
    redis::cmd("DBSIZE").query(&mut server.admin()).unwrap()
}

fn check_passes_and_cleans_up(kind: Kind) {
    let server = Server::standalone(kind);
    redis::cmd("SET")
        .arg("outside:key")
        .arg("untouched")
        .exec(&mut server.admin())
        .unwrap();
    let out = tool(&["check", &server.url()], None);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("standalone"), "{text}");
    assert!(
        text.contains("12 passed, 0 failed") || text.contains(" passed, 0 failed"),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
    for step in [
        "batched MGET",
        "order preservation",
        "prefix semantics",
        "split layout hash tags",
        "priority ordering",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with("PASS") && l.contains(step)),
            "{step}: {text}"
        );
    }
    // Only the key that was there before is left, unchanged.
    assert_eq!(dbsize(&server), 1);
    // Bounded and evicting: no warning. Bounded but refusing writes when full: a warning that says so.
    let mut admin = server.admin();
    redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "500mb"])
        .exec(&mut admin)
        .unwrap();
    redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "allkeys-lru"])
        .exec(&mut admin)
        .unwrap();
    let text = stdout(&tool(&["check", &server.url()], None));
    assert!(text.contains("12 passed, 0 failed, 0 warnings"), "{text}");
    assert!(text.contains("maxmemory 524288000 bytes, policy allkeys-lru"), "{text}");
    redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "noeviction"])
        .exec(&mut admin)
        .unwrap();
    let text = stdout(&tool(&["check", &server.url()], None));
    assert!(
        text.lines().any(|l| l.starts_with("WARN") && l.contains("noeviction")),
        "{text}"
    );
    let v: String = redis::cmd("GET").arg("outside:key").query(&mut server.admin()).unwrap();
    assert_eq!(v, "untouched");
}

fn check_shows_the_cluster(kind: Kind) {
    let cluster = shared_cluster(kind);
    let out = tool(&["check", &cluster.url()], None);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("3 primaries, 3 replica(s), 16384/16384 slots covered"),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.trim_start().starts_with("shard ")).count(),
        3,
        "{text}"
    );
    assert!(
        text.contains("256 x 1 KiB in 3 round trip(s) over 3 primaries"),
        "{text}"
    );
}

fn a_failing_check_exits_1(kind: Kind) {
    let server = Server::standalone(kind);
    // A user that may touch only keys under "ok:" (and the hash-tagged "{ok:..." of the split layout): a check
    // under another namespace fails its steps, says why, and exits 1.
    redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">app-secret-pw", "~ok:*", "~{ok:*", "+@all"])
        .exec(&mut server.admin())
        .unwrap();
    let url = format!("redis://app:app-secret-pw@127.0.0.1:{}", server.port);
    let out = tool(&["check", &url, "--namespace", "denied:"], None);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("FAIL") && l.contains("NOPERM")),
        "{text}"
    );
    assert!(!text.contains("app-secret-pw") && !stderr(&out).contains("app-secret-pw"));
    assert!(text.contains("redis://app:***@"), "{text}");
    // Under a namespace it may use, the same user passes.
    let out = tool(&["check", &url, "--namespace", "ok:check:"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

fn bench_reports_json_and_cleans_up(kind: Kind) {
    let server = Server::standalone(kind);
    let out = tool(
        &[
            "bench",
            &server.url(),
            "--count",
            "60",
            "--value-size",
            "64KiB",
            "--keys",
            "32",
            "--batch",
            "4",
            "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["calls"], 60);
    assert_eq!(
        v["read_calls"].as_u64().unwrap() + v["write_calls"].as_u64().unwrap(),
        60
    );
    assert_eq!(
        (v["errors"].as_u64(), v["wrong"].as_u64(), v["misses"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(v["value_size"], 65536);
    assert!(v["read_gib_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    let lat = &v["latency_ms"];
    assert!(
        lat["p50"].as_f64() <= lat["p99"].as_f64() && lat["p99"].as_f64() <= lat["max"].as_f64(),
        "{v}"
    );
    assert_eq!(v["keys_removed"], 32);
    assert_eq!(dbsize(&server), 0);
}

fn bench_runs_on_a_cluster_with_the_split_layout(kind: Kind) {
    let cluster = shared_cluster(kind);
    let out = tool(
        &[
            "bench",
            &cluster.url(),
            "--duration",
            "1",
            "--layout",
            "split",
            "--value-size",
            "16KiB",
            "--keys",
            "40",
        ],
        None,
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("cluster"), "{text}");
    assert!(
        text.contains("0 errors, 0 wrong values, 0 misses; 80 keys removed"),
        "{text}"
    );
    for field in ["GiB/s", "p50", "p95", "p99", "max"] {
        assert!(text.contains(field), "{field}: {text}");
    }
}

/// Stores chunks in every layout, an orphaned metadata key and a kv_bytes without metadata, and a foreign key.
fn populate(client: &Client, ns: &str) -> (String, String) {
    let key = |i: u32| ChunkKey::new("org/model-a", 1, 0, &format!("{i:x}"), Dtype::Bfloat16).unwrap();
    let framed = ChunkStore::new(client.clone(), Layout::Framed).with_namespace(format!("{ns}f:"));
    let raw = ChunkStore::new(client.clone(), Layout::Raw { size: 1000 }).with_namespace(format!("{ns}r:"));
    let split = ChunkStore::new(
        client.clone(),
        Layout::Split {
            naming: SplitNaming::HashTagged,
        },
    )
    .with_namespace(format!("{ns}s:"));
    for i in 0..5 {
        framed.put(&key(i), vec![1u8; 2000], None).unwrap();
    }
    for i in 0..3 {
        raw.put(&key(i), vec![2u8; 1000], None).unwrap();
    }
    for i in 0..4 {
        split.put(&key(i), vec![3u8; 3000], None).unwrap();
    }
    let (kv0, meta0) = split.split_keys(&key(0), SplitNaming::HashTagged);
    let (_, meta1) = split.split_keys(&key(1), SplitNaming::HashTagged);
    client.remove(&kv0).unwrap(); // key 0: orphaned metadata
    client.remove(&meta1).unwrap(); // key 1: kv_bytes alone
    client
        .call()
        .ttl_secs(Some(600))
        .put(format!("{ns}foreign"), b"not a chunk".to_vec())
        .unwrap();
    (meta0, kv0)
}

fn inspect_counts_layouts_and_removes_orphans(kind: Kind) {
    let server = Server::standalone(kind);
    let client = Client::open(&server.url()).unwrap();
    let ns = unique("inspect");
    let (orphan, _) = populate(&client, &ns);
    let out = tool(&["inspect", &server.url()], None);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let row = |name: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {text}"));
        line.split_whitespace().map(String::from).collect()
    };
    // Per model (namespace included): framed, raw, complete split chunks.
    assert_eq!(row(&format!("{ns}f:org/model-a"))[1..4], ["5", "0", "0"]);
    assert_eq!(row(&format!("{ns}r:org/model-a"))[1..4], ["0", "3", "0"]);
    assert_eq!(row(&format!("{ns}s:org/model-a"))[1..4], ["0", "0", "2"]);
    assert_eq!(row("total")[1..4], ["5", "3", "2"]);
    assert!(
        text.contains("orphans   1 metadata key(s) without kv_bytes; 1 kv_bytes without metadata"),
        "{text}"
    );
    assert!(text.contains("other     1 key(s)"), "{text}");
    assert!(text.contains("no TTL: 14,"), "{text}");
    // Refused at the prompt: nothing deleted.
    let out = tool(&["inspect", &server.url(), "--delete-orphans"], Some("n\n"));
    assert!(stdout(&out).contains("nothing deleted"));
    assert!(client.exists(&orphan).unwrap());
    let before = dbsize(&server);
    let out = tool(&["inspect", &server.url(), "--delete-orphans", "--yes"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("deleted   1 orphaned metadata key(s)"),
        "{}",
        stdout(&out)
    );
    assert!(!client.exists(&orphan).unwrap());
    assert_eq!(dbsize(&server), before - 1, "only the orphan went");
}

fn inspect_scans_every_primary(kind: Kind) {
    let cluster = shared_cluster(kind);
    let client = Client::open(&cluster.url()).unwrap();
    let ns = unique("inspect-cluster");
    populate(&client, &ns);
    let out = tool(&["inspect", &cluster.url(), "--match", &format!("*{ns}*")], None);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("3 primaries"), "{text}");
    let total: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("total"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(total[1..4], ["5", "3", "2"], "{text}");
    assert!(text.contains("orphans   1 metadata key(s) without kv_bytes"), "{text}");
}

fn unreachable_and_bad_input_exit_codes(_kind: Kind) {
    let out = tool(&["check", "redis://127.0.0.1:1"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
    let out = tool(&["check", "http://127.0.0.1:6379"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("scheme"), "{}", stderr(&out));
    let out = tool(&["bench", "redis://127.0.0.1:1", "--read-ratio", "2"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = tool(&["bench", "redis://127.0.0.1:1", "--value-size", "4XB"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad size unit"), "{}", stderr(&out));
    let out = tool(&["--help"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("Examples:") && stdout(&out).contains("inspect"),
        "{}",
        stdout(&out)
    );
}

fn wrong_password_exits_3_without_printing_it(kind: Kind) {
    let server = Server::standalone(kind);
    redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", "right-password"])
        .exec(&mut server.admin())
        .unwrap();
    let url = format!("redis://:wrong-secret-123@127.0.0.1:{}", server.port);
    let out = tool(&["check", &url], None);
    assert_eq!(out.status.code(), Some(3));
    let all = stdout(&out) + &stderr(&out);
    assert!(all.contains("authentication failed"), "{all}");
    assert!(!all.contains("wrong-secret-123"), "{all}");
    // The password from the environment works, and is not printed either.
    let out = Command::new(env!("CARGO_BIN_EXE_kvcache-redis"))
        .args([
            "bench",
            &server.url(),
            "--count",
            "5",
            "--keys",
            "4",
            "--value-size",
            "1KiB",
        ])
        .env("KVCACHE_PASSWORD", "right-password")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!(stdout(&out) + &stderr(&out)).contains("right-password"));
    redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", ""])
        .exec(&mut {
            let mut c = redis::Client::open(format!("redis://:right-password@127.0.0.1:{}", server.port))
                .unwrap()
                .get_connection()
                .unwrap();
            redis::cmd("PING").exec(&mut c).unwrap();
            c
        })
        .unwrap();
}

per_kind!(
    check_passes_and_cleans_up,
    check_shows_the_cluster,
    a_failing_check_exits_1,
    bench_reports_json_and_cleans_up,
    bench_runs_on_a_cluster_with_the_split_layout,
    inspect_counts_layouts_and_removes_orphans,
    inspect_scans_every_primary,
    wrong_password_exits_3_without_printing_it
);

#[test]
fn exit_codes_for_unreachable_hosts_and_bad_input() {
    unreachable_and_bad_input_exit_codes(Kind::Redis);
}

#[test]
fn check_over_tls() {
    let (server, tls_port) = tls_server(false);
    let ca = Certs::get().path("ca.crt").display().to_string();
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let out = tool(&["check", &url, "--tls-ca", &ca], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains(", 0 failed"));
    // Verified against another CA: a TLS failure, exit 3.
    let other = Certs::get().path("other-ca.crt").display().to_string();
    let out = tool(&["check", &url, "--tls-ca", &other], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("TLS handshake failed"), "{}", stderr(&out));
    // The plaintext port of the same server does not speak TLS.
    let out = tool(
        &[
            "check",
            &format!("rediss://127.0.0.1:{}", server.port),
            "--tls-ca",
            &ca,
            "--timeout-ms",
            "1500",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = tool(
        &[
            "bench",
            &url,
            "--tls-ca",
            &ca,
            "--count",
            "20",
            "--value-size",
            "256KiB",
            "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
