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
}

pub struct SentinelSet {
    pub kind: Kind,
    pub service: String,
    /// Data nodes: the first primary, then the replicas.
    pub nodes: Vec<Server>,
    pub sentinels: Vec<Server>,
}

impl SentinelSet {
    pub fn start(kind: Kind, opts: SentinelOptions) -> SentinelSet {
        let service = "kvcache-svc".to_string();
        let auth = |pw: &Option<String>| -> Vec<String> {
            pw.iter()
                .flat_map(|p| ["--requirepass".to_string(), p.clone(), "--masterauth".into(), p.clone()])
                .collect()
        };
        let data = |extra: Vec<String>| Options {
            extra: [auth(&opts.data_password), opts.extra.clone(), extra].concat(),
            password: opts.data_password.clone(),
            ..Options::default()
        };
        let primary = Server::start(kind, free_port(), data(Vec::new()));
        let mut nodes = vec![primary];
        for _ in 0..opts.replicas {
            let of = vec!["--replicaof".into(), "127.0.0.1".into(), nodes[0].port.to_string()];
            nodes.push(Server::start(kind, free_port(), data(of)));
        }
        let set = SentinelSet {
            kind,
            service: service.clone(),
            nodes,
            sentinels: Vec::new(),
        };
        set.wait_synced();
        let mut conf = format!(
            "sentinel monitor {service} 127.0.0.1 {} 2\nsentinel down-after-milliseconds {service} 1000\n\
             sentinel failover-timeout {service} 5000\nsentinel resolve-hostnames no\n",
            set.nodes[0].port
        );
        if let Some(pw) = &opts.data_password {
            conf.push_str(&format!("sentinel auth-pass {service} {pw}\n"));
        }
        if let Some(pw) = &opts.sentinel_password {
            conf.push_str(&format!("requirepass {pw}\nsentinel sentinel-pass {pw}\n"));
        }
        let sentinels = (0..opts.sentinels)
            .map(|_| {
                Server::start(
                    kind,
                    free_port(),
                    Options {
                        config: Some(conf.clone()),
                        sentinel: true,
                        password: opts.sentinel_password.clone(),
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

    /// The client's URL for this deployment.
    pub fn url(&self, scheme: &str, query: &str) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .filter(|s| s.is_running())
            .map(Server::addr)
            .collect();
        let cred = match &self.nodes[0].options_password() {
            Some(pw) => format!(":{pw}@"),
            None => String::new(),
        };
        format!("{scheme}://{cred}{}/{}{query}", hosts.join(","), self.service)
    }

    /// What each running Sentinel names as the primary (`None` where it does not answer).
    pub fn primary_seen(&self) -> Vec<Option<String>> {
        self.sentinels
            .iter()
            .filter(|s| s.is_running())
            .map(|s| {
                let client = redis::Client::open(s.url()).ok()?;
                let mut conn = client.get_connection_with_timeout(Duration::from_millis(300)).ok()?;
                conn.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
                let addr: Vec<String> = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&self.service)
                    .query(&mut conn)
                    .ok()?;
                Some(format!("{}:{}", addr.first()?, addr.get(1)?))
            })
            .collect()
    }

    /// Index in `nodes` of the node at `addr`.
    pub fn node_at(&self, addr: &str) -> usize {
        self.nodes.iter().position(|n| n.addr() == addr).expect("a known node")
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
