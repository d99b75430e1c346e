//! Property tests of the parsers that read what the outside world sends (`proptest`): RESP replies through the
//! resumable reader, `CLUSTER SLOTS`, URLs, LMCache YAML, chunk frames and LMCache key strings. Valid input
//! round-trips (or reads back what was encoded), any split of a valid stream reads the same, and arbitrary bytes
//! never panic, never loop and never buffer more than the reader's bound. (Sentinel answers and the split
//! layout's metadata have theirs beside their private parsers: `sentinel::view`, `chunks::split`.)
//!
//! CI runs each property's default case count (256; a few heavy ones fewer); a long campaign is
//! `PROPTEST_CASES=100000 cargo test --release --lib fuzz_`. A failing input is kept by proptest under
//! `proptest-regressions/` and replayed first on every later run: commit it with its fix.

use std::io::{self, Read};

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use redis::Value;

use crate::chunk_key::{ChunkKey, Dtype};
use crate::chunk_meta::{ChunkMeta, DtypeCode, MemoryFormat};
use crate::config::Config;
use crate::frame;
use crate::pool::BufferPool;
use crate::reader::{Bulk, Expect, Reader, Reply, Source};
use crate::resp::Head;
use crate::slot_map::parse_cluster_slots;

/// Yields its bytes in pieces of the sizes given (cycled), answering `WouldBlock` before each piece.
struct Pieces {
    data: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    next: usize,
    blocked: bool,
}

impl Pieces {
    fn new(data: Vec<u8>, sizes: Vec<usize>) -> Pieces {
        Pieces {
            data,
            at: 0,
            sizes,
            next: 0,
            blocked: false,
        }
    }
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.data.len() || !std::mem::replace(&mut self.blocked, true) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.blocked = false;
        let size = self.sizes[self.next % self.sizes.len()].max(1);
        self.next += 1;
        let n = size.min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Source for Pieces {}

/// One reply a server may send, and what the reader must make of it.
#[derive(Debug, Clone)]
enum Sent {
    Simple(String),
    Error(String, String),
    Int(i64),
    /// A nil read as a scalar.
    NilScalar,
    Bulk(Option<Vec<u8>>),
    Mget(Vec<Option<Vec<u8>>>),
    Tree(Value),
}

impl Sent {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Sent::Simple(s) => out.extend(format!("+{s}\r\n").bytes()),
            Sent::Error(code, detail) if detail.is_empty() => out.extend(format!("-{code}\r\n").bytes()),
            Sent::Error(code, detail) => out.extend(format!("-{code} {detail}\r\n").bytes()),
            Sent::Int(i) => out.extend(format!(":{i}\r\n").bytes()),
            Sent::NilScalar | Sent::Bulk(None) => out.extend(b"$-1\r\n"),
            Sent::Bulk(Some(v)) => bulk(v, out),
            Sent::Mget(items) => {
                out.extend(format!("*{}\r\n", items.len()).bytes());
                for item in items {
                    match item {
                        Some(v) => bulk(v, out),
                        None => out.extend(b"$-1\r\n"),
                    }
                }
            }
            Sent::Tree(v) => encode_value(v, out),
        }
    }

    fn expect(&self) -> Expect {
        match self {
            Sent::Simple(_) | Sent::Error(..) | Sent::Int(_) | Sent::NilScalar => Expect::Scalar,
            Sent::Bulk(_) => Expect::Bulk { verify: false },
            Sent::Mget(items) => Expect::Bulks {
                n: items.len(),
                verify: false,
            },
            Sent::Tree(_) => Expect::Value,
        }
    }

    /// Whether `reply` is what this reads as.
    fn check(&self, reply: &Reply) -> bool {
        let bulk_is = |got: &Bulk, want: &Option<Vec<u8>>| match (got, want) {
            (Bulk::Nil, None) => true,
            (Bulk::Value(b), Some(v)) => b[..] == v[..],
            _ => false,
        };
        match (self, reply) {
            (Sent::Simple(s), Reply::Scalar(Head::Simple(g))) => s == g,
            (Sent::Error(code, detail), Reply::Scalar(Head::Error(e))) => e.code == *code && e.detail == *detail,
            (Sent::Int(i), Reply::Scalar(Head::Int(g))) => i == g,
            (Sent::NilScalar, Reply::Scalar(Head::Bulk(None))) => true,
            (Sent::Bulk(want), Reply::Bulk(Ok(got))) => bulk_is(got, want),
            (Sent::Mget(want), Reply::Bulks(Ok(got))) => {
                want.len() == got.len()
                    && want
                        .iter()
                        .zip(got)
                        .all(|(w, g)| g.as_ref().is_ok_and(|g| bulk_is(g, w)))
            }
            (Sent::Tree(v), Reply::Value(g)) => v == g,
            _ => false,
        }
    }
}

fn bulk(v: &[u8], out: &mut Vec<u8>) {
    out.extend(format!("${}\r\n", v.len()).bytes());
    out.extend_from_slice(v);
    out.extend(b"\r\n");
}

/// RESP2 encoding of the value kinds `value_tree` makes.
fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.extend(b"$-1\r\n"),
        Value::Int(i) => out.extend(format!(":{i}\r\n").bytes()),
        Value::BulkString(b) => bulk(b, out),
        Value::SimpleString(s) => out.extend(format!("+{s}\r\n").bytes()),
        Value::Array(items) => {
            out.extend(format!("*{}\r\n", items.len()).bytes());
            items.iter().for_each(|i| encode_value(i, out));
        }
        other => unreachable!("not generated: {other:?}"),
    }
}

/// Values as RESP2 servers send them, nested up to four deep (`+OK` left out: redis-rs reads it as `Okay`).
pub(crate) fn value_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<i64>().prop_map(Value::Int),
        vec(any::<u8>(), 0..40).prop_map(Value::BulkString),
        "[a-z0-9 :._-]{0,16}".prop_map(Value::SimpleString),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| vec(inner, 0..8).prop_map(Value::Array))
}

fn bytes_of(sizes: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), sizes)
}

/// Bulk payloads small (cut from the read buffer), medium (gathered whole) and large (read straight from the
/// source into a buffer of their own).
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => bytes_of(0..64),
        1 => bytes_of(7_000..9_000),
        1 => bytes_of(30_000..70_000),
    ]
}

fn sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        "[A-Za-z0-9 ._:-]{0,24}".prop_map(Sent::Simple),
        ("[A-Z]{1,10}", "[A-Za-z0-9 ._:-]{0,24}").prop_map(|(c, d)| Sent::Error(c, d.trim_start().to_string())),
        any::<i64>().prop_map(Sent::Int),
        Just(Sent::NilScalar),
        proptest::option::weighted(0.9, payload()).prop_map(Sent::Bulk),
        vec(proptest::option::weighted(0.8, payload()), 0..6).prop_map(Sent::Mget),
        value_tree().prop_map(Sent::Tree),
    ]
}

/// Reads one reply per `expects` from `src`, retrying while it would block; panics if no progress is made.
fn read_replies(src: &mut Pieces, expects: &[Expect]) -> Vec<Reply> {
    let mut reader = Reader::new("fuzz:1");
    reader.set_pool(BufferPool::new(8 << 20));
    expects
        .iter()
        .map(|expect| {
            let mut spins = 0;
            loop {
                if let Some(r) = reader.read(src, expect).expect("a valid stream reads") {
                    return r;
                }
                spins += 1;
                assert!(spins < 1_000_000, "no progress");
            }
        })
        .collect()
}

/// Reads replies of kind `expect` from arbitrary bytes until the reader errs or has used them all; returns how
/// many replies it made of them.
fn read_garbage(data: Vec<u8>, sizes: Vec<usize>, expect: &Expect) -> usize {
    let len = data.len();
    let mut src = Pieces::new(data, sizes);
    let mut reader = Reader::new("fuzz:1");
    reader.set_pool(BufferPool::new(1 << 20));
    let mut replies = 0;
    let mut idle = 0;
    loop {
        match reader.read(&mut src, expect) {
            Err(_) => return replies,
            Ok(Some(_)) => {
                replies += 1;
                // Every reply takes at least three bytes ("+\r\n").
                assert!(replies <= len / 3, "{replies} replies from {len} bytes");
            }
            Ok(None) if src.at == len => {
                // Nothing left to give: the reader must stop asking (a second look is allowed).
                idle += 1;
                if idle > 2 {
                    return replies;
                }
            }
            Ok(None) => {}
        }
    }
}

/// The case count of the heaviest property (valid streams cut anywhere): half the default (`PROPTEST_CASES`, else
/// 256), so a long campaign that raises `PROPTEST_CASES` raises it too.
fn heavy_cases() -> u32 {
    ProptestConfig::default().cases.div_ceil(2)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: heavy_cases(), ..ProptestConfig::default() })]

    /// Any stream of valid replies, cut anywhere, reads as what was sent.
    #[test]
    fn fuzz_replies_read_as_sent_however_they_are_split(
        sent in vec(sent(), 1..12),
        sizes in vec(1usize..100_000, 1..8),
    ) {
        let mut data = Vec::new();
        sent.iter().for_each(|s| s.encode(&mut data));
        let expects: Vec<Expect> = sent.iter().map(Sent::expect).collect();
        let replies = read_replies(&mut Pieces::new(data.clone(), sizes), &expects);
        let whole = read_replies(&mut Pieces::new(data, vec![usize::MAX]), &expects);
        for ((s, r), w) in sent.iter().zip(&replies).zip(&whole) {
            prop_assert!(s.check(r), "sent {s:?}, read {r:?}");
            prop_assert!(s.check(w), "sent {s:?}, read whole {w:?}");
        }
    }
}

/// Arbitrary bytes, and valid replies with bytes changed, read as replies of every kind.
fn hostile() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        bytes_of(0..600),
        // Mostly RESP-looking: type bytes, digits, CRLFs.
        vec(
            prop_oneof![
                Just(b'*'),
                Just(b'$'),
                Just(b':'),
                Just(b'+'),
                Just(b'-'),
                Just(b'\r'),
                Just(b'\n'),
                (b'0'..=b'9'),
                Just(b'-'),
                any::<u8>()
            ],
            0..600
        ),
        (
            vec(sent(), 1..4),
            vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
        )
            .prop_map(|(sent, edits)| {
                let mut data = Vec::new();
                sent.iter().for_each(|s| s.encode(&mut data));
                for (at, b) in edits {
                    let i = at.index(data.len());
                    data[i] = b;
                }
                data
            }),
    ]
}

proptest! {
    /// Garbage never panics, never loops, and ends in an error or in waiting for more.
    #[test]
    fn fuzz_hostile_bytes_never_panic(data in hostile(), sizes in vec(1usize..64, 1..4), kind in 0..5usize) {
        let expect = match kind {
            0 => Expect::Scalar,
            1 => Expect::Bulk { verify: false },
            2 => Expect::Bulk { verify: true },
            3 => Expect::Bulks { n: 3, verify: false },
            _ => Expect::Value,
        };
        read_garbage(data, sizes, &expect);
    }
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    // A million nested one-element arrays: 4 MB a hostile server could send in a moment.
    let mut data = b"*1\r\n".repeat(1_000_000);
    data.extend(b":1\r\n");
    let mut reader = Reader::new("fuzz:1");
    let mut src = Pieces::new(data, vec![1 << 20]);
    let err = loop {
        match reader.read(&mut src, &Expect::Value) {
            Err(e) => break e,
            Ok(Some(r)) => panic!("read {r:?}"),
            Ok(None) => {}
        }
    };
    assert!(err.to_string().contains("nested deeper"), "{err}");
    // Within the bound, nesting reads.
    let mut ok = b"*1\r\n".repeat(32);
    ok.extend(b":7\r\n");
    let r = read_replies(&mut Pieces::new(ok, vec![3]), &[Expect::Value]);
    let mut v = &r[0];
    let Reply::Value(mut value) = std::mem::replace(&mut v, &r[0]).clone_value() else {
        unreachable!()
    };
    for _ in 0..32 {
        let Value::Array(mut items) = value else {
            panic!("not nested: {value:?}")
        };
        value = items.pop().unwrap();
    }
    assert_eq!(value, Value::Int(7));
}

impl Reply {
    fn clone_value(&self) -> Reply {
        match self {
            Reply::Value(v) => Reply::Value(v.clone()),
            other => panic!("not a value: {other:?}"),
        }
    }
}

/// A `CLUSTER SLOTS` reply made of ranges, and the ranges it must read as.
fn cluster_slots() -> impl Strategy<Value = Vec<(u16, u16, u16, Vec<u16>)>> {
    vec(
        (0u16..16384, 0u16..2000, 1u16..65535, vec(1u16..65535, 0..3))
            .prop_map(|(start, span, port, replicas)| (start, start.saturating_add(span).min(16383), port, replicas)),
        0..6,
    )
}

proptest! {
    /// Ranges as servers send them read back as sent; anything else never panics.
    #[test]
    fn fuzz_cluster_slots_read_as_sent(ranges in cluster_slots(), host in "[a-z]{1,8}(\\.[a-z]{1,5})?") {
        let node = |port: u16| Value::Array(vec![
            Value::BulkString(host.clone().into_bytes()),
            Value::Int(port.into()),
            Value::BulkString(b"0123456789abcdef".to_vec()),
        ]);
        let reply = Value::Array(
            ranges
                .iter()
                .map(|(a, b, p, rs)| {
                    let mut f = vec![Value::Int((*a).into()), Value::Int((*b).into()), node(*p)];
                    f.extend(rs.iter().map(|r| node(*r)));
                    Value::Array(f)
                })
                .collect(),
        );
        let read = parse_cluster_slots(&reply, "seed:1").unwrap();
        prop_assert_eq!(read.len(), ranges.len());
        for (r, (a, b, p, rs)) in read.iter().zip(&ranges) {
            prop_assert_eq!(r.slots.clone(), *a..=*b);
            prop_assert_eq!(&r.primary, &format!("{host}:{p}"));
            let want: Vec<String> = rs.iter().map(|r| format!("{host}:{r}")).collect();
            prop_assert_eq!(&r.replicas, &want);
        }
    }

    #[test]
    fn fuzz_cluster_slots_never_panic(reply in value_tree()) {
        let _ = parse_cluster_slots(&reply, "seed:1");
        let _ = crate::slot_map::SlotMap::from_cluster_slots(&reply, "seed:1");
    }
}

proptest! {
    /// URLs built from parts parse back into them; the password never shows in an error or a redacted URL.
    #[test]
    fn fuzz_urls_parse_into_their_parts(
        scheme in prop::sample::select(vec!["redis", "valkey", "rediss", "valkeys", "redis-cluster"]),
        user in proptest::option::of("[a-z][a-z0-9_]{0,8}"),
        password in "[A-Za-z0-9!*()~ @:/?#%]{4,16}",
        hosts in vec(("[a-z][a-z0-9-]{0,10}", 1u16..65535), 1..4),
        db in 0u32..16,
        workers in 1usize..64,
    ) {
        let encoded: String = password.bytes().map(|b| format!("%{b:02X}")).collect();
        let seeds: Vec<String> = hosts.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        let url = format!(
            "{scheme}://{}:{encoded}@{}/{db}?workers={workers}",
            user.clone().unwrap_or_default(),
            seeds.join(",")
        );
        let c = Config::from_url(&url).unwrap();
        prop_assert_eq!(&c.seeds, &seeds);
        prop_assert_eq!(c.username.as_deref(), user.as_deref());
        prop_assert_eq!(c.password.as_deref(), Some(password.as_str()));
        prop_assert_eq!((c.db, c.workers), (db, workers));
        prop_assert!(!crate::redact_url(&url).contains(&encoded));
        let shown = format!("{c:?}");
        prop_assert!(!shown.contains(&password));
        let bad = format!("{url}&workers=x");
        let e = Config::from_url(&bad).unwrap_err().to_string();
        prop_assert!(!e.contains(&encoded) && !e.contains(&password), "{}", e);
    }

    /// Arbitrary text never panics, and never echoes a password it found.
    #[test]
    fn fuzz_urls_never_panic(url in "(redis|valkey|rediss|unix|redis\\+sentinel)://[ -~]{0,60}") {
        let _ = Config::from_url(&url);
        let _ = crate::redact_url(&url);
    }

    #[test]
    fn fuzz_lmcache_yaml_never_panics(text in "[ -~\n]{0,300}") {
        let _ = Config::from_lmcache_yaml(&text);
    }

    /// Real-looking configurations with values of every type in every field never panic.
    #[test]
    fn fuzz_lmcache_yaml_fields_never_panic(
        key in prop::sample::select(vec![
            "valkey_mode", "valkey_database", "valkey_num_workers", "request_timeout", "connection_timeout",
            "valkey_ttl_sec", "valkey_enable_ttl", "tls_enable", "max_connections", "chunk_size", "valkey_username",
        ]),
        value in prop_oneof!["-?[0-9]{1,25}", "-?[0-9]{1,5}\\.[0-9]{1,5}", "(true|false|null|~|\\[\\]|\\{\\})", "\"[ -~]{0,10}\""],
        url in prop::sample::select(vec!["valkey://h:1", "redis://h:1", "redis-cluster://a:1,b:2", "resp://h:1"]),
    ) {
        let text = format!("remote_url: {url}\nextra_config:\n  {key}: {value}\n");
        let _ = Config::from_lmcache_yaml(&text);
    }
}

fn chunk_meta() -> impl Strategy<Value = Option<ChunkMeta>> {
    proptest::option::of(
        (0i32..6, 0i32..9, [any::<u32>(); 4]).prop_map(|(fmt, dtype, shape)| ChunkMeta {
            fmt: MemoryFormat::from_code(fmt),
            dtype: DtypeCode(dtype),
            shape,
        }),
    )
}

/// A frame read back: its payload and metadata, or `None` when refused.
type FrameRead = Option<(Vec<u8>, Option<ChunkMeta>)>;

/// What reading `value` as a frame gives: by the whole-value check, and by the piecewise one reads use.
fn read_frame(value: &[u8]) -> (FrameRead, FrameRead) {
    let whole = frame::decode(Bytes::copy_from_slice(value))
        .ok()
        .map(|(p, m)| (p.to_vec(), m));
    let mut v = frame::Verifier::default();
    v.feed_value(value);
    let piecewise = v
        .finish(value)
        .then(|| frame::decode_verified(Bytes::copy_from_slice(value)).ok())
        .flatten()
        .map(|(p, m)| (p.to_vec(), m));
    (whole, piecewise)
}

proptest! {
    /// Frames round-trip; a frame with any bytes changed is refused or reads exactly as the original (never other
    /// bytes, never other metadata); arbitrary bytes never panic.
    #[test]
    fn fuzz_frames_round_trip_and_damage_is_caught(
        payload in bytes_of(0..3000),
        meta in chunk_meta(),
        damage in vec((any::<prop::sample::Index>(), 1u8..=255), 1..3),
    ) {
        let framed = [&frame::encode(&payload, meta)[..], &payload].concat();
        // All-zero metadata is no metadata.
        let meta = meta.filter(|m| *m != ChunkMeta::default());
        let original = Some((payload.clone(), meta));
        prop_assert_eq!(read_frame(&framed), (original.clone(), original.clone()));
        let mut bad = framed.clone();
        for (at, flip) in &damage {
            let i = at.index(bad.len());
            bad[i] ^= flip;
        }
        let (whole, piecewise) = read_frame(&bad);
        prop_assert!(whole.is_none() || whole == original, "damage {:?} read as {:?}", damage, whole);
        prop_assert!(piecewise.is_none() || piecewise == original, "damage {:?} read as {:?}", damage, piecewise);
    }

    #[test]
    fn fuzz_frame_decoding_never_panics(value in bytes_of(0..200)) {
        let (whole, piecewise) = read_frame(&value);
        prop_assert_eq!(whole, piecewise);
    }
}

fn dtype() -> impl Strategy<Value = Dtype> {
    prop::sample::select(crate::chunk_key::DTYPES.iter().map(|(d, _)| *d).collect::<Vec<Dtype>>())
}

proptest! {
    /// LMCache key strings round-trip; arbitrary strings never panic.
    #[test]
    fn fuzz_chunk_keys_round_trip(
        model in "[A-Za-z0-9/._-]{1,30}",
        world_size in 1u32..1024,
        worker in 0u32..1024,
        hash in "-?[0-9a-f]{1,40}",
        dtype in dtype(),
        layer in proptest::option::of(0u32..1000),
        tags in vec(("[a-z_]{1,8}", "[A-Za-z0-9._-]{0,8}"), 0..3),
    ) {
        let mut text = format!("{model}@{world_size}@{worker}@{hash}@{dtype}");
        if let Some(l) = layer {
            text += &format!("@{l}");
        }
        for (k, v) in &tags {
            text += &format!("@{k}%{v}");
        }
        match text.parse::<ChunkKey>() {
            Ok(key) => prop_assert_eq!(key.to_string(), text),
            Err(e) => prop_assert!(worker >= world_size, "{} refused: {}", text, e),
        }
    }

    #[test]
    fn fuzz_chunk_key_strings_never_panic(text in "[ -~]{0,80}") {
        if let Ok(key) = text.parse::<ChunkKey>() {
            prop_assert_eq!(key.to_string().parse::<ChunkKey>().unwrap(), key);
        }
    }
}
