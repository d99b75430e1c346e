//! A network namespace joined to this one by a veth pair: a server started inside it can be cut off for real
//! (`cut`: the namespace's end of the link goes down, so established connections go silent and new connects hang)
//! and joined again (`heal`: late replies arrive on the old connections). Needs root; where namespaces are not
//! permitted, `create` says so loudly and returns `None`, and the test that wanted one is skipped.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Netns {
    pub name: String,
    /// This side's address on the link.
    pub host_ip: String,
    /// The namespace's address on the link.
    pub ns_ip: String,
    host_if: String,
    ns_if: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// A fresh namespace and link, or `None` (with a loud message naming `test`) where that is not permitted.
    pub fn create(test: &str) -> Option<Netns> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = std::process::id() % 100_000;
        let subnet = (id * 7 + n * 13) % 250 + 1;
        let ns = Netns {
            name: format!("kvcache-{id}-{n}"),
            host_ip: format!("10.213.{subnet}.1"),
            ns_ip: format!("10.213.{subnet}.2"),
            host_if: format!("kvh{id}x{n}"),
            ns_if: format!("kvn{id}x{n}"),
        };
        let _ = ip(&["netns", "del", &ns.name]);
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &ns.name])?;
            ip(&["link", "add", &ns.host_if, "type", "veth", "peer", "name", &ns.ns_if])?;
            ip(&["link", "set", &ns.ns_if, "netns", &ns.name])?;
            ip(&["addr", "add", &format!("{}/24", ns.host_ip), "dev", &ns.host_if])?;
            ip(&["link", "set", &ns.host_if, "up"])?;
            ns.inside(&["addr", "add", &format!("{}/24", ns.ns_ip), "dev", &ns.ns_if])?;
            ns.inside(&["link", "set", &ns.ns_if, "up"])?;
            ns.inside(&["link", "set", "lo", "up"])
        };
        match setup() {
            Ok(()) => Some(ns),
            Err(e) => {
                eprintln!(
                    "\n*** SKIPPED {test}: network namespaces are not available here ({e}); it needs root and \
                     iproute2 ***\n"
                );
                None
            }
        }
    }

    fn inside(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Cuts the namespace off: its end of the link goes down.
    pub fn cut(&self) {
        self.inside(&["link", "set", &self.ns_if, "down"]).expect("link down");
    }

    /// Joins it again.
    pub fn heal(&self) {
        self.inside(&["link", "set", &self.ns_if, "up"]).expect("link up");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
