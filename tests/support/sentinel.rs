//! A Sentinel-managed deployment of real servers: a primary, its replicas (started first, so the Sentinels find
//! them through the primary), and Sentinels (`redis-server --sentinel` / `valkey-server --sentinel`, each with a
//! configuration file of its own, which it rewrites).

use std::time::{Duration, Instant};

use super::server::{Options, free_port};
use super::{Kind, Server};

/// What to start.
#[derive(Clone, Default)]
pub struct SentinelOptions {
    pub replicas: usize,
    pub sentinels: usize,
    /// `requirepass` of the data nodes (Sentinels get `sentinel auth-pass`, replicas `masterauth`).
    pub data_password: Option<String>,
    /// `requirepass` of the Sentinels (and `sentinel sentinel-pass`, for them to talk to each other).
    pub sentinel_password: Option<String>,
    /// Extra arguments for every data node.
    pub extra: Vec<String>,
    /// TLS everywhere (Redis only): every data node and Sentinel also listens on a TLS port, replication and the
    /// Sentinels' own links use TLS, and the Sentinels know the nodes by their TLS ports. The plaintext ports stay,
    /// for the tests' admin connections.
    pub tls: bool,
    /// Places the primary in a network namespace (`support::netns`) so that it can be cut off for real: the
    /// primary listens on the namespace's address, the replicas and Sentinels on this side's end of the link (and
    /// on 127.0.0.1).
    pub partitionable: Option<Placement>,
}

/// Where a partitionable deployment lives: the namespace's name, its address, and this side's address.
#[derive(Clone)]
pub struct Placement {
    pub netns: String,
    pub ns_ip: String,
    pub host_ip: String,
}

pub struct SentinelSet {
    pub kind: Kind,
    pub service: String,
    /// Data nodes: the first primary, then the replicas.
    pub nodes: Vec<Server>,
    pub sentinels: Vec<Server>,
    /// With `tls`: each data node's and each Sentinel's TLS port (else empty).
    pub node_tls_ports: Vec<u16>,
    pub sentinel_tls_ports: Vec<u16>,
}

impl SentinelSet {
    pub fn start(kind: Kind, opts: SentinelOptions) -> SentinelSet {
        let service = "kvcache-svc".to_string();
        let auth = |pw: &Option<String>| -> Vec<String> {
            pw.iter()
                .flat_map(|p| ["--requirepass".to_string(), p.clone(), "--masterauth".into(), p.clone()])
                .collect()
        };
        // With TLS, each process also gets a TLS port; replication and Sentinel links go over TLS (replicas then
        // announce their TLS port, and so do Sentinels to each other).
        let tls_ports = |n: usize| -> Vec<u16> {
            if opts.tls {
                (0..n).map(|_| free_port()).collect()
            } else {
                Vec::new()
            }
        };
        let node_tls_ports = tls_ports(opts.replicas + 1);
        let sentinel_tls_ports = tls_ports(opts.sentinels);
        let tls = |ports: &[u16], i: usize| -> Vec<String> {
            match ports.get(i) {
                Some(&port) => [
                    super::tls::tls_args(port, false),
                    vec!["--tls-replication".into(), "yes".into()],
                ]
                .concat(),
                None => Vec::new(),
            }
        };
        // Where each process listens (and, for the primary, which namespace it runs in).
        let place = |primary: bool| match &opts.partitionable {
            Some(p) if primary => (vec![p.ns_ip.clone()], Some(p.netns.clone())),
            Some(p) => (vec![p.host_ip.clone(), "127.0.0.1".into()], None),
            None => (Vec::new(), None),
        };
        let data = |i: usize, extra: Vec<String>| {
            let (hosts, netns) = place(i == 0);
            Options {
                extra: [
                    auth(&opts.data_password),
                    tls(&node_tls_ports, i),
                    opts.extra.clone(),
                    extra,
                ]
                .concat(),
                password: opts.data_password.clone(),
                hosts,
                netns,
                ..Options::default()
            }
        };
        let primary = Server::start(kind, free_port(), data(0, Vec::new()));
        let primary_port = node_tls_ports.first().copied().unwrap_or(primary.port);
        let primary_host = primary.host.clone();
        let mut nodes = vec![primary];
        for i in 1..=opts.replicas {
            let of = vec!["--replicaof".into(), primary_host.clone(), primary_port.to_string()];
            nodes.push(Server::start(kind, free_port(), data(i, of)));
        }
        let set = SentinelSet {
            kind,
            service: service.clone(),
            nodes,
            sentinels: Vec::new(),
            node_tls_ports,
            sentinel_tls_ports,
        };
        set.wait_synced();
        let mut conf = format!(
            "sentinel monitor {service} {primary_host} {primary_port} 2\nsentinel down-after-milliseconds {service} 1000\n\
             sentinel failover-timeout {service} 5000\nsentinel resolve-hostnames no\n"
        );
        if let Some(pw) = &opts.data_password {
            conf.push_str(&format!("sentinel auth-pass {service} {pw}\n"));
        }
        if let Some(pw) = &opts.sentinel_password {
            conf.push_str(&format!("requirepass {pw}\nsentinel sentinel-pass {pw}\n"));
        }
        let sentinels = (0..opts.sentinels)
            .map(|i| {
                Server::start(
                    kind,
                    free_port(),
                    Options {
                        config: Some(conf.clone()),
                        sentinel: true,
                        password: opts.sentinel_password.clone(),
                        extra: tls(&set.sentinel_tls_ports, i),
                        hosts: place(false).0,
                        ..Options::default()
                    },
                )
            })
            .collect();
        let set = SentinelSet { sentinels, ..set };
        set.wait_until("every Sentinel sees the replicas and the other Sentinels", || {
            set.sentinels.iter().all(|s| {
                let field = |cmd: &str| -> usize {
                    let mut admin = s.admin();
                    let v: Vec<redis::Value> = redis::cmd("SENTINEL")
                        .arg(cmd)
                        .arg(&set.service)
                        .query(&mut admin)
                        .unwrap_or_default();
                    v.len()
                };
                field("REPLICAS") == set.nodes.len() - 1 && field("SENTINELS") == set.sentinels.len() - 1
            })
        });
        set
    }

    /// The client's URL for this deployment (with TLS: the Sentinels' TLS ports).
    pub fn url(&self, scheme: &str, query: &str) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_running())
            .map(|(i, s)| match self.sentinel_tls_ports.get(i) {
                Some(port) => format!("127.0.0.1:{port}"),
                None => s.addr(),
            })
            .collect();
        let cred = match &self.nodes[0].options_password() {
            Some(pw) => format!(":{pw}@"),
            None => String::new(),
        };
        format!("{scheme}://{cred}{}/{}{query}", hosts.join(","), self.service)
    }

    /// What each running Sentinel names as the primary (`None` where it does not answer).
    pub fn primary_seen(&self) -> Vec<Option<String>> {
        primaries_named(&self.sentinel_urls(), &self.service)
    }

    /// The admin URLs of the running Sentinels.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .filter(|s| s.is_running())
            .map(Server::url)
            .collect()
    }

    /// The address the Sentinels (and so the client) know data node `i` by: its TLS port with TLS.
    pub fn known_addr(&self, i: usize) -> String {
        match self.node_tls_ports.get(i) {
            Some(port) => format!("{}:{port}", self.nodes[i].host),
            None => self.nodes[i].addr(),
        }
    }

    /// Index in `nodes` of the node the Sentinels know as `addr`.
    pub fn node_at(&self, addr: &str) -> usize {
        (0..self.nodes.len())
            .position(|i| self.known_addr(i) == addr)
            .expect("a known node")
    }

    /// Waits until every replica has finished its first sync.
    pub fn wait_synced(&self) {
        self.wait_until("every replica synced", || {
            self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut n.admin())
                    .unwrap_or_default();
                info.contains("role:master") || info.contains("master_link_status:up")
            })
        });
    }

    fn wait_until(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(30);
        while !ok() {
            if Instant::now() > until {
                let logs: Vec<String> = self
                    .sentinels
                    .iter()
                    .chain(&self.nodes)
                    .map(|n| format!("--- {}\n{}", n.addr(), n.log()))
                    .collect();
                panic!("never {what}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What each Sentinel (admin URL) names as the primary of `service` (`None` where it does not answer in time);
/// asked all at once, so that a frozen Sentinel delays no other's answer.
pub fn primaries_named(urls: &[String], service: &str) -> Vec<Option<String>> {
    let ask = |url: &String| -> Option<String> {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut conn = client.get_connection_with_timeout(Duration::from_millis(300)).ok()?;
        conn.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
        let addr: Vec<String> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(service)
            .query(&mut conn)
            .ok()?;
        Some(format!("{}:{}", addr.first()?, addr.get(1)?))
    };
    std::thread::scope(|s| {
        let asks: Vec<_> = urls.iter().map(|url| s.spawn(move || ask(url))).collect();
        asks.into_iter().map(|h| h.join().ok().flatten()).collect()
    })
}

/// Every new primary any Sentinel names while it runs, and when (on the clock of `epoch`), sampled every 10 ms
/// on a thread of its own: a failover may be followed by another (Sentinels can judge a freshly promoted primary
/// down too), and writes are only safe from the last one on.
pub struct Switches {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, Duration)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Switches {
    /// Starts watching `set`, whose primary is `old`.
    pub fn watch(set: &SentinelSet, old: String, epoch: Instant) -> Switches {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (urls, service) = (set.sentinel_urls(), set.service.clone());
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut known = vec![old];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for p in primaries_named(&urls, &service).into_iter().flatten() {
                        if !known.contains(&p) {
                            known.push(p.clone());
                            seen.lock().unwrap().push((p, epoch.elapsed()));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Switches {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Waits (up to 30 s) for the first new primary; it and when.
    pub fn first(&self) -> (String, Duration) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(first) = self.seen.lock().unwrap().first() {
                return first.clone();
            }
            assert!(Instant::now() < until, "no Sentinel ever named a new primary");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops watching; every switch seen.
    pub fn finish(mut self) -> Vec<(String, Duration)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Switches {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
