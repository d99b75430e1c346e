//! The reader against scripted sources: every split point of a reply stream, fills, frames, buffers taken back,
//! broken replies.

use super::*;
use crate::frame::FRAME_HEADER;
use crate::value::Destination;
use parking_lot::Mutex;

/// Yields `data` in pieces of at most `chunk` bytes, answering `WouldBlock` before each piece.
struct Script {
    data: Vec<u8>,
    at: usize,
    chunk: usize,
    blocked: bool,
}

impl Script {
    fn new(data: &[u8], chunk: usize) -> Script {
        Script {
            data: data.to_vec(),
            at: 0,
            chunk,
            blocked: false,
        }
    }
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.data.len() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if !self.blocked {
            self.blocked = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.blocked = false;
        let n = self.chunk.min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Source for Script {}

impl Source for io::Cursor<Vec<u8>> {}

/// Reads one reply per `expect` from `data` delivered `chunk` bytes at a time, retrying after each `None`.
fn read_all(data: &[u8], chunk: usize, expects: &[Expect]) -> Vec<Reply> {
    let mut src = Script::new(data, chunk);
    let mut reader = Reader::new("n:1");
    reader.set_pool(BufferPool::new(64 << 20));
    let mut out = Vec::new();
    for expect in expects {
        let mut spins = 0;
        loop {
            match reader.read(&mut src, expect).unwrap() {
                Some(r) => break out.push(r),
                None => {
                    spins += 1;
                    assert!(spins < 10_000_000, "no progress");
                }
            }
        }
    }
    assert_eq!(reader.received(), data.len() as u64);
    out
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}

fn value_of(r: &Reply) -> Vec<u8> {
    match r {
        Reply::Bulk(Ok(Bulk::Value(v))) => v.to_vec(),
        other => panic!("not a value: {other:?}"),
    }
}

#[test]
fn every_split_point_gives_the_same_replies() {
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    let mid: Vec<u8> = (0..20_000u32).map(|i| (i * 3) as u8).collect();
    let mut data = b"+OK\r\n:42\r\n-MOVED 7 h:2\r\n$-1\r\n".to_vec();
    data.extend(bulk(b"small"));
    data.extend(bulk(&big));
    data.extend(b"*4\r\n");
    data.extend(bulk(b"a"));
    data.extend(b"$-1\r\n");
    data.extend(bulk(&mid));
    data.extend(bulk(&big));
    data.extend(b"*2\r\n:1\r\n*1\r\n+x\r\n");
    let expects = [
        Expect::Scalar,
        Expect::Scalar,
        Expect::Bulk { verify: false },
        Expect::Bulk { verify: false },
        Expect::Bulk { verify: false },
        Expect::Bulk { verify: false },
        Expect::Bulks { n: 4, verify: false },
        Expect::Value,
    ];
    for chunk in [1, 2, 3, 5, 7, 13, 64, 1000, 4096, 70_000, 1 << 20] {
        let r = read_all(&data, chunk, &expects);
        assert!(matches!(&r[0], Reply::Scalar(Head::Simple(s)) if s == "OK"));
        assert!(matches!(&r[1], Reply::Scalar(Head::Int(42))));
        assert!(matches!(&r[2], Reply::Bulk(Err(e)) if e.code == "MOVED" && e.detail == "7 h:2"));
        assert!(matches!(&r[3], Reply::Bulk(Ok(Bulk::Nil))));
        assert_eq!(value_of(&r[4]), b"small");
        assert_eq!(value_of(&r[5]), big, "chunk {chunk}");
        let Reply::Bulks(Ok(items)) = &r[6] else {
            panic!("{:?}", r[6])
        };
        assert_eq!(items.len(), 4);
        assert_eq!(items[0], Ok(Bulk::Value(Bytes::from_static(b"a"))));
        assert_eq!(items[1], Ok(Bulk::Nil));
        assert_eq!(items[2], Ok(Bulk::Value(Bytes::from(mid.clone()))));
        assert_eq!(items[3], Ok(Bulk::Value(Bytes::from(big.clone()))));
        let Reply::Value(redis::Value::Array(v)) = &r[7] else {
            panic!("{:?}", r[7])
        };
        assert_eq!(v[0], redis::Value::Int(1));
    }
}

/// A chunk frame: header, then payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = crate::frame::encode(payload, None).to_vec();
    v.extend_from_slice(payload);
    v
}

fn dest(len: usize) -> DestSlot {
    Arc::new(Mutex::new(Some(Box::new(vec![0u8; len]) as Box<dyn Destination>)))
}

fn contents(d: &DestSlot) -> Vec<u8> {
    let b = d.lock().take().unwrap();
    *b.into_any().downcast::<Vec<u8>>().unwrap()
}

#[test]
fn fills_go_into_the_callers_buffer_and_check_frames() {
    let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let framed = frame(&payload);
    let mut bad = framed.clone();
    bad[FRAME_HEADER + 10] ^= 1;
    let mut data = bulk(&framed);
    data.extend(bulk(&bad));
    data.extend(bulk(&payload));
    data.extend(bulk(&payload[..10]));
    data.extend(b"$-1\r\n-ERR no\r\n");
    for chunk in [1, 7, 4096, 1 << 20] {
        let dests: Vec<DestSlot> = (0..6).map(|_| dest(payload.len())).collect();
        let fill = |i: usize, f| Expect::Fill {
            dest: dests[i].clone(),
            fill: f,
        };
        let r = read_all(
            &data,
            chunk,
            &[
                fill(0, Fill::Framed),
                fill(1, Fill::Framed),
                fill(2, Fill::Raw),
                fill(3, Fill::Raw),
                fill(4, Fill::Raw),
                fill(5, Fill::Raw),
            ],
        );
        let outcome = |i: usize| match &r[i] {
            Reply::Filled(Ok(f)) => format!("{f:?}"),
            Reply::Filled(Err(e)) => e.code.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(outcome(0), format!("{:?}", Filled::Bytes(payload.len())));
        assert_eq!(contents(&dests[0]), payload);
        assert_eq!(outcome(1), "Corrupt");
        assert_eq!(outcome(2), format!("{:?}", Filled::Bytes(payload.len())));
        assert_eq!(contents(&dests[2]), payload);
        assert_eq!(outcome(3), "WrongSize(10)");
        assert_eq!(outcome(4), "Nil");
        assert_eq!(outcome(5), "ERR");
    }
}

#[test]
fn fit_fills_take_values_up_to_the_buffers_size_and_write_nothing_past_it() {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 249) as u8).collect();
    let mut data = bulk(&big);
    data.extend(bulk(&big[..1000]));
    data.extend(bulk(&big));
    data.extend(bulk(b""));
    for chunk in [1, 4096, 1 << 20] {
        // Exactly the size, larger than the value, one byte short, and an empty value.
        let sizes = [big.len(), 5000, big.len() - 1, 16];
        let dests: Vec<DestSlot> = sizes
            .iter()
            .map(|&n| Arc::new(Mutex::new(Some(Box::new(vec![0xAAu8; n]) as Box<dyn Destination>))))
            .collect();
        let expects: Vec<Expect> = dests
            .iter()
            .map(|d| Expect::Fill {
                dest: d.clone(),
                fill: Fill::Fit,
            })
            .collect();
        let r = read_all(&data, chunk, &expects);
        let outcome = |i: usize| match &r[i] {
            Reply::Filled(Ok(f)) => format!("{f:?}"),
            other => panic!("{other:?}"),
        };
        assert_eq!(outcome(0), format!("{:?}", Filled::Bytes(big.len())));
        assert_eq!(contents(&dests[0]), big);
        assert_eq!(outcome(1), format!("{:?}", Filled::Bytes(1000)));
        let second = contents(&dests[1]);
        assert_eq!(&second[..1000], &big[..1000]);
        assert!(
            second[1000..].iter().all(|&b| b == 0xAA),
            "nothing written past the value"
        );
        assert_eq!(outcome(2), format!("{:?}", Filled::TooLarge(big.len())));
        assert!(
            contents(&dests[2]).iter().all(|&b| b == 0xAA),
            "nothing written when too large"
        );
        assert_eq!(outcome(3), format!("{:?}", Filled::Bytes(0)));
    }
}

#[test]
fn an_mget_fills_each_callers_buffer_at_every_split_point() {
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let mut data = b"*5\r\n".to_vec();
    data.extend(bulk(b"small"));
    data.extend(b"$-1\r\n");
    data.extend(bulk(&big));
    data.extend(b"-WRONGTYPE no\r\n");
    data.extend(bulk(&big[..100]));
    for chunk in [1, 3, 4096, 1 << 20] {
        let sizes = [16, 16, 200_000, 16, 50];
        let dests: Vec<DestSlot> = sizes
            .iter()
            .map(|&n| Arc::new(Mutex::new(Some(Box::new(vec![0u8; n]) as Box<dyn Destination>))))
            .collect();
        let expect = Expect::Fills {
            dests: dests.clone(),
            fill: Fill::Fit,
        };
        let r = read_all(&data, chunk, std::slice::from_ref(&expect));
        let Reply::Fills(Ok(items)) = &r[0] else {
            panic!("{:?}", r[0])
        };
        let outcome: Vec<String> = items
            .iter()
            .map(|i| match i {
                Ok(f) => format!("{f:?}"),
                Err(e) => e.code.clone(),
            })
            .collect();
        assert_eq!(
            outcome,
            ["Bytes(5)", "Nil", "Bytes(200000)", "WRONGTYPE", "TooLarge(100)"]
        );
        assert_eq!(&contents(&dests[0])[..5], b"small");
        assert_eq!(contents(&dests[2]), big);
        assert!(
            contents(&dests[4]).iter().all(|&b| b == 0),
            "nothing written past a buffer"
        );
    }
    let refused = read_all(
        b"-NOPERM no\r\n",
        1,
        &[Expect::Fills {
            dests: vec![dest(1)],
            fill: Fill::Fit,
        }],
    );
    assert!(matches!(&refused[0], Reply::Fills(Err(e)) if e.code == "NOPERM"));
}

#[test]
fn a_buffer_taken_back_midway_is_let_go() {
    let payload = vec![9u8; 200_000];
    let data = bulk(&payload);
    let d = dest(payload.len());
    let expect = Expect::Fill {
        dest: d.clone(),
        fill: Fill::Raw,
    };
    let mut src = Script::new(&data, 50_000);
    let mut reader = Reader::new("n:1");
    let mut taken = false;
    let reply = loop {
        if let Some(r) = reader.read(&mut src, &expect).unwrap() {
            break r;
        }
        if src.at > 60_000 && !taken {
            taken = d.lock().take().is_some();
        }
    };
    assert!(taken);
    assert!(matches!(reply, Reply::Filled(Ok(Filled::Abandoned))), "{reply:?}");
}

#[test]
fn verified_values_that_are_not_frames_read_as_corrupt() {
    let good = frame(&[5u8; 40_000]);
    let small = frame(b"tiny");
    let mut data = bulk(&good);
    data.extend(bulk(b"not a frame"));
    data.extend(bulk(&small));
    let r = read_all(&data, 333, &vec![Expect::Bulk { verify: true }; 3]);
    assert_eq!(value_of(&r[0]), good);
    assert!(matches!(r[1], Reply::Bulk(Ok(Bulk::Corrupt))));
    assert_eq!(value_of(&r[2]), small);
}

#[test]
fn broken_replies_are_protocol_errors() {
    let cases: [(&[u8], Expect); 6] = [
        (b"$3\r\nabcXY", Expect::Bulk { verify: false }),
        (b"*2\r\n$1\r\na\r\n", Expect::Bulks { n: 3, verify: false }),
        (b"*1\r\n:5\r\n", Expect::Bulks { n: 1, verify: false }),
        (b"$2\r\nab\r\n", Expect::Scalar),
        (b"!oops\r\n", Expect::Scalar),
        (b"$99999999999\r\n", Expect::Bulk { verify: false }),
    ];
    for (data, expect) in cases {
        let mut src = Script::new(data, 1 << 20);
        let mut reader = Reader::new("n:1");
        let err = loop {
            match reader.read(&mut src, &expect) {
                Ok(None) if src.at < src.data.len() => continue,
                Ok(other) => panic!("{:?}: {other:?}", String::from_utf8_lossy(data)),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    }
}

#[test]
fn a_closed_source_is_an_io_error() {
    let mut src = io::Cursor::new(b"$10\r\nabc".to_vec());
    let mut reader = Reader::new("n:1");
    let err = reader.read(&mut src, &Expect::Bulk { verify: false }).unwrap_err();
    assert!(err.is_io(), "{err:?}");
}
