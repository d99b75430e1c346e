//! Unix sockets, on real servers: `unix://` URLs with a database and a password.

#[macro_use]
mod support;

use kvcache_redis::Client;
use support::server::{Options, free_port};
use support::{Kind, Server};

fn over_a_unix_socket(kind: Kind) {
    let port = free_port();
    let socket = std::env::temp_dir().join(format!("kvcache-{}-{port}.sock", std::process::id()));
    let extra = vec![
        "--unixsocket".into(),
        socket.display().to_string(),
        "--unixsocketperm".into(),
        "700".into(),
    ];
    let server = Server::start(
        kind,
        port,
        Options {
            cluster: false,
            extra,
            ..Options::default()
        },
    );
    let client = Client::open(&format!("unix://{}", socket.display())).unwrap();
    assert!(!client.is_cluster());
    client.put("sock", vec![9u8; 1 << 20]).unwrap();
    assert_eq!(client.get("sock").unwrap().unwrap().len(), 1 << 20);
    // The same server over TCP sees it: one server, two ways in.
    let over_tcp = Client::open(&server.url()).unwrap();
    assert_eq!(over_tcp.get("sock").unwrap().unwrap().len(), 1 << 20);
    // A database and a password.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("sock-pw")
        .exec(&mut server.admin())
        .unwrap();
    let db3 = Client::open(&format!("redis+unix://:sock-pw@{}?db=3", socket.display())).unwrap();
    db3.put("sock", b"three".to_vec()).unwrap();
    assert_eq!(db3.get("sock").unwrap().as_deref(), Some(&b"three"[..]));
    let db0 = Client::open(&format!("valkey+unix://:sock-pw@{}", socket.display())).unwrap();
    assert_eq!(
        db0.get("sock").unwrap().unwrap().len(),
        1 << 20,
        "database 0 is separate"
    );
    let err = Client::open(&format!("unix://{}.missing", socket.display())).unwrap_err();
    assert!(err.is_io(), "{err}");
}

per_kind!(over_a_unix_socket);
