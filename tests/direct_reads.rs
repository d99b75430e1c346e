//! The direct lanes (`Config::direct_reads`): small reads carried by the calling threads themselves. Every answer
//! they give is the server's; anything else (a refusal, a stall, a lost connection) goes to the workers, which
//! answer it as they would have; the client stays usable and the lanes come back.

#[macro_use]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvcache_redis::{Client, Config, Priority};
use support::fake::{FakeNode, Reply, bulk};
use support::{Kind, shared_standalone, unique};

per_kind!(
    many_threads_of_small_reads_get_their_own_values,
    a_refused_key_is_answered_by_the_workers_and_the_lanes_stay_on,
    with_direct_reads_off_every_key_goes_through_the_workers
);

fn value(key: &str) -> Vec<u8> {
    // Distinct per key and of varied sizes, so a value given to the wrong caller cannot pass.
    let n = 1 + key.len() * 37 % 5000;
    key.bytes().cycle().take(n).collect()
}

/// Keeps one read call in progress on another thread (the lanes serve calls that start while others are in
/// progress) until dropped.
struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn reading(c: &Arc<Client>, key: &str) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let (c, key, flag) = (c.clone(), key.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                c.get(&key).unwrap();
            }
        });
        Background {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.take().map(std::thread::JoinHandle::join);
    }
}

/// Waits until the lanes have answered more than `since` keys.
fn until_direct(c: &Client, since: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.stats().direct_keys <= since {
        assert!(
            Instant::now() < deadline,
            "the direct lanes never answered: {:?}",
            c.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// 16 threads of single gets and small batches (hits and misses mixed) through one client: every caller gets
/// its own keys' values, in order, and most keys went through the lanes, several to a round trip.
fn many_threads_of_small_reads_get_their_own_values(kind: Kind) {
    let c = Client::open(&shared_standalone(kind).url()).unwrap();
    let p = unique("direct");
    let keys: Vec<String> = (0..200).map(|i| format!("{p}{i}")).collect();
    let stored: Vec<&String> = keys.iter().step_by(3).collect();
    let r = c
        .batched_put(&stored, stored.iter().map(|k| Bytes::from(value(k))))
        .unwrap();
    assert!(r.iter().all(Result::is_ok));
    let expected = |k: &String| {
        keys.iter()
            .position(|x| x == k)
            .is_some_and(|i| i % 3 == 0)
            .then(|| value(k))
    };
    let before = c.stats();
    std::thread::scope(|s| {
        for t in 0..16 {
            let (c, keys) = (&c, &keys);
            s.spawn(move || {
                for i in 0..300 {
                    let at = (t * 31 + i * 7) % keys.len();
                    if i % 4 == 0 {
                        let batch: Vec<&String> = keys.iter().cycle().skip(at).take(1 + i % 16).collect();
                        let got = c.batched_get(&batch).unwrap();
                        assert_eq!(got.len(), batch.len());
                        for (k, v) in batch.iter().zip(got) {
                            assert_eq!(v.unwrap().map(|b| b.to_vec()), expected(k), "{k}");
                        }
                    } else {
                        let k = &keys[at];
                        assert_eq!(c.get(k).unwrap().map(|b| b.to_vec()), expected(k), "{k}");
                    }
                }
            });
        }
    });
    let after = c.stats();
    let (direct, round_trips) = (
        after.direct_keys - before.direct_keys,
        after.round_trips - before.round_trips,
    );
    let keys_read = after.keys - before.keys;
    assert!(direct * 2 > keys_read, "{direct} of {keys_read} keys through the lanes");
    assert!(keys_read > round_trips, "{keys_read} keys in {round_trips} round trips");
    assert_eq!(after.key_errors, before.key_errors);
}

/// A user that may not read some keys: the lane's `MGET` is refused whole, the callers in it go to the workers,
/// which answer each key (a value, or `NOPERM` for the forbidden one); the lanes stay on (a refusal is not a
/// fault of the connection).
fn a_refused_key_is_answered_by_the_workers_and_the_lanes_stay_on(kind: Kind) {
    let server = support::Server::standalone(kind);
    let mut admin = server.admin();
    let p = unique("acl");
    redis::cmd("ACL")
        .arg(&["SETUSER", "reader", "on", ">pw", &format!("~{p}open*"), "+@all"])
        .query::<()>(&mut admin)
        .unwrap();
    redis::cmd("SET")
        .arg(format!("{p}open"))
        .arg("yes")
        .query::<()>(&mut admin)
        .unwrap();
    redis::cmd("SET")
        .arg(format!("{p}secret"))
        .arg("no")
        .query::<()>(&mut admin)
        .unwrap();
    let c = Arc::new(Client::open(&format!("redis://reader:pw@{}", server.addr())).unwrap());
    let open = format!("{p}open");
    // Two readers, so that calls overlap.
    let _load = [Background::reading(&c, &open), Background::reading(&c, &open)];
    until_direct(&c, 0);
    for _ in 0..20 {
        let got = c.batched_get(&[open.clone(), format!("{p}secret")]).unwrap();
        assert_eq!(got[0].as_ref().unwrap().as_deref(), Some(&b"yes"[..]));
        let err = got[1].as_ref().unwrap_err();
        assert_eq!(err.server_code(), Some("NOPERM"), "{err:?}");
        let err = c.get(format!("{p}secret")).unwrap_err();
        assert_eq!(err.server_code(), Some("NOPERM"), "{err:?}");
    }
    // Still on: after a fault they would be off for a second.
    let refused = c.stats();
    assert!(refused.key_errors >= 40, "{refused:?}");
    let started = Instant::now();
    until_direct(&c, refused.direct_keys);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

/// `direct_reads=false`: the same answers, all by the workers.
fn with_direct_reads_off_every_key_goes_through_the_workers(kind: Kind) {
    let url = format!("{}?direct_reads=false", shared_standalone(kind).url());
    let c = Client::open(&url).unwrap();
    let p = unique("off");
    c.put(format!("{p}a"), Bytes::from_static(b"A")).unwrap();
    for _ in 0..50 {
        assert_eq!(c.get(format!("{p}a")).unwrap().as_deref(), Some(&b"A"[..]));
        assert_eq!(c.get(format!("{p}b")).unwrap(), None);
    }
    let s = c.stats();
    assert_eq!((s.direct_keys, s.keys), (0, 101), "{s:?}");
}

/// While a slow read keeps another call in progress (started just before), reads "k" from the scripted node
/// (its value: "value") until the lanes have answered more than `since` keys; the first reads go to the workers
/// while a lane connects.
fn read_until_direct(c: &Client, since: u64) {
    std::thread::sleep(Duration::from_millis(50));
    let deadline = Instant::now() + Duration::from_millis(400);
    while c.stats().direct_keys <= since {
        assert!(Instant::now() < deadline, "the lanes did not answer: {:?}", c.stats());
        assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"value"[..]));
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A lane whose reply does not come within `stall_threshold` hands its caller to the workers: the call gets the
/// right value well within its deadline, the late reply is never used, and the lanes come back after a pause.
#[test]
fn a_stalled_lane_hands_its_callers_to_the_workers() {
    let stall = Arc::new(AtomicBool::new(false));
    let node = {
        let stall = stall.clone();
        FakeNode::start(
            move |args, _| match (args[0].as_slice(), args.get(1).map(Vec::as_slice)) {
                // Keeps a call in progress (through the workers: a prefetch never takes a lane).
                (b"GET", Some(b"slow")) => Reply::Delayed(bulk(b"slow"), Duration::from_millis(600)),
                // The first GET of "k" after the switch is answered late, with a value that must never be seen.
                (b"GET", Some(b"k")) if stall.swap(false, Ordering::SeqCst) => {
                    Reply::Delayed(bulk(b"late"), Duration::from_millis(400))
                }
                (b"GET", _) => Reply::Bytes(bulk(b"value")),
                _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
            },
        )
    };
    let config = Config::from_url(&node.url())
        .unwrap()
        .workers(2)
        .stall_threshold(Duration::from_millis(20))
        .request_timeout(Duration::from_secs(2));
    let c = Arc::new(Client::with_config(config).unwrap());
    let slow = || {
        let c = c.clone();
        std::thread::spawn(move || {
            let v = c.call().priority(Priority::Prefetch).get("slow").unwrap();
            assert_eq!(v.as_deref(), Some(&b"slow"[..]));
        })
    };
    let get_k = || {
        let started = Instant::now();
        assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"value"[..]));
        started.elapsed()
    };
    // While a slow read is in progress, reads take the lanes (the first ones go to the workers while a lane
    // connects).
    let background = slow();
    read_until_direct(&c, 0);
    let before = c.stats();
    stall.store(true, Ordering::SeqCst);
    let took = get_k();
    assert!(took < Duration::from_millis(250), "took {took:?}");
    assert!(!stall.load(Ordering::SeqCst), "the stalled GET was sent");
    let after = c.stats();
    assert_eq!(after.direct_keys, before.direct_keys, "{after:?}");
    // Off for a while: the next reads go through the workers, rightly.
    for _ in 0..10 {
        get_k();
    }
    assert_eq!(c.stats().direct_keys, before.direct_keys);
    background.join().unwrap();
    // Back after the pause, on a new connection (the stalled one was dropped unread).
    std::thread::sleep(Duration::from_millis(1000));
    let background = slow();
    read_until_direct(&c, before.direct_keys);
    background.join().unwrap();
}

/// A call whose own deadline is shorter than `stall_threshold` and passes in a lane gets its timeout, and the
/// lanes stay on: a caller's short deadline says nothing of the node.
#[test]
fn a_callers_short_deadline_does_not_turn_the_lanes_off() {
    let node = FakeNode::start(
        move |args, _| match (args[0].as_slice(), args.get(1).map(Vec::as_slice)) {
            (b"GET", Some(b"slow")) => Reply::Delayed(bulk(b"slow"), Duration::from_millis(600)),
            (b"GET", Some(b"sluggish")) => Reply::Delayed(bulk(b"sluggish"), Duration::from_millis(30)),
            (b"GET", _) => Reply::Bytes(bulk(b"value")),
            _ => Reply::Bytes(b"-ERR unexpected\r\n".to_vec()),
        },
    );
    let config = Config::from_url(&node.url())
        .unwrap()
        .workers(2)
        .stall_threshold(Duration::from_millis(100))
        .silence_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(2));
    let c = Arc::new(Client::with_config(config).unwrap());
    let background = {
        let c = c.clone();
        std::thread::spawn(move || c.call().priority(Priority::Prefetch).get("slow").unwrap())
    };
    read_until_direct(&c, 0);
    let before = c.stats().direct_keys;
    let err = c.call().timeout(Duration::from_millis(10)).get("sluggish").unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // The next read is the lanes' again at once (after a fault they would be off for a second).
    assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"value"[..]));
    assert_eq!(c.stats().direct_keys, before + 1, "{:?}", c.stats());
    assert_eq!(background.join().unwrap().as_deref(), Some(&b"slow"[..]));
}
