//! TLS against a real TLS-enabled Redis 7 (the Valkey build at hand has no TLS), with certificates generated here:
//! the happy path, mutual TLS, and each way verification must fail, each within the connect timeout.

mod support;

use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, Error};
use support::server::{Options, free_port};
use support::tls::{Certs, tls_args_with, tls_server};
use support::{Kind, Server};

fn config(port: u16) -> Config {
    Config::from_url(&format!("rediss://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .tls_ca_file(Certs::get().path("ca.crt"))
}

fn fails_in_time(config: Config, what: &str) -> Error {
    let started = Instant::now();
    let err = Client::with_config(config).map(|_| ()).expect_err(what);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{what}: took {:?}",
        started.elapsed()
    );
    err
}

#[test]
fn happy_path_verifies_the_server() {
    let (_server, port) = tls_server(false);
    let client = Client::with_config(config(port)).unwrap();
    client.put("over-tls", vec![5u8; 3 << 20]).unwrap();
    assert_eq!(client.get("over-tls").unwrap().unwrap().len(), 3 << 20);
    // The same from a URL alone, with the CA path percent-encoded, and by host name.
    let ca = Certs::get().path("ca.crt").display().to_string().replace('/', "%2F");
    let by_name = Client::open(&format!("rediss://localhost:{port}?tls_ca={ca}")).unwrap();
    assert_eq!(by_name.get("over-tls").unwrap().unwrap().len(), 3 << 20);
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let (_server, port) = tls_server(false);
    let other = Config::from_url(&format!("rediss://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .tls_ca_file(Certs::get().path("other-ca.crt"));
    let err = fails_in_time(other, "wrong CA");
    assert!(matches!(err, Error::Tls { .. }), "{err}");
    // No CA given: the system roots do not know the test CA either.
    let err = fails_in_time(
        Config::from_url(&format!("rediss://127.0.0.1:{port}")).unwrap(),
        "system roots",
    );
    assert!(matches!(err, Error::Tls { .. }), "{err}");
}

#[test]
fn a_host_name_mismatch_is_refused() {
    let (_server, port) = tls_server(false);
    let err = fails_in_time(config(port).tls_server_name("not-this-host.example"), "wrong name");
    assert!(matches!(err, Error::Tls { .. }), "{err}");
    // The loudly named switch accepts it (and logs a warning).
    let insecure = config(port)
        .tls_server_name("not-this-host.example")
        .tls_insecure_skip_verify(true);
    Client::with_config(insecure).unwrap().ping().unwrap();
}

#[test]
fn a_plaintext_port_is_an_error_not_a_hang() {
    let (server, _port) = tls_server(false);
    let err = fails_in_time(config(server.port), "plaintext port");
    assert!(
        matches!(err, Error::Tls { .. } | Error::Io { .. } | Error::Timeout { .. }),
        "{err}"
    );
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let (_server, port) = tls_server(true);
    let err = fails_in_time(config(port), "no client certificate");
    assert!(matches!(err, Error::Tls { .. } | Error::Io { .. }), "{err}");
    let certs = Certs::get();
    let with_cert = config(port).tls_client_cert(certs.path("client.crt"), certs.path("client.key"));
    let client = Client::with_config(with_cert).unwrap();
    client.put("mtls", b"ok".to_vec()).unwrap();
    assert_eq!(client.get("mtls").unwrap().as_deref(), Some(&b"ok"[..]));
}

/// A 3-primary Cluster whose clients and bus speak TLS (each node keeps a plaintext port for the test's admin);
/// `extra` goes to every node.
fn tls_cluster(extra_args: &[&str]) -> Vec<(Server, u16)> {
    tls_cluster_with("server", extra_args)
}

/// Like `tls_cluster`, the nodes using the server certificate `cert`.
fn tls_cluster_with(cert: &str, extra_args: &[&str]) -> Vec<(Server, u16)> {
    let nodes: Vec<(Server, u16)> = (0..3)
        .map(|_| {
            let tls_port = free_port();
            let mut extra = tls_args_with(tls_port, false, cert);
            extra.extend(["--tls-cluster".to_string(), "yes".to_string()]);
            extra.extend(extra_args.iter().map(|a| a.to_string()));
            (
                Server::start(
                    Kind::Redis,
                    free_port(),
                    Options {
                        cluster: true,
                        extra,
                        ..Options::default()
                    },
                ),
                tls_port,
            )
        })
        .collect();
    for (i, (server, _)) in nodes.iter().enumerate() {
        let (start, end) = (i * 5462, if i == 2 { 16383 } else { i * 5462 + 5461 });
        redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(start)
            .arg(end)
            .exec(&mut server.admin())
            .unwrap();
    }
    for (server, _) in &nodes[1..] {
        // With the bus on TLS, nodes meet at their TLS ports.
        redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(nodes[0].1)
            .exec(&mut server.admin())
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = nodes.iter().all(|(s, _)| {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut s.admin())
                .unwrap_or_default();
            info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
        });
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "TLS cluster never formed:\n{}",
            nodes[0].0.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes
}

#[test]
fn a_tls_cluster_verifies_every_node() {
    let nodes = tls_cluster(&[]);
    let client = Client::with_config(config(nodes[0].1)).unwrap();
    assert!(client.is_cluster());
    let mut primaries = client.primaries();
    primaries.sort();
    let mut tls_ports: Vec<String> = nodes.iter().map(|(_, p)| format!("127.0.0.1:{p}")).collect();
    tls_ports.sort();
    assert_eq!(
        primaries, tls_ports,
        "the cluster announces its TLS ports to TLS clients"
    );
    let keys: Vec<String> = (0..300).map(|i| format!("tls-cluster:{i}")).collect();
    let put = client
        .batched_put(&keys, keys.iter().map(|k| k.clone().into_bytes()))
        .unwrap();
    assert!(put.iter().all(Result::is_ok));
    let got = client.batched_get(&keys).unwrap();
    assert!(
        got.iter()
            .zip(&keys)
            .all(|(g, k)| g.as_ref().unwrap().as_deref() == Some(k.as_bytes()))
    );
    // The 300 keys above reached every node over TLS, each verified against the CA; a wrong expected name fails
    // at the first node reached.
    let err = fails_in_time(
        config(nodes[1].1).tls_server_name("elsewhere.example"),
        "wrong name on a node",
    );
    assert!(matches!(err, Error::Tls { .. }), "{err}");
}

/// Nodes that announce a host name are reached, and verified, by it: with certificates that name `localhost`
/// alone, a node reached by IP address fails verification, while every node reached by the name it announces
/// passes.
#[test]
fn a_tls_cluster_announcing_host_names_is_verified_against_them() {
    let nodes = tls_cluster_with(
        "server-dns",
        &[
            "--cluster-announce-hostname",
            "localhost",
            "--cluster-preferred-endpoint-type",
            "hostname",
        ],
    );
    let err = fails_in_time(config(nodes[0].1), "a node reached by IP address");
    assert!(matches!(err, Error::Tls { .. }), "{err}");
    let by_name = Config::from_url(&format!("rediss://localhost:{}", nodes[0].1))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .tls_ca_file(Certs::get().path("ca.crt"));
    let client = Client::with_config(by_name).unwrap();
    let mut primaries = client.primaries();
    primaries.sort();
    let mut expected: Vec<String> = nodes.iter().map(|(_, p)| format!("localhost:{p}")).collect();
    expected.sort();
    assert_eq!(primaries, expected);
    let keys: Vec<String> = (0..300).map(|i| format!("tls-hostnames:{i}")).collect();
    let put = client
        .batched_put(&keys, keys.iter().map(|k| k.clone().into_bytes()))
        .unwrap();
    assert!(put.iter().all(Result::is_ok), "{put:?}");
    let got = client.batched_get(&keys).unwrap();
    for (g, k) in got.into_iter().zip(&keys) {
        assert_eq!(g.unwrap().as_deref(), Some(k.as_bytes()));
    }
}

/// A TLS node that stops answering (frozen) holds back no other node's answers: TLS connections are waited on
/// like plain ones (what OpenSSL has already decrypted counts as readable), never read blocking.
#[test]
fn a_stalled_tls_node_holds_back_no_other_node() {
    use kvcache_redis::Slot;
    use std::sync::Arc;
    use support::load::{Load, LoadOptions};
    let nodes = tls_cluster(&["--cluster-require-full-coverage", "no"]);
    let client = Arc::new(Client::with_config(config(nodes[0].1)).unwrap());
    let mut opts = LoadOptions::new(&support::unique("tls-stall"));
    // Node i serves slots from i * 5462 (see `tls_cluster`); two threads use keys anywhere, one per node its own.
    opts.groups = 3;
    opts.group = Some(Arc::new(|key: &[u8]| (Slot::of(key).get() / 5462) as usize));
    opts.threads = 5;
    opts.pinned = vec![None, None, Some(0), Some(1), Some(2)];
    let load = Load::start(client, opts, Duration::from_secs(7));
    std::thread::sleep(Duration::from_millis(500));
    nodes[2].0.freeze();
    let frozen = load.now();
    std::thread::sleep(Duration::from_millis(1500));
    nodes[2].0.thaw();
    std::thread::sleep(Duration::from_millis(500));
    let r = load.finish();
    for (i, g) in r.groups.iter().enumerate() {
        println!(
            "node {i}: ok {}, errors {}, slowest call on it alone {:?} from {:?} (frozen at {frozen:?})",
            g.ok, g.errors, g.slowest, g.slowest_at
        );
    }
    assert_eq!(r.wrong, 0, "{:?}", r.wrong_samples);
    assert_eq!(r.errors(), 0, "{:?}", r.groups);
    assert!(
        r.groups[2].slowest >= Duration::from_millis(1000),
        "node 2 was never waited on"
    );
    for g in &r.groups[..2] {
        assert!(
            g.slowest <= Duration::from_millis(250),
            "a healthy TLS node waited {:?} behind the frozen one",
            g.slowest
        );
    }
}
