//! The workloads: the same keys and values for every client, each run alternately, every value checked.

use bytes::Bytes;
use fred::prelude::{KeysInterface, Pool};
use redis::AsyncCommands;
use tokio::runtime::Runtime;

use crate::Row;
use crate::clients;

/// `timing::alternate` for boxed closures: each run once per round, rotating which goes first, after one warm-up
/// each; median seconds of each.
fn alternate(rounds: usize, fns: &mut [Box<dyn FnMut() + '_>]) -> Vec<f64> {
    let mut fns: Vec<&mut dyn FnMut()> = fns.iter_mut().map(|f| &mut **f as &mut dyn FnMut()).collect();
    crate::timing::alternate(rounds, &mut fns)
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("alt:{prefix}:{i}")).collect()
}

fn value(i: usize, len: usize) -> Bytes {
    Bytes::from(vec![(i % 251) as u8; len])
}

fn size(len: usize) -> String {
    match len {
        l if l >= 1 << 20 => format!("{} MiB", l >> 20),
        l if l >= 1 << 10 => format!("{} KiB", l >> 10),
        l => format!("{l} B"),
    }
}

fn check(i: usize, v: &[u8], len: usize) {
    assert!(
        v.len() == len && v.first() == Some(&((i % 251) as u8)),
        "a read came back wrong"
    );
}

/// Picks the best (highest) figure of each client's settings; `figures` are (client, setting, value).
fn best(figures: Vec<(&'static str, String, f64)>) -> Vec<(&'static str, String, f64)> {
    let mut out: Vec<(&'static str, String, f64)> = Vec::new();
    for (c, s, v) in figures {
        match out.iter_mut().find(|(k, ..)| *k == c) {
            Some(e) if e.2 >= v => {}
            Some(e) => *e = (c, s, v),
            None => out.push((c, s, v)),
        }
    }
    out
}

pub struct Standalone<'a> {
    rt: &'a Runtime,
    url: String,
    rounds: usize,
    ours: kvcache_redis::Client,
}

impl<'a> Standalone<'a> {
    pub fn new(rt: &'a Runtime, url: &str, rounds: usize) -> Standalone<'a> {
        Standalone {
            rt,
            url: url.to_string(),
            rounds,
            ours: clients::ours(url),
        }
    }

    fn store(&self, ks: &[String], len: usize) {
        let r = self.ours.batched_put(ks, (0..ks.len()).map(|i| value(i, len))).unwrap();
        assert!(r.iter().all(Result::is_ok));
    }

    /// `threads` callers doing single gets of `len`-byte values: ours shared; a redis-rs connection per thread;
    /// one or four multiplexed connections shared; a fred pool of one or four.
    /// `KV_THREADS_GETS` sets the gets per thread and run (default 1000; 16000 makes runs of seconds, as long as
    /// other harnesses' timed rounds).
    pub fn threads(&self, server: &'static str, threads: usize, len: usize) -> Row {
        let per_thread = std::env::var("KV_THREADS_GETS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let ks = keys(&format!("threads{len}"), 256);
        self.store(&ks, len);
        let pick = |t: usize, i: usize| (t * 31 + i) % ks.len();
        let rt = self.rt;
        let run = |get: &(dyn Fn(usize, &str) -> Bytes + Sync)| {
            std::thread::scope(|s| {
                for t in 0..threads {
                    let ks = &ks;
                    s.spawn(move || {
                        for i in 0..per_thread {
                            let k = pick(t, i);
                            check(k, &get(t, &ks[k]), len);
                        }
                    });
                }
            });
        };
        let mut sync: Vec<std::sync::Mutex<redis::Connection>> = (0..threads)
            .map(|_| std::sync::Mutex::new(clients::sync(&self.url)))
            .collect();
        let mux1 = vec![clients::multiplexed(rt, &self.url)];
        let mux4: Vec<_> = (0..4).map(|_| clients::multiplexed(rt, &self.url)).collect();
        let (fred1, fred4) = (clients::fred(rt, &self.url, 1), clients::fred(rt, &self.url, 4));
        let mux_get = |conns: &Vec<redis::aio::MultiplexedConnection>, t: usize, k: &str| -> Bytes {
            let mut c = conns[t % conns.len()].clone();
            let v: Vec<u8> = rt.block_on(c.get(k)).unwrap();
            Bytes::from(v)
        };
        let fred_get = |p: &Pool, k: &str| -> Bytes { rt.block_on(p.get::<Bytes, _>(k)).unwrap() };
        // The same crate with every call through the workers: what the direct lane is measured against.
        let workers_only = clients::ours_with(&self.url, |c| c.direct_reads(false));
        let sync_ref = &mut sync;
        let t = alternate(
            self.rounds,
            &mut [
                Box::new(|| run(&|_, k| self.ours.get(k).unwrap().unwrap())),
                Box::new(|| {
                    run(&|t, k| {
                        let v: Vec<u8> = redis::cmd("GET")
                            .arg(k)
                            .query(&mut *sync_ref[t].lock().unwrap())
                            .unwrap();
                        Bytes::from(v)
                    })
                }),
                Box::new(|| run(&|t, k| mux_get(&mux1, t, k))),
                Box::new(|| run(&|t, k| mux_get(&mux4, t, k))),
                Box::new(|| run(&|_, k| fred_get(&fred1, k))),
                Box::new(|| run(&|_, k| fred_get(&fred4, k))),
                Box::new(|| run(&|_, k| workers_only.get(k).unwrap().unwrap())),
            ],
        );
        let kops = |s: f64| (threads * per_thread) as f64 / s / 1e3;
        Row {
            server,
            workload: format!("{threads} threads x single {} gets", size(len)),
            unit: "kop/s",
            ours: kops(t[0]),
            workers_only: Some(kops(t[6])),
            others: best(vec![
                ("redis-rs sync", "a connection per thread".into(), kops(t[1])),
                ("redis-rs multiplexed", "1 shared".into(), kops(t[2])),
                ("redis-rs multiplexed", "4 shared".into(), kops(t[3])),
                ("fred", "pool of 1".into(), kops(t[4])),
                ("fred", "pool of 4".into(), kops(t[5])),
            ]),
        }
    }

    /// One caller reading `n` values of `len` bytes at once: ours `batched_get`; each alternative's `MGET` and a
    /// pipeline of `GET`s.
    pub fn batched_get(&self, server: &'static str, n: usize, len: usize) -> Row {
        let ks = keys(&format!("get{len}"), n);
        self.store(&ks, len);
        let rt = self.rt;
        let mut sync = clients::sync(&self.url);
        let mut mux = clients::multiplexed(rt, &self.url);
        let fred = clients::fred(rt, &self.url, 1);
        let check_all = |vs: Vec<Bytes>| {
            assert_eq!(vs.len(), n);
            vs.iter().enumerate().for_each(|(i, v)| check(i, v, len));
        };
        let sync_ref = &mut sync;
        let mux_ref = &mut mux;
        let t = alternate(
            self.rounds,
            &mut [
                Box::new(|| {
                    let got = self.ours.batched_get(&ks).unwrap();
                    check_all(got.into_iter().map(|r| r.unwrap().unwrap()).collect());
                }),
                Box::new(|| {
                    let v: Vec<Vec<u8>> = redis::cmd("MGET").arg(&ks).query(sync_ref).unwrap();
                    check_all(v.into_iter().map(Bytes::from).collect());
                }),
                Box::new(|| {
                    let v: Vec<Vec<u8>> = rt
                        .block_on(redis::cmd("MGET").arg(&ks).query_async(&mut mux_ref.clone()))
                        .unwrap();
                    check_all(v.into_iter().map(Bytes::from).collect());
                }),
                Box::new(|| {
                    let mut p = redis::pipe();
                    ks.iter().for_each(|k| {
                        p.cmd("GET").arg(k);
                    });
                    let v: Vec<Vec<u8>> = rt.block_on(p.query_async(&mut mux_ref.clone())).unwrap();
                    check_all(v.into_iter().map(Bytes::from).collect());
                }),
                Box::new(|| {
                    let v: Vec<Bytes> = rt.block_on(fred.mget(ks.clone())).unwrap();
                    check_all(v);
                }),
                Box::new(|| {
                    check_all(fred_pipelined_gets(rt, &fred, &ks));
                }),
            ],
        );
        let gib = |s: f64| (n * len) as f64 / s / (1u64 << 30) as f64;
        Row {
            server,
            workload: format!("one caller, batched_get {n} x {}", size(len)),
            unit: "GiB/s",
            ours: gib(t[0]),
            workers_only: None,
            others: best(vec![
                ("redis-rs sync", "MGET".into(), gib(t[1])),
                ("redis-rs multiplexed", "MGET".into(), gib(t[2])),
                ("redis-rs multiplexed", "pipeline of GETs".into(), gib(t[3])),
                ("fred", "mget".into(), gib(t[4])),
                ("fred", "pipeline of GETs".into(), gib(t[5])),
            ]),
        }
    }

    /// One caller writing `n` values of `len` bytes at once: ours `batched_put`; each alternative's pipeline of
    /// `SET`s (and fred's `MSET`).
    pub fn batched_put(&self, server: &'static str, n: usize, len: usize) -> Row {
        let ks = keys(&format!("put{len}"), n);
        let vs: Vec<Bytes> = (0..n).map(|i| value(i, len)).collect();
        let rt = self.rt;
        let mut sync = clients::sync(&self.url);
        let mux = clients::multiplexed(rt, &self.url);
        let fred = clients::fred(rt, &self.url, 1);
        let sync_ref = &mut sync;
        let set_pipe = || {
            let mut p = redis::pipe();
            for (k, v) in ks.iter().zip(&vs) {
                p.cmd("SET").arg(k).arg(&v[..]).ignore();
            }
            p
        };
        let t = alternate(
            self.rounds,
            &mut [
                Box::new(|| {
                    let r = self.ours.batched_put(&ks, vs.iter().cloned()).unwrap();
                    assert!(r.iter().all(Result::is_ok));
                }),
                Box::new(|| set_pipe().query::<()>(sync_ref).unwrap()),
                Box::new(|| rt.block_on(set_pipe().query_async::<()>(&mut mux.clone())).unwrap()),
                Box::new(|| {
                    let pairs: Vec<(String, Bytes)> = ks.iter().cloned().zip(vs.iter().cloned()).collect();
                    rt.block_on(fred.mset(pairs)).unwrap();
                }),
                Box::new(|| {
                    rt.block_on(async {
                        let p = fred.next().pipeline();
                        for (k, v) in ks.iter().zip(&vs) {
                            let _: () = p.set(k.as_str(), v.clone(), None, None, false).await.unwrap();
                        }
                        let _: Vec<fred::types::Value> = p.all().await.unwrap();
                    })
                }),
            ],
        );
        assert!(ours_wrote(&self.ours, &ks, len), "a written value did not read back");
        let gib = |s: f64| (n * len) as f64 / s / (1u64 << 30) as f64;
        Row {
            server,
            workload: format!("one caller, batched_put {n} x {}", size(len)),
            unit: "GiB/s",
            ours: gib(t[0]),
            workers_only: None,
            others: best(vec![
                ("redis-rs sync", "pipeline of SETs".into(), gib(t[1])),
                ("redis-rs multiplexed", "pipeline of SETs".into(), gib(t[2])),
                ("fred", "mset".into(), gib(t[3])),
                ("fred", "pipeline of SETs".into(), gib(t[4])),
            ]),
        }
    }
}

/// `ks` read with one fred pipeline of `GET`s (split by node in a Cluster).
fn fred_pipelined_gets(rt: &Runtime, fred: &Pool, ks: &[String]) -> Vec<Bytes> {
    rt.block_on(async {
        let p = fred.next().pipeline();
        for k in ks {
            let _: () = p.get(k.as_str()).await.unwrap();
        }
        p.all().await.unwrap()
    })
}

fn ours_wrote(client: &kvcache_redis::Client, ks: &[String], len: usize) -> bool {
    let got = client.batched_get(ks).unwrap();
    got.iter()
        .enumerate()
        .all(|(i, r)| matches!(r, Ok(Some(v)) if { check(i, v, len); true }))
}

/// A 3-primary Cluster, one caller reading 1000 x 4 KiB over every slot: ours; redis-rs's sync and async cluster
/// connections (`MGET` split by slot by redis-rs); fred's cluster client (a pipeline of `GET`s, split by node).
pub fn cluster_gets(rt: &Runtime, server: &'static str, url: &str, nodes: &[String], rounds: usize) -> Row {
    let (n, len) = (1000, 4 << 10);
    let ours = clients::ours(url);
    let ks = keys("cluster", n);
    let r = ours.batched_put(&ks, (0..n).map(|i| value(i, len))).unwrap();
    assert!(r.iter().all(Result::is_ok));
    let builder = || {
        redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
            .tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
            .response_timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap()
    };
    let mut sync = builder().get_connection().unwrap();
    let mut asynch = rt.block_on(builder().get_async_connection()).unwrap();
    let fred_url = format!("redis-cluster://{}", nodes[0].trim_start_matches("redis://"));
    let fred = clients::fred(rt, &fred_url, 1);
    let check_all = |vs: Vec<Bytes>| {
        assert_eq!(vs.len(), n);
        vs.iter().enumerate().for_each(|(i, v)| check(i, v, len));
    };
    let t = alternate(
        rounds,
        &mut [
            Box::new(|| {
                let got = ours.batched_get(&ks).unwrap();
                check_all(got.into_iter().map(|r| r.unwrap().unwrap()).collect());
            }),
            Box::new(|| {
                let mut p = redis::cluster::cluster_pipe();
                ks.iter().for_each(|k| {
                    p.cmd("GET").arg(k);
                });
                let v: Vec<Vec<u8>> = p.query(&mut sync).unwrap();
                check_all(v.into_iter().map(Bytes::from).collect());
            }),
            Box::new(|| {
                let v: Vec<Vec<u8>> = rt
                    .block_on(redis::cmd("MGET").arg(&ks).query_async(&mut asynch))
                    .unwrap();
                check_all(v.into_iter().map(Bytes::from).collect());
            }),
            Box::new(|| {
                check_all(fred_pipelined_gets(rt, &fred, &ks));
            }),
        ],
    );
    let kkeys = |s: f64| n as f64 / s / 1e3;
    Row {
        server,
        workload: "cluster(3), one caller, batched_get 1000 x 4 KiB".into(),
        unit: "kkey/s",
        ours: kkeys(t[0]),
        workers_only: None,
        others: vec![
            ("redis-rs sync", "cluster pipeline of GETs".into(), kkeys(t[1])),
            ("redis-rs multiplexed", "async cluster MGET".into(), kkeys(t[2])),
            ("fred", "cluster pipeline of GETs".into(), kkeys(t[3])),
        ],
    }
}
