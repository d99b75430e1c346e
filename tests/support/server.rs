//! Real `redis-server` / `valkey-server` processes on free loopback ports: standalone servers and Clusters.
//!
//! Each server runs under a small `sh` watchdog that holds a pipe from this process: when this process exits
//! for any reason (a panic, an abort, a static that is never dropped), the pipe closes and the watchdog stops
//! the server by its PID. Dropping a fixture stops its servers at once.

#![allow(dead_code, clippy::needless_range_loop)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Which server program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Valkey,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Redis, Kind::Valkey];

    fn program(self) -> &'static str {
        match self {
            Kind::Redis => "redis-server",
            Kind::Valkey => "valkey-server",
        }
    }

    /// The binary: `$KVCACHE_REDIS_SERVER` / `$KVCACHE_VALKEY_SERVER`, then `.servers/bin/`, then `$PATH`.
    pub fn binary(self) -> PathBuf {
        let var = match self {
            Kind::Redis => "KVCACHE_REDIS_SERVER",
            Kind::Valkey => "KVCACHE_VALKEY_SERVER",
        };
        if let Ok(p) = std::env::var(var) {
            return PathBuf::from(p);
        }
        let local = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(".servers/bin")
            .join(self.program());
        if local.exists() {
            return local;
        }
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(self.program());
            if p.exists() {
                return p;
            }
        }
        panic!(
            "{} not found: run scripts/install-servers.sh (or set {var})",
            self.program()
        );
    }
}

/// A free port `p` on 127.0.0.1 whose cluster bus port `p + 10000` is free too. Both lie below the kernel's
/// ephemeral range, so no outgoing connection (a client's, or one of ours connecting to a server that is down) can
/// take the port while a test restarts its server.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let span = ephemeral_low.saturating_sub(20000).max(1000);
    let seed = std::process::id() * 7919 + NEXT.fetch_add(1, Ordering::Relaxed) * 104_729;
    for i in 0..2000u32 {
        let port = 10000 + ((seed + i * 7) % span) as u16;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
    panic!("no free port pair found");
}

/// Extra settings for a server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub cluster: bool,
    pub extra: Vec<String>,
    /// Where it listens and is reached (default 127.0.0.1); a Cluster node also announces the first one.
    pub hosts: Vec<String>,
    /// A network namespace to run it in (see `support::netns`).
    pub netns: Option<String>,
    /// A configuration file's text, written into the server's directory (kept across restarts: Sentinels rewrite
    /// theirs) and given first on the command line.
    pub config: Option<String>,
    /// Run as a Sentinel (`--sentinel`).
    pub sentinel: bool,
    /// The password the admin connection authenticates with (the server's own `requirepass`, set by the caller).
    pub password: Option<String>,
}

/// One server process.
pub struct Server {
    pub kind: Kind,
    /// The address clients reach it at.
    pub host: String,
    pub port: u16,
    pub pid: u32,
    dir: PathBuf,
    watchdog: Option<(Child, ChildStdin)>,
    options: Options,
}

impl Server {
    pub fn standalone(kind: Kind) -> Server {
        Server::start(kind, free_port(), Options::default())
    }

    pub fn start(kind: Kind, port: u16, options: Options) -> Server {
        let dir = std::env::temp_dir().join(format!("kvcache-test-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create server dir");
        let host = options.hosts.first().cloned().unwrap_or_else(|| "127.0.0.1".into());
        let mut server = Server {
            kind,
            host,
            port,
            pid: 0,
            dir,
            watchdog: None,
            options,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let dir = self.dir.display().to_string();
        let bind = if self.options.hosts.is_empty() {
            "127.0.0.1".to_string()
        } else {
            self.options.hosts.join(" ")
        };
        let mut args: Vec<String> = Vec::new();
        if let Some(text) = &self.options.config {
            let path = self.dir.join("server.conf");
            if !path.exists() {
                std::fs::write(&path, text).expect("write the server's configuration");
            }
            args.push(path.display().to_string());
        }
        if self.options.sentinel {
            args.push("--sentinel".into());
        }
        args.extend([
            "--port".into(),
            self.port.to_string(),
            "--bind".into(),
            bind,
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.clone(),
            "--logfile".into(),
            format!("{dir}/server.log"),
            "--protected-mode".into(),
            "no".into(),
            "--enable-debug-command".into(),
            "local".into(),
        ]);
        if self.options.cluster {
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("{dir}/nodes.conf"),
                    "--cluster-node-timeout",
                    "2000",
                    // Replicas sync at once, so a failover test can start as soon as they are linked.
                    "--repl-diskless-sync-delay",
                    "0",
                ]
                .map(String::from),
            );
            if !self.options.hosts.is_empty() {
                args.extend(["--cluster-announce-ip".to_string(), self.host.clone()]);
            }
        }
        args.extend(self.options.extra.iter().cloned());
        // `ip netns exec` execs the server, so the PID is the server's.
        let netns: Vec<String> = match &self.options.netns {
            Some(ns) => vec!["ip".into(), "netns".into(), "exec".into(), ns.clone()],
            None => Vec::new(),
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$@" </dev/null >/dev/null 2>&1 & pid=$!; echo $pid; read _; kill $pid 2>/dev/null; wait $pid"#)
            .arg("kvcache-test-watchdog")
            .args(&netns)
            .arg(self.kind.binary())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read pid");
        self.pid = line.trim().parse().expect("watchdog prints the pid");
        self.watchdog = Some((child, stdin));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect((self.host.as_str(), self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 7];
                // A password-protected server answers NOAUTH: it is up too.
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{:?} on port {} did not start; its log:\n{}",
            self.kind,
            self.port,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// The password the fixture authenticates with, if the server has one.
    pub fn options_password(&self) -> Option<String> {
        self.options.password.clone()
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn url(&self) -> String {
        match &self.options.password {
            Some(pw) => format!("redis://:{pw}@{}:{}", self.host, self.port),
            None => format!("redis://{}:{}", self.host, self.port),
        }
    }

    /// An admin connection (plain redis-rs), for setting up and checking from outside the client.
    pub fn admin(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("admin url");
        let conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("admin connection to {}: {e}\n{}", self.addr(), self.log()));
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        conn
    }

    /// Stops the server (SIGTERM) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            self.thaw(); // a frozen server could not act on SIGTERM
            drop(stdin); // the watchdog kills the server by its PID and waits for it
            let _ = child.wait();
        }
    }

    /// Whether the server process is running (not stopped or killed by the test).
    pub fn is_running(&self) -> bool {
        self.watchdog.is_some()
    }

    /// Freezes the server process (SIGSTOP): the kernel still accepts connections and buffers requests, but
    /// nothing is answered until `thaw`.
    pub fn freeze(&self) {
        let _ = Command::new("kill").arg("-STOP").arg(self.pid.to_string()).status();
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        let _ = Command::new("kill").arg("-CONT").arg(self.pid.to_string()).status();
    }

    /// Kills the server with SIGKILL and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = Command::new("kill").arg("-9").arg(self.pid.to_string()).status();
        self.stop();
    }

    /// Starts the server again on the same port (same directory, so a cluster node keeps its identity).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Cluster of real servers: `primaries` primaries with `replicas` replicas each, every slot covered.
pub struct Cluster {
    pub kind: Kind,
    pub nodes: Vec<Server>,
    pub primaries: usize,
}

impl Cluster {
    pub fn start(kind: Kind, primaries: usize, replicas: usize) -> Cluster {
        Cluster::start_with(kind, primaries, replicas, &[])
    }

    /// Like `start`, with extra server arguments on every node.
    pub fn start_with(kind: Kind, primaries: usize, replicas: usize, extra: &[&str]) -> Cluster {
        Cluster::start_placed(kind, primaries, replicas, extra, |_| Options::default())
    }

    /// Like `start_with`, with node `i` (primaries first, then their replicas) placed as `place(i)` says (its
    /// address, its network namespace, arguments of its own after `extra`).
    pub fn start_placed(
        kind: Kind,
        primaries: usize,
        replicas: usize,
        extra: &[&str],
        place: impl Fn(usize) -> Options,
    ) -> Cluster {
        let total = primaries * (1 + replicas);
        let nodes: Vec<Server> = (0..total)
            .map(|i| {
                let placed = place(i);
                let options = Options {
                    cluster: true,
                    extra: extra
                        .iter()
                        .map(|s| s.to_string())
                        .chain(placed.extra.clone())
                        .collect(),
                    ..placed
                };
                Server::start(kind, free_port(), options)
            })
            .collect();
        let cluster = Cluster { kind, nodes, primaries };
        cluster.form(replicas);
        cluster
    }

    /// Waits until every replica has finished its first sync (`master_link_status:up`): a replica that never
    /// synced refuses to be promoted.
    pub fn wait_synced(&self) {
        self.wait_until("every replica synced", |admins| {
            admins.iter_mut().all(|a| {
                let info: String = redis::cmd("INFO").arg("replication").query(a).unwrap_or_default();
                info.contains("role:master") || info.contains("master_link_status:up")
            })
        });
    }

    fn form(&self, replicas: usize) {
        let per = 16384 / self.primaries;
        let mut admins: Vec<redis::Connection> = self.nodes.iter().map(Server::admin).collect();
        for i in 0..self.primaries {
            let start = i * per;
            let end = if i + 1 == self.primaries {
                16383
            } else {
                start + per - 1
            };
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(start)
                .arg(end)
                .exec(&mut admins[i])
                .expect("ADDSLOTSRANGE");
        }
        for admin in admins.iter_mut().skip(1) {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg(&self.nodes[0].host)
                .arg(self.nodes[0].port)
                .exec(admin)
                .expect("MEET");
        }
        self.wait_until("every node knows every other", |admins| {
            admins.iter_mut().all(|a| {
                let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(a).unwrap_or_default();
                nodes
                    .lines()
                    .filter(|l| !l.contains("handshake") && !l.contains("noaddr"))
                    .count()
                    == self.nodes.len()
            })
        });
        let ids: Vec<String> = admins
            .iter_mut()
            .map(|a| redis::cmd("CLUSTER").arg("MYID").query(a).expect("MYID"))
            .collect();
        for r in 0..replicas {
            for p in 0..self.primaries {
                let replica = self.primaries * (1 + r) + p;
                redis::cmd("CLUSTER")
                    .arg("REPLICATE")
                    .arg(&ids[p])
                    .exec(&mut admins[replica])
                    .expect("REPLICATE");
            }
        }
        self.wait_until("cluster_state:ok with all replicas everywhere", |admins| {
            admins.iter_mut().all(|a| {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(a).unwrap_or_default();
                let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(a).unwrap_or_default();
                let full = slots
                    .iter()
                    .all(|r| matches!(r, redis::Value::Array(f) if f.len() == 3 + replicas));
                info.contains("cluster_state:ok") && slots.len() == self.primaries && full
            })
        });
    }

    fn wait_until(&self, what: &str, mut ok: impl FnMut(&mut Vec<redis::Connection>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut admins: Vec<redis::Connection> = self.nodes.iter().map(Server::admin).collect();
        while Instant::now() < deadline {
            if ok(&mut admins) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let logs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("--- {}\n{}", n.addr(), n.log()))
            .collect();
        panic!("cluster never reached: {what}\n{}", logs.join("\n"));
    }

    /// A seed URL (the first node).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The port of the primary serving each slot, per the first node that answers (16384 entries).
    pub fn slot_owners(&self) -> Vec<u16> {
        let mut owners = vec![0u16; 16384];
        let node = self.nodes.iter().find(|n| n.is_running()).expect("a running node");
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut node.admin())
            .expect("SLOTS");
        for range in slots {
            let redis::Value::Array(f) = range else {
                panic!("bad SLOTS")
            };
            let (redis::Value::Int(a), redis::Value::Int(b), redis::Value::Array(p)) = (&f[0], &f[1], &f[2]) else {
                panic!("bad SLOTS")
            };
            let redis::Value::Int(port) = p[1] else {
                panic!("bad SLOTS")
            };
            for slot in *a..=*b {
                owners[slot as usize] = port as u16;
            }
        }
        owners
    }

    /// The node ID of every node, in `nodes` order.
    pub fn ids(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| redis::cmd("CLUSTER").arg("MYID").query(&mut n.admin()).expect("MYID"))
            .collect()
    }

    /// Index in `nodes` of the replica of the primary on `port`.
    pub fn replica_of(&self, port: u16) -> usize {
        let primary = self.nodes.iter().position(|n| n.port == port).expect("known primary");
        let id = &self.ids()[primary];
        self.nodes
            .iter()
            .position(|n| {
                n.is_running() && {
                    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut n.admin()).expect("ROLE");
                    matches!(&role[..], [redis::Value::BulkString(r), _, redis::Value::Int(p), ..]
                        if r == b"slave" && *p as u16 == port)
                }
            })
            .unwrap_or_else(|| panic!("no replica of {id}"))
    }

    /// The server currently serving `key`'s slot as primary.
    pub fn primary_for(&self, key: &[u8]) -> &Server {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.nodes[0].admin())
            .expect("KEYSLOT");
        let slots: Vec<(u16, u16, (String, u16))> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.nodes[0].admin())
            .map(|v: Vec<redis::Value>| {
                v.into_iter()
                    .map(|r| {
                        let redis::Value::Array(f) = r else { panic!("bad SLOTS") };
                        let int = |v: &redis::Value| match v {
                            redis::Value::Int(i) => *i,
                            _ => panic!("bad SLOTS"),
                        };
                        let redis::Value::Array(p) = &f[2] else {
                            panic!("bad SLOTS")
                        };
                        (int(&f[0]) as u16, int(&f[1]) as u16, (String::new(), int(&p[1]) as u16))
                    })
                    .collect()
            })
            .expect("SLOTS");
        let port = slots
            .iter()
            .find(|(a, b, _)| (*a..=*b).contains(&slot))
            .map(|(_, _, (_, p))| *p)
            .expect("slot covered");
        self.nodes.iter().find(|n| n.port == port).expect("known node")
    }
}

/// `INFO commandstats` calls of `command` (lower case) on a server.
pub fn command_calls(server: &Server, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.admin())
        .expect("INFO");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
