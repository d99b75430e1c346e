//! The Rust crate on the Python runner's workloads (benches/python/clients.py), for the binding's cost: the same
//! rows, values and checks, one process per run, printing one line of JSON.
//!
//! `cargo build --release --example python_rows && target/release/examples/python_rows ROW URL REPS`

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kvcache_redis::Client;

const MIB: usize = 1 << 20;
const BIG: usize = 32 * MIB;
const SMALL: usize = 4096;
const THREADS: usize = 16;
const PER_THREAD: usize = 1500;

/// Value `i`: byte j = (131 j + 17 i) mod 256, as clients.py makes it.
fn value(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| ((131 * j + 17 * i) % 256) as u8).collect()
}

/// CPU seconds this process has used, all its threads (those that have exited included).
fn cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

struct Out {
    secs: Vec<f64>,
    cpu: Vec<f64>,
    checked: usize,
}

fn timed(out: &mut Out, rep: usize, f: impl FnOnce()) {
    let (c0, t0) = (cpu(), Instant::now());
    f();
    let (t1, c1) = (t0.elapsed().as_secs_f64(), cpu());
    if rep > 0 {
        out.secs.push(t1);
        out.cpu.push(c1 - c0);
    }
}

fn run(row: &str, url: &str, reps: usize) -> Result<(Out, usize, usize), String> {
    let client = Client::open(url).map_err(|e| e.to_string())?;
    let mut out = Out {
        secs: Vec::new(),
        cpu: Vec::new(),
        checked: 0,
    };
    match row {
        "read8x32" | "write8x32" => {
            let keys: Vec<String> = (0..8)
                .map(|i| match row {
                    "read8x32" => format!("pybench:big:{i}"),
                    _ => format!("pybench:w:rust:{i}"),
                })
                .collect();
            let expected: Vec<Bytes> = (0..8).map(|i| Bytes::from(value(i, BIG))).collect();
            let mut bufs: Vec<Vec<u8>> = (0..8).map(|_| vec![0u8; BIG]).collect();
            for rep in 0..=reps {
                bufs.iter_mut().for_each(|b| b.fill(0));
                if row == "write8x32" {
                    timed(&mut out, rep, || {
                        let done = client.batched_put(&keys, expected.iter().cloned()).expect("put");
                        assert!(done.iter().all(Result::is_ok), "{done:?}");
                    });
                }
                let mut filled = Vec::new();
                let read = |bufs: Vec<Vec<u8>>| client.batched_get_into(&keys, bufs);
                if row == "read8x32" {
                    timed(&mut out, rep, || filled = read(std::mem::take(&mut bufs)));
                } else {
                    filled = read(std::mem::take(&mut bufs));
                }
                for (i, f) in filled.into_iter().enumerate() {
                    if f.result.as_ref().ok() != Some(&Some(BIG)) {
                        return Err(format!("value {i}: {:?}", f.result));
                    }
                    let buf = f.buf.ok_or("buffer not handed back")?;
                    if buf[..] != expected[i][..] {
                        return Err(format!("wrong value {i}"));
                    }
                    out.checked += 1;
                    bufs.push(buf);
                }
            }
            Ok((out, 8 * BIG, 8))
        }
        "read1000x4k" => {
            let keys: Vec<String> = (0..1000).map(|i| format!("pybench:small:{i}")).collect();
            let expected: Vec<Vec<u8>> = (0..1000).map(|i| value(i, SMALL)).collect();
            for rep in 0..=reps {
                let mut got = Vec::new();
                timed(&mut out, rep, || got = client.batched_get(&keys).expect("get"));
                for (i, v) in got.into_iter().enumerate() {
                    if v.map_err(|e| e.to_string())?.as_deref() != Some(&expected[i][..]) {
                        return Err(format!("wrong value {i}"));
                    }
                    out.checked += 1;
                }
            }
            Ok((out, 1000 * SMALL, 1000))
        }
        "read1000x4k_into" => {
            let keys: Vec<String> = (0..1000).map(|i| format!("pybench:small:{i}")).collect();
            let expected: Vec<Vec<u8>> = (0..1000).map(|i| value(i, SMALL)).collect();
            let mut bufs: Vec<Vec<u8>> = (0..1000).map(|_| vec![0u8; SMALL]).collect();
            for rep in 0..=reps {
                bufs.iter_mut().for_each(|b| b.fill(0));
                let mut filled = Vec::new();
                timed(&mut out, rep, || {
                    filled = client.batched_get_into(&keys, std::mem::take(&mut bufs))
                });
                for (i, f) in filled.into_iter().enumerate() {
                    let buf = f.buf.ok_or("buffer not handed back")?;
                    if f.result.ok() != Some(Some(SMALL)) || buf != expected[i] {
                        return Err(format!("wrong value {i}"));
                    }
                    out.checked += 1;
                    bufs.push(buf);
                }
            }
            Ok((out, 1000 * SMALL, 1000))
        }
        "threads16x4k" => {
            let keys: Arc<Vec<String>> = Arc::new((0..1000).map(|i| format!("pybench:small:{i}")).collect());
            let expected: Arc<Vec<Vec<u8>>> = Arc::new((0..1000).map(|i| value(i, SMALL)).collect());
            for rep in 0..=reps {
                let mut wrong = 0;
                timed(&mut out, rep, || {
                    let handles: Vec<_> = (0..THREADS)
                        .map(|t| {
                            let (client, keys, expected) = (client.clone(), keys.clone(), expected.clone());
                            std::thread::spawn(move || {
                                let mut wrong = 0;
                                for k in 0..PER_THREAD {
                                    let i = (t * 131 + k * 7) % 1000;
                                    if client.get(&keys[i]).ok().flatten().as_deref() != Some(&expected[i][..]) {
                                        wrong += 1;
                                    }
                                }
                                wrong
                            })
                        })
                        .collect();
                    wrong = handles.into_iter().map(|h| h.join().expect("thread")).sum();
                });
                if wrong > 0 {
                    return Err(format!("{wrong} wrong values"));
                }
                out.checked += THREADS * PER_THREAD;
            }
            Ok((out, THREADS * PER_THREAD * SMALL, THREADS * PER_THREAD))
        }
        other => Err(format!("unknown row {other:?}")),
    }
}

fn list(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
    format!("[{}]", items.join(", "))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [row, url, reps] = &args[..] else {
        eprintln!("usage: python_rows ROW URL REPS");
        std::process::exit(2);
    };
    let reps: usize = reps.parse().unwrap_or(3);
    match run(row, url, reps) {
        Ok((out, bytes, ops)) => println!(
            r#"{{"client": "rust", "row": "{row}", "secs": {}, "cpu": {}, "bytes": {bytes}, "ops": {ops}, "checked": {}}}"#,
            list(&out.secs),
            list(&out.cpu),
            out.checked
        ),
        Err(e) => println!(
            r#"{{"client": "rust", "row": "{row}", "error": "{}"}}"#,
            e.replace('"', "'")
        ),
    }
}
