//! The clients, each opened as its authors document it, with `TCP_NODELAY` (as ours).

use fred::prelude::{Builder, ClientLike, Config as FredConfig, TcpConfig};
use redis::IntoConnectionInfo;
use tokio::runtime::Runtime;

pub fn ours(url: &str) -> kvcache_redis::Client {
    kvcache_redis::Client::open(url).expect("open kvcache-redis")
}

/// This crate with its configuration changed by `set`.
pub fn ours_with(url: &str, set: impl FnOnce(kvcache_redis::Config) -> kvcache_redis::Config) -> kvcache_redis::Client {
    let config = kvcache_redis::Config::from_url(url).expect("a valid URL");
    kvcache_redis::Client::with_config(set(config)).expect("open kvcache-redis")
}

fn info(url: &str) -> redis::ConnectionInfo {
    url.into_connection_info()
        .unwrap()
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
}

/// A blocking redis-rs connection.
pub fn sync(url: &str) -> redis::Connection {
    redis::Client::open(info(url)).unwrap().get_connection().unwrap()
}

/// A redis-rs multiplexed connection (clone it to share it).
pub fn multiplexed(rt: &Runtime, url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(info(url)).unwrap();
    // The default response timeout is too short for 32 MiB values on this machine.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(std::time::Duration::from_secs(60)));
    rt.block_on(client.get_multiplexed_async_connection_with_config(&config))
        .unwrap()
}

/// A fred pool of `size` clients (a pool of one is one client), connected.
pub fn fred(rt: &Runtime, url: &str, size: usize) -> fred::clients::Pool {
    let pool = Builder::from_config(FredConfig::from_url(url).unwrap())
        .with_connection_config(|c| {
            c.tcp = TcpConfig {
                nodelay: Some(true),
                ..Default::default()
            };
        })
        .build_pool(size)
        .unwrap();
    rt.block_on(async {
        pool.init().await.unwrap();
    });
    pool
}
