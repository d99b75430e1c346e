//! A fake node that answers with scripted replies, for faults a real server cannot be made to show on demand
//! (TRYAGAIN, redirect loops, absurd lengths, connections cut mid-reply). It speaks just enough RESP: requests are
//! decoded with redis-rs, replies are raw bytes chosen by the script.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the script does with one request.
pub enum Reply {
    /// Send these bytes.
    Bytes(Vec<u8>),
    /// Send these bytes, then close the connection.
    BytesThenClose(Vec<u8>),
    /// Send these bytes one at a time, pausing between them.
    Trickle(Vec<u8>, Duration),
    /// Wait, then send these bytes.
    Delayed(Vec<u8>, Duration),
    /// Send the first bytes, wait, then send the second (a reply nobody asked for, arriving late).
    ThenLater(Vec<u8>, Duration, Vec<u8>),
}

/// The script: given the request's arguments (command name first) and how many requests this node has seen
/// before (over all connections), what to answer.
pub type Script = dyn Fn(&[Vec<u8>], usize) -> Reply + Send + Sync;

/// A scripted node on a free loopback port; stops when dropped.
pub struct FakeNode {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeNode {
    /// Starts a node that answers `CLUSTER SLOTS` as a standalone server would and everything else by `script`.
    pub fn start(script: impl Fn(&[Vec<u8>], usize) -> Reply + Send + Sync + 'static) -> FakeNode {
        FakeNode::spawn(script, false)
    }

    /// Starts a node whose script answers everything, `CLUSTER SLOTS` included (a Cluster node).
    pub fn start_cluster(script: impl Fn(&[Vec<u8>], usize) -> Reply + Send + Sync + 'static) -> FakeNode {
        FakeNode::spawn(script, true)
    }

    fn spawn(script: impl Fn(&[Vec<u8>], usize) -> Reply + Send + Sync + 'static, cluster: bool) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (script, requests, stop) = (script.clone(), requests.clone(), stop.clone());
                            std::thread::spawn(move || serve(stream, &*script, &requests, &stop, cluster));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        FakeNode {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Requests answered by the script so far (the client's own `CLUSTER SLOTS` probe excluded).
    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, script: &Script, requests: &AtomicUsize, stop: &AtomicBool, cluster: bool) {
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut parser = redis::Parser::new();
    while !stop.load(Ordering::Relaxed) {
        let args = match parser.parse_value(&mut reader) {
            Ok(redis::Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    redis::Value::BulkString(b) => b,
                    other => panic!("fake node: unexpected request item {other:?}"),
                })
                .collect::<Vec<_>>(),
            Ok(other) => panic!("fake node: unexpected request {other:?}"),
            Err(e) if e.is_timeout() => continue,
            Err(_) => return, // closed by the client
        };
        let reply = if args[0].eq_ignore_ascii_case(b"CLUSTER") && !cluster {
            Reply::Bytes(b"-ERR This instance has cluster support disabled\r\n".to_vec())
        } else if args[0].eq_ignore_ascii_case(b"CLIENT") {
            // The handshake's `CLIENT SETINFO` answered as Redis 7.0 does (it must not fail the connection); the
            // script never sees it.
            match args.get(1) {
                Some(sub) if sub.eq_ignore_ascii_case(b"SETINFO") => {
                    Reply::Bytes(b"-ERR unknown subcommand 'SETINFO'. Try CLIENT HELP.\r\n".to_vec())
                }
                _ => Reply::Bytes(b"+OK\r\n".to_vec()),
            }
        } else {
            script(&args, requests.fetch_add(1, Ordering::SeqCst))
        };
        let (bytes, close) = match reply {
            Reply::Bytes(b) => (b, false),
            Reply::Delayed(b, pause) => {
                std::thread::sleep(pause);
                (b, false)
            }
            Reply::BytesThenClose(b) => (b, true),
            Reply::ThenLater(now, pause, later) => {
                if writer.write_all(&now).is_err() {
                    return;
                }
                std::thread::sleep(pause);
                (later, false)
            }
            Reply::Trickle(b, pause) => {
                for byte in b {
                    if stop.load(Ordering::Relaxed) || writer.write_all(&[byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(pause);
                }
                (Vec::new(), false)
            }
        };
        if writer.write_all(&bytes).is_err() || close {
            return;
        }
    }
}

/// A `CLUSTER SLOTS` reply: each `(first, last, port)` range served by `127.0.0.1:port`.
pub fn cluster_slots(ranges: &[(u16, u16, u16)]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", ranges.len()).into_bytes();
    for (first, last, port) in ranges {
        out.extend(format!("*3\r\n:{first}\r\n:{last}\r\n*2\r\n$9\r\n127.0.0.1\r\n:{port}\r\n").into_bytes());
    }
    out
}

/// A RESP bulk string.
pub fn bulk(b: &[u8]) -> Vec<u8> {
    [format!("${}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat()
}
