//! The short soak that CI runs: the checked mixed load (sizes 100 B to 300 KiB, batched and single puts and
//! gets, several threads) for a few seconds against a real server that is restarted midway. Zero wrong values,
//! zero hung calls, recovery after the restart, and resident memory after warm-up within a generous bound.
//! The long version is the `soak` example.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use kvcache_redis::{Client, Config};
use support::load::LoadOptions;
use support::{Kind, Server, soak, unique};

const DURATION: Duration = Duration::from_secs(12);
const WARMUP: Duration = Duration::from_secs(3);
/// Generous: the client's buffers for this load are a few MiB; a leak of the values read would pass this in
/// seconds (the load moves hundreds of MiB per second).
const RSS_GROWTH_BOUND: i64 = 96 << 20;

fn short_soak(kind: Kind) {
    let mut server = Server::standalone(kind);
    let config = Config::from_url(&server.url())
        .unwrap()
        .request_timeout(Duration::from_secs(2));
    let client = Arc::new(Client::with_config(config).unwrap());
    let soak = soak::run(
        client.clone(),
        LoadOptions::new(&unique("soak")),
        soak::Plan {
            duration: DURATION,
            tick: Duration::from_secs(1),
            fault_at: Some(DURATION / 2),
            hang_bound: Duration::from_secs(4),
        },
        || {
            server.stop();
            std::thread::sleep(Duration::from_millis(300));
            server.restart();
        },
        |t| println!("{kind:?} {}", t.row()),
    );
    let r = &soak.report;
    let growth = soak.rss_growth_after(WARMUP);
    println!(
        "{kind:?}: {} calls, {} key ops, {} errors, {} lost (restart), RSS growth after warm-up {} KiB; {:?}",
        r.calls,
        r.key_ops,
        r.errors(),
        r.lost,
        growth >> 10,
        client.stats().latency
    );
    assert_eq!(r.wrong, 0, "wrong values: {:?}", r.wrong_samples);
    assert_eq!(r.hung, 0, "hung calls (max {:?})", r.max_call);
    assert!(r.untyped.is_empty(), "untyped errors: {:?}", r.untyped);
    assert!(soak.fault_at.is_some(), "the fault was never injected");
    let g = &r.groups[0];
    assert!(g.errors > 0, "the restart was not seen");
    assert!(g.last_ok > g.last_error, "never recovered: {g:?}");
    let after: Vec<_> = soak.ticks.iter().filter(|t| Some(t.at) > g.last_error).collect();
    assert!(
        after.iter().any(|t| t.ops_per_sec > 0.0),
        "no throughput after recovery"
    );
    assert!(growth < RSS_GROWTH_BOUND, "RSS grew {growth} bytes after warm-up");
}

per_kind!(short_soak);
