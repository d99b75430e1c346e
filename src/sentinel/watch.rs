//! The Sentinels' announcements of new primaries (`+promoted-slave`, `+switch-master`), watched on a thread of
//! their own.

use std::time::{Duration, Instant};

use redis::Value;

use super::Sentinels;
use super::view::text;
use crate::connection::{ConnectOptions, Connection, timespec};
use crate::error::Result;
use crate::reader::{Expect, Reply};
use crate::resp::Outgoing;

/// Watches the announcements of new primaries on every Sentinel: calls `switched()` when the service's primary changes; reconnects
/// to Sentinels that go away (every second); returns once `alive()` is false (the client is gone).
pub(crate) fn watch(sentinels: Sentinels, switched: impl Fn(), alive: impl Fn() -> bool) {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut subs: Vec<Option<Connection>> = sentinels.addrs.iter().map(|_| None).collect();
    let mut retry_at = Instant::now();
    loop {
        if !alive() {
            return;
        }
        if Instant::now() >= retry_at {
            for (addr, sub) in sentinels.addrs.iter().zip(subs.iter_mut()) {
                if sub.is_none() {
                    *sub = subscribe(addr, &sentinels.opts)
                        .inspect_err(|e| log::debug!("{e}"))
                        .ok();
                }
            }
            retry_at = Instant::now() + Duration::from_secs(1);
        }
        let live: Vec<usize> = (0..subs.len()).filter(|&i| subs[i].is_some()).collect();
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = live
                .iter()
                .map(|&i| PollFd::from_borrowed_fd(subs[i].as_ref().expect("live").fd(), PollFlags::IN))
                .collect();
            let _ = poll(&mut fds, Some(&timespec(Duration::from_millis(500))));
            fds.iter().map(|f| !f.revents().is_empty()).collect()
        };
        for (&i, ready) in live.iter().zip(ready) {
            if !ready {
                continue;
            }
            let conn = subs[i].as_mut().expect("live");
            loop {
                match conn.read(&Expect::Value) {
                    Ok(Some(Reply::Value(message))) => {
                        if is_switch(&message, &sentinels.service) {
                            log::info!(
                                "Sentinel {}: a new primary for {:?}",
                                sentinels.addrs[i],
                                sentinels.service
                            );
                            switched();
                        }
                    }
                    Ok(_) => break,
                    Err(e) => {
                        log::debug!("Sentinel subscription to {}: {e}", sentinels.addrs[i]);
                        subs[i] = None;
                        break;
                    }
                }
            }
        }
    }
}

/// A connection subscribed to the announcements of new primaries on Sentinel `addr`.
fn subscribe(addr: &str, opts: &ConnectOptions) -> Result<Connection> {
    let opts = ConnectOptions {
        timeout: opts.timeout.min(Duration::from_secs(1)),
        ..opts.clone()
    };
    let mut conn = Connection::connect(addr, &opts)?;
    let mut out = Outgoing::default();
    out.push(&[b"SUBSCRIBE", b"+switch-master", b"+promoted-slave"]);
    conn.round_trip(out, &[Expect::Value, Expect::Value], Instant::now() + opts.timeout)?;
    Ok(conn)
}

/// Whether `message` announces a new primary for `service`: `+promoted-slave` (`slave NAME IP PORT @ SERVICE ...`,
/// published by the Sentinel leading a failover the moment the replica it promoted says it is a primary), or
/// `+switch-master` (`SERVICE old-ip old-port new-ip new-port`, published by every Sentinel as it learns it).
fn is_switch(message: &Value, service: &str) -> bool {
    let Value::Array(items) = message else { return false };
    let [kind, channel, body] = items.as_slice() else {
        return false;
    };
    let (kind, channel, body) = (
        text(kind).unwrap_or_default(),
        text(channel).unwrap_or_default(),
        text(body).unwrap_or_default(),
    );
    let mut words = body.split(' ');
    kind == "message"
        && match channel.as_str() {
            "+switch-master" => words.next() == Some(service),
            "+promoted-slave" => words.skip_while(|w| *w != "@").nth(1) == Some(service),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn recognises_switch_announcements() {
        let msg = |channel: &str, body: &str| Value::Array(vec![bulk("message"), bulk(channel), bulk(body)]);
        assert!(is_switch(
            &msg("+switch-master", "svc 10.0.0.1 6379 10.0.0.2 6380"),
            "svc"
        ));
        assert!(!is_switch(
            &msg("+switch-master", "other 10.0.0.1 6379 10.0.0.2 6380"),
            "svc"
        ));
        assert!(!is_switch(&msg("+sdown", "svc"), "svc"));
        assert!(is_switch(
            &msg(
                "+promoted-slave",
                "slave 10.0.0.2:6380 10.0.0.2 6380 @ svc 10.0.0.1 6379"
            ),
            "svc"
        ));
        assert!(!is_switch(
            &msg(
                "+promoted-slave",
                "slave 10.0.0.2:6380 10.0.0.2 6380 @ other 10.0.0.1 6379"
            ),
            "svc"
        ));
        assert!(!is_switch(
            &Value::Array(vec![bulk("subscribe"), bulk("+switch-master"), Value::Int(1)]),
            "svc"
        ));
    }
}
