//! Every takeover of a deployment, seen from outside while a nemesis runs: whether a fault asked for it or the
//! servers decided it themselves (Sentinels that took a slow primary for dead, a Cluster node timeout), each time a
//! new primary appears is noted with when. A loss checker needs them all: writes the old primary acknowledged until
//! the client heard of the new one are lost by design of asynchronous replication, whoever started the failover.
//!
//! - Sentinel: every Sentinel is asked for the primary of the service every 50 ms, on a connection of its own; the
//!   first Sentinel to name a new address marks the takeover (the moment the client, which follows the Sentinels,
//!   can learn of it too).
//! - Cluster: every node is asked its `ROLE` every 50 ms, each on a thread and connection of its own (a frozen
//!   node holds up only its own); a node last seen as a replica that answers as a primary has taken over. A node
//!   that comes back from a kill keeps the role it had (a restarted old primary is not a takeover).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const POLL: Duration = Duration::from_millis(50);

/// One takeover: when (on the run's clock) and which address became the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Takeover {
    pub at: Duration,
    pub primary: String,
}

/// Watches a deployment's takeovers on threads of its own until `finish`.
pub struct Takeovers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    seen: Arc<Mutex<Vec<Takeover>>>,
}

impl Takeovers {
    /// Watches the Sentinels at `sentinel_urls` (admin URLs) for the primary of `service`.
    pub fn sentinels(sentinel_urls: Vec<String>, service: String, started: Instant) -> Takeovers {
        let mut watch = Takeovers::new();
        let (stop, seen) = (watch.stop.clone(), watch.seen.clone());
        watch.threads.push(std::thread::spawn(move || {
            let mut conns: Vec<Option<redis::Connection>> = sentinel_urls.iter().map(|_| None).collect();
            let mut named: Vec<Option<String>> = sentinel_urls.iter().map(|_| None).collect();
            let mut current: Option<String> = None;
            while !stop.load(Ordering::Relaxed) {
                for (i, url) in sentinel_urls.iter().enumerate() {
                    let answer = ask(&mut conns[i], url, |c| {
                        redis::cmd("SENTINEL")
                            .arg("GET-MASTER-ADDR-BY-NAME")
                            .arg(&service)
                            .query::<(String, u16)>(c)
                    });
                    let Some((host, port)) = answer else { continue };
                    let addr = format!("{host}:{port}");
                    if named[i].as_ref().is_some_and(|before| *before != addr) && current.as_ref() != Some(&addr) {
                        seen.lock().push(Takeover {
                            at: started.elapsed(),
                            primary: addr.clone(),
                        });
                    }
                    if named[i].as_ref() != Some(&addr) {
                        current = Some(addr.clone());
                    }
                    named[i] = Some(addr);
                }
                std::thread::sleep(POLL);
            }
        }));
        watch
    }

    /// Watches the roles of the Cluster nodes `nodes` (`(address, admin URL)`).
    pub fn cluster(nodes: Vec<(String, String)>, started: Instant) -> Takeovers {
        let mut watch = Takeovers::new();
        for (addr, url) in nodes {
            let (stop, seen) = (watch.stop.clone(), watch.seen.clone());
            watch.threads.push(std::thread::spawn(move || {
                let mut conn = None;
                let mut primary: Option<bool> = None;
                while !stop.load(Ordering::Relaxed) {
                    let role = ask(&mut conn, &url, |c| redis::cmd("ROLE").query::<Vec<redis::Value>>(c));
                    if let Some(redis::Value::BulkString(r)) = role.as_ref().and_then(|r| r.first()) {
                        let now_primary = r == b"master";
                        if now_primary && primary == Some(false) {
                            seen.lock().push(Takeover {
                                at: started.elapsed(),
                                primary: addr.clone(),
                            });
                        }
                        primary = Some(now_primary);
                    }
                    std::thread::sleep(POLL);
                }
            }));
        }
        watch
    }

    fn new() -> Takeovers {
        Takeovers {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Stops watching; every takeover seen, in order.
    pub fn finish(mut self) -> Vec<Takeover> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut seen = std::mem::take(&mut *self.seen.lock());
        seen.sort_by_key(|t| t.at);
        seen
    }
}

impl Drop for Takeovers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs `query` on the connection kept in `conn` (made from `url` when there is none, with short timeouts); a
/// failure drops the connection, to be made again next time.
fn ask<T>(
    conn: &mut Option<redis::Connection>,
    url: &str,
    query: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
) -> Option<T> {
    if conn.is_none() {
        let c = redis::Client::open(url)
            .ok()?
            .get_connection_with_timeout(Duration::from_millis(200))
            .ok()?;
        c.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
        c.set_write_timeout(Some(Duration::from_millis(300))).ok()?;
        *conn = Some(c);
    }
    let answer = query(conn.as_mut()?);
    if answer.is_err() {
        *conn = None;
    }
    answer.ok()
}
