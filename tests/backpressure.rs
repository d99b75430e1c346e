//! Backpressure on a real server held frozen: the bytes queued or in flight stay under the limit; past it a call
//! fails at once with `Overloaded` (fail-fast) or waits up to its deadline; everything completes once the server
//! answers again, and the client stays usable.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use kvcache_redis::{Client, Config, Error};
use support::{Kind, Server, wait_for};

fn bounded_queue(kind: Kind) {
    let server = Server::standalone(kind);
    let base = Config::from_url(&server.url())
        .unwrap()
        .workers(1)
        .max_queued_bytes(4 << 20)
        .request_timeout(Duration::from_secs(5));
    let fast = Client::with_config(base.clone().fail_fast_when_full(true)).unwrap();
    let patient = Client::with_config(base.request_timeout(Duration::from_millis(300))).unwrap();
    fast.ping().unwrap();
    patient.ping().unwrap();
    server.freeze();
    std::thread::scope(|s| {
        // Three 1 MiB puts (and their keys) take 3 MiB of the 4 MiB budget: a fourth does not fit.
        let puts: Vec<_> = (0..3)
            .map(|i| {
                let c = fast.clone();
                s.spawn(move || c.put(format!("bp{i}"), vec![i as u8; 1 << 20]))
            })
            .collect();
        wait_for(&fast, "budget taken", |st| st.in_flight_bytes >= 3 << 20);
        let started = Instant::now();
        let err = fast.put("one-more", vec![9u8; 1 << 20]).unwrap_err();
        assert!(matches!(err, Error::Overloaded(_)), "{err}");
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "fail fast: {:?}",
            started.elapsed()
        );
        assert_eq!(fast.stats().overloads, 1);
        let st = fast.stats();
        assert!(
            st.in_flight_bytes <= (4 << 20) + 1024,
            "memory bounded: {}",
            st.in_flight_bytes
        );

        // The other client has its own budget; fill it, then a call waits for room until its deadline.
        let fillers: Vec<_> = (0..3)
            .map(|i| {
                let c = patient.clone();
                s.spawn(move || c.put(format!("pt{i}"), vec![1u8; 1 << 20]))
            })
            .collect();
        wait_for(&patient, "second budget taken", |st| st.in_flight_bytes >= 3 << 20);
        let started = Instant::now();
        let err = patient.put("waits", vec![2u8; 1 << 20]).unwrap_err();
        assert!(err.is_timeout(), "{err}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
            "waited {waited:?}"
        );

        server.thaw();
        for h in puts {
            h.join().unwrap().unwrap();
        }
        for h in fillers {
            // Their deadline (300 ms) may have passed while frozen: either outcome is an answer, never a hang.
            let _ = h.join().unwrap();
        }
    });
    // Room again: both clients work, and what was written is there.
    fast.put("after", b"ok".to_vec()).unwrap();
    assert_eq!(fast.get("bp2").unwrap().unwrap().len(), 1 << 20);
    // Released once the worker is done with the last part (just after it answered).
    wait_for(&fast, "nothing in flight", |st| st.in_flight_bytes == 0);
    patient.put("after2", b"ok".to_vec()).unwrap();
}

per_kind!(bounded_queue);
