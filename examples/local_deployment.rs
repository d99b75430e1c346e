//! Starts a throwaway local deployment of real servers (the same fixtures the tests use) and keeps it up until
//! its standard input closes: for trying the client by hand, and for test suites in other languages (the Python
//! package's pytest starts its servers this way).
//!
//! `cargo run --release --example local_deployment -- [--valkey] standalone|cluster|sentinel|tls [--password PW]`
//!
//! Prints one line of JSON and waits: `{"url": ..., "kind": "redis"|"valkey", "topology": ..., "nodes":
//! [{"addr", "pid", "role"}], "sentinels": [{"addr", "pid"}], "unix_socket": path|null, "ca": path|null,
//! "client_cert": path|null, "client_key": path|null}` (a standalone server also listens on a Unix socket). `cluster` is 3 primaries with a replica each; `sentinel` a primary, 2 replicas and 3
//! Sentinels (service `kvcache-svc`); `tls` a Redis with a TLS port (the URL is `rediss://` with `tls_ca`).
//! Every server stops when this program's standard input reaches its end (or the program is killed).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Read;

use support::sentinel::{SentinelOptions, SentinelSet};
use support::server::{Options, free_port};
use support::{Cluster, Kind, Server};

/// A JSON string literal.
fn json(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn node(addr: &str, pid: u32, role: &str) -> String {
    format!(r#"{{"addr": {}, "pid": {pid}, "role": {}}}"#, json(addr), json(role))
}

fn main() {
    let mut kind = Kind::Redis;
    let mut topology = None;
    let mut password = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--valkey" => kind = Kind::Valkey,
            "--redis" => kind = Kind::Redis,
            "--password" => password = args.next(),
            "standalone" | "cluster" | "sentinel" | "tls" => topology = Some(a),
            other => {
                eprintln!(
                    "unknown argument {other:?}\nusage: local_deployment [--valkey] standalone|cluster|sentinel|tls \
                     [--password PW]"
                );
                std::process::exit(2);
            }
        }
    }
    let topology = topology.unwrap_or_else(|| "standalone".into());
    let auth = |extra: &mut Vec<String>| {
        if let Some(pw) = &password {
            extra.extend(["--requirepass".into(), pw.clone()]);
        }
    };
    let cred = password.as_ref().map_or(String::new(), |pw| format!(":{pw}@"));
    let mut certs: Option<&support::tls::Certs> = None;
    let mut unix_socket = None;
    // Kept alive until the end: dropping them stops the servers.
    let mut servers: Vec<Server> = Vec::new();
    let mut cluster: Option<Cluster> = None;
    let mut sentinel_set: Option<SentinelSet> = None;
    let url = match topology.as_str() {
        "standalone" => {
            let mut extra = Vec::new();
            auth(&mut extra);
            let socket = std::env::temp_dir().join(format!("kvcache-local-{}.sock", std::process::id()));
            extra.extend(["--unixsocket".into(), socket.display().to_string()]);
            unix_socket = Some(socket);
            let server = Server::start(
                kind,
                free_port(),
                Options {
                    extra,
                    password: password.clone(),
                    ..Options::default()
                },
            );
            let url = format!("redis://{cred}{}", server.addr());
            servers.push(server);
            url
        }
        "tls" => {
            let tls_port = free_port();
            let mut extra = support::tls::tls_args(tls_port, false);
            auth(&mut extra);
            let server = Server::start(
                Kind::Redis,
                free_port(),
                Options {
                    extra,
                    password: password.clone(),
                    ..Options::default()
                },
            );
            kind = Kind::Redis;
            let c = support::tls::Certs::get();
            certs = Some(c);
            let url = format!(
                "rediss://{cred}localhost:{tls_port}?tls_ca={}",
                c.path("ca.crt").display()
            );
            servers.push(server);
            url
        }
        "cluster" => {
            let mut extra: Vec<String> = Vec::new();
            auth(&mut extra);
            if let Some(pw) = &password {
                extra.extend(["--masterauth".into(), pw.clone()]);
            }
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let c = Cluster::start_with(kind, 3, 1, &extra);
            c.wait_synced();
            let url = format!("redis://{cred}{}", c.nodes[0].addr());
            cluster = Some(c);
            url
        }
        "sentinel" => {
            let set = SentinelSet::start(
                kind,
                SentinelOptions {
                    replicas: 2,
                    sentinels: 3,
                    data_password: password.clone(),
                    ..SentinelOptions::default()
                },
            );
            set.wait_synced();
            let url = set.url("redis+sentinel", "");
            sentinel_set = Some(set);
            url
        }
        _ => unreachable!("checked above"),
    };
    let mut nodes: Vec<String> = servers.iter().map(|s| node(&s.addr(), s.pid, "primary")).collect();
    let mut sentinels = Vec::new();
    if let Some(c) = &cluster {
        for (i, s) in c.nodes.iter().enumerate() {
            nodes.push(node(
                &s.addr(),
                s.pid,
                if i < c.primaries { "primary" } else { "replica" },
            ));
        }
    }
    if let Some(set) = &sentinel_set {
        for (i, s) in set.nodes.iter().enumerate() {
            nodes.push(node(&s.addr(), s.pid, if i == 0 { "primary" } else { "replica" }));
        }
        sentinels = set
            .sentinels
            .iter()
            .map(|s| node(&s.addr(), s.pid, "sentinel"))
            .collect();
    }
    let path = |name: &str| certs.map_or("null".to_string(), |c| json(&c.path(name).display().to_string()));
    println!(
        r#"{{"url": {}, "kind": {}, "topology": {}, "nodes": [{}], "sentinels": [{}], "unix_socket": {}, "ca": {}, "client_cert": {}, "client_key": {}}}"#,
        json(&url),
        json(match kind {
            Kind::Redis => "redis",
            Kind::Valkey => "valkey",
        }),
        json(&topology),
        nodes.join(", "),
        sentinels.join(", "),
        unix_socket.map_or("null".to_string(), |p| json(&p.display().to_string())),
        path("ca.crt"),
        path("client.crt"),
        path("client.key"),
    );
    // Until whoever started us lets go.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(sentinel_set);
    drop(cluster);
    drop(servers);
}
