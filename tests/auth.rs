//! Authentication against real servers: ACL users with the default user disabled, the legacy password, wrong
//! passwords, missing permissions, re-authentication after the server kills connections, and passwords never
//! appearing in any output.

#[macro_use]
mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config};
use support::{Kind, Server};

/// Percent-encoded in URLs below: it contains URL-special characters on purpose.
const SECRET: &str = "s3cr:t@p/w%d";
const SECRET_URL: &str = "s3cr%3At%40p%2Fw%25d";

/// Every log line the client writes during these tests, to check that no password is in any of them.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        LOG.lock()
            .unwrap()
            .push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

fn assert_no_secret(what: &str, text: &str) {
    for s in [SECRET, SECRET_URL, "hunter2"] {
        assert!(!text.contains(s), "{what} shows a password: {text}");
    }
}

/// A server with an `app` user (password `SECRET`, all keys and commands), an `admin` user, and the default user off.
fn acl_server(kind: Kind) -> (Server, redis::Connection) {
    let server = Server::standalone(kind);
    let mut admin = server.admin();
    redis::cmd("ACL")
        .arg(&["SETUSER", "admin", "on", ">admin-pw", "~*", "&*", "+@all"])
        .exec(&mut admin)
        .unwrap();
    redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", &format!(">{SECRET}"), "~*", "+@all"])
        .exec(&mut admin)
        .unwrap();
    redis::cmd("ACL")
        .arg(&["SETUSER", "default", "off"])
        .exec(&mut admin)
        .unwrap();
    let admin = redis::Client::open(format!("redis://admin:admin-pw@127.0.0.1:{}", server.port))
        .unwrap()
        .get_connection()
        .unwrap();
    (server, admin)
}

fn acl_user_with_the_default_user_disabled(kind: Kind) {
    capture_logs();
    let (server, _admin) = acl_server(kind);
    let url = format!("redis://app:{SECRET_URL}@127.0.0.1:{}", server.port);
    let client = Client::open(&url).unwrap();
    client.put("k", b"v".to_vec()).unwrap();
    assert_eq!(client.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_no_secret("Client Debug", &format!("{client:?}"));
    // The same through the builder.
    let config = Config::from_url(&format!("redis://127.0.0.1:{}", server.port))
        .unwrap()
        .auth(Some("app"), SECRET);
    assert_no_secret("Config Debug", &format!("{config:?}"));
    assert_eq!(
        Client::with_config(config).unwrap().get("k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    // Without credentials the disabled default user is refused, clearly.
    let err = Client::open(&format!("redis://127.0.0.1:{}", server.port)).unwrap_err();
    assert_eq!(err.server_code(), Some("NOAUTH"), "{err}");
}

fn wrong_password_fails_at_open_without_showing_it(kind: Kind) {
    capture_logs();
    let (server, _admin) = acl_server(kind);
    let started = Instant::now();
    let err = Client::open(&format!("redis://app:hunter2@127.0.0.1:{}", server.port)).unwrap_err();
    assert_eq!(err.server_code(), Some("WRONGPASS"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_no_secret("error Display", &err.to_string());
    assert_no_secret("error Debug", &format!("{err:?}"));
    let err = "redis://app:hunter2@127.0.0.1:1?colour=blue"
        .parse::<Config>()
        .unwrap_err();
    assert_no_secret("URL error", &err.to_string());
}

fn legacy_password_only(kind: Kind) {
    capture_logs();
    let server = Server::standalone(kind);
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(SECRET)
        .exec(&mut server.admin())
        .unwrap();
    let client = Client::open(&format!("redis://:{SECRET_URL}@127.0.0.1:{}", server.port)).unwrap();
    client.put("legacy", b"ok".to_vec()).unwrap();
    assert_eq!(client.get("legacy").unwrap().as_deref(), Some(&b"ok"[..]));
    let err = Client::open(&format!("redis://:hunter2@127.0.0.1:{}", server.port)).unwrap_err();
    assert!(err.server_code().is_some(), "{err}");
    assert_no_secret("error", &format!("{err} {err:?}"));
}

fn missing_permission_is_typed_not_retried(kind: Kind) {
    capture_logs();
    let (server, mut admin) = acl_server(kind);
    redis::cmd("ACL")
        .arg(&["SETUSER", "reader", "on", ">reader-pw", "~*", "+@all", "-set"])
        .exec(&mut admin)
        .unwrap();
    let client = Client::open(&format!("redis://reader:reader-pw@127.0.0.1:{}", server.port)).unwrap();
    let started = Instant::now();
    let err = client.put("k", b"v".to_vec()).unwrap_err();
    assert_eq!(err.server_code(), Some("NOPERM"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1), "no retry, no wait");
    assert_eq!(client.stats().retries, 0);
    assert_eq!(client.get("k").unwrap(), None, "reads still work");
}

fn reauthenticates_after_the_server_kills_its_connections(kind: Kind) {
    capture_logs();
    let (server, mut admin) = acl_server(kind);
    let client = Client::with_config(
        Config::from_url(&format!("redis://app:{SECRET_URL}@127.0.0.1:{}", server.port))
            .unwrap()
            .workers(2),
    )
    .unwrap();
    client.put("before", b"1".to_vec()).unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "USER", "app"])
        .query(&mut admin)
        .unwrap();
    assert!(killed >= 1, "killed {killed}");
    // The next calls find their connections dead, reconnect and authenticate again, without an error.
    for i in 0..10 {
        client.put(format!("after{i}"), b"2".to_vec()).unwrap();
        assert_eq!(client.get(format!("after{i}")).unwrap().as_deref(), Some(&b"2"[..]));
    }
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    assert!(list.lines().any(|l| l.contains("user=app")), "{list}");
    assert!(client.stats().connects >= 2);
    // Nothing the client logged through all of this shows a password.
    for line in LOG.lock().unwrap().iter() {
        assert_no_secret("log line", line);
    }
}

per_kind!(
    acl_user_with_the_default_user_disabled,
    wrong_password_fails_at_open_without_showing_it,
    legacy_password_only,
    missing_permission_is_typed_not_retried,
    reauthenticates_after_the_server_kills_its_connections
);
