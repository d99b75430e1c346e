//! KV-cache chunks over real servers, standalone and Cluster: LMCache keys, the framed and raw layouts, integrity
//! checks against hand-damaged values, namespaces and TTL.

#[macro_use]
mod support;

use bytes::Bytes;
use kvcache_redis::{
    ChunkKey, ChunkMeta, ChunkStore, Client, Config, Dtype, Error, Layout, MemoryFormat, Slot, SplitNaming,
};
use support::{Kind, shared_cluster, shared_standalone, unique, value};

/// Where the test reads and writes raw values behind the client's back.
struct Deployment {
    url: String,
    cluster: bool,
    kind: Kind,
}

impl Deployment {
    fn of(kind: Kind, cluster: bool) -> Deployment {
        let url = if cluster {
            shared_cluster(kind).url()
        } else {
            shared_standalone(kind).url()
        };
        Deployment { url, cluster, kind }
    }

    fn admin(&self, key: &str) -> redis::Connection {
        if self.cluster {
            shared_cluster(self.kind).primary_for(key.as_bytes()).admin()
        } else {
            shared_standalone(self.kind).admin()
        }
    }

    fn raw_get(&self, key: &str) -> Option<Vec<u8>> {
        redis::cmd("GET").arg(key).query(&mut self.admin(key)).unwrap()
    }

    fn raw_set(&self, key: &str, v: &[u8]) {
        redis::cmd("SET").arg(key).arg(v).exec(&mut self.admin(key)).unwrap();
    }

    fn ttl(&self, key: &str) -> i64 {
        redis::cmd("TTL").arg(key).query(&mut self.admin(key)).unwrap()
    }

    fn store(&self, layout: Layout) -> ChunkStore {
        ChunkStore::new(Client::open(&self.url).unwrap(), layout).with_namespace(unique("ns"))
    }
}

fn keys(n: usize, model: &str) -> Vec<ChunkKey> {
    (0..n)
        .map(|i| {
            ChunkKey::new(
                model,
                2,
                1,
                &ChunkKey::hash_of_int(0x5eed_0000 + i as i128),
                Dtype::Bfloat16,
            )
            .unwrap()
        })
        .collect()
}

/// LMCache's metadata of a Llama-3-8B chunk: KV_2LTD, bfloat16.
fn lmcache_meta() -> ChunkMeta {
    ChunkMeta::new(MemoryFormat::Kv2Ltd, Dtype::Bfloat16, &[2, 32, 256, 1024]).unwrap()
}

fn framed_chunks_round_trip(d: &Deployment) {
    let store = d.store(Layout::Framed);
    let ks = keys(6, "meta-llama/Llama-3.1-8B-Instruct");
    let sizes = [0usize, 1, 4096, 1 << 20, 100, 32 << 20];
    let payloads: Vec<Bytes> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| value("chunk", i, n).into())
        .collect();
    // Store all but chunk 3.
    let stored: Vec<usize> = vec![0, 1, 2, 4, 5];
    let put = store
        .batched_put(
            &stored.iter().map(|&i| ks[i].clone()).collect::<Vec<_>>(),
            stored.iter().map(|&i| payloads[i].clone()).collect(),
            Some(lmcache_meta()),
        )
        .unwrap();
    assert!(put.iter().all(Result::is_ok), "{put:?}");
    // The stored key is the namespace and LMCache's key string; the value starts with the frame header.
    let raw = d
        .raw_get(&store.store_key(&ks[2]))
        .expect("stored under the LMCache key");
    assert_eq!(&raw[..4], b"KVCR");
    assert!(
        store
            .store_key(&ks[2])
            .ends_with("meta-llama/Llama-3.1-8B-Instruct@2@1@5eed0002@bfloat16")
    );

    let got = store.batched_get(&ks).unwrap();
    for (i, r) in got.iter().enumerate() {
        let r = r.as_ref().unwrap();
        if i == 3 {
            assert!(r.is_none());
        } else {
            let c = r.as_ref().expect("stored");
            assert!(c.payload[..] == payloads[i][..], "chunk {i}");
            assert_eq!(c.meta, Some(lmcache_meta()));
        }
    }
    assert_eq!(store.batched_contains(&ks).unwrap(), 3);
    let prefix = store.batched_get_non_blocking(&ks).wait().unwrap();
    assert_eq!(prefix.len(), 3);
    assert!(prefix[2].payload[..] == payloads[2][..]);
    // Without metadata.
    store.put(&ks[3], payloads[3].clone(), None).unwrap();
    assert_eq!(store.get(&ks[3]).unwrap().unwrap().meta, None);
    assert_eq!(store.batched_contains(&ks).unwrap(), 6);
}

fn damaged_values_are_misses_never_returned(d: &Deployment) {
    let store = d.store(Layout::Framed);
    let ks = keys(5, "org/model");
    let payloads: Vec<Bytes> = (0..5).map(|i| value("damage", i, 10_000).into()).collect();
    store.batched_put(&ks, payloads.clone(), None).unwrap();
    let good = d.raw_get(&store.store_key(&ks[0])).unwrap();
    // 1: payload byte flipped; 2: truncated; 3: not a frame at all; 4: header of another length.
    let mut flipped = good.clone();
    flipped[5000] ^= 0x40;
    d.raw_set(&store.store_key(&ks[1]), &flipped);
    d.raw_set(&store.store_key(&ks[2]), &good[..good.len() - 7]);
    d.raw_set(&store.store_key(&ks[3]), &[9u8; 10_040]);
    let mut longer = good.clone();
    longer.extend_from_slice(b"extra");
    d.raw_set(&store.store_key(&ks[4]), &longer);

    let before = store.client().stats().corrupt;
    let got = store.batched_get(&ks).unwrap();
    assert!(got[0].as_ref().unwrap().as_ref().unwrap().payload[..] == payloads[0][..]);
    for (i, r) in got.iter().enumerate().skip(1) {
        assert_eq!(r.as_ref().unwrap(), &None, "damaged chunk {i} must read as a miss");
    }
    assert_eq!(store.client().stats().corrupt - before, 4);
    // Presence alone cannot tell; the prefix of a load stops at the first damaged chunk.
    assert_eq!(store.batched_contains(&ks).unwrap(), 5);
    assert_eq!(store.batched_get_non_blocking(&ks).wait().unwrap().len(), 1);
    // Writing it again heals it.
    store.put(&ks[1], payloads[1].clone(), None).unwrap();
    assert!(store.get(&ks[1]).unwrap().unwrap().payload[..] == payloads[1][..]);
}

/// One client shared by framed chunk reads (checksummed while read), plain gets and reads into buffers, from many
/// threads at once: their keys ride in shared pipelines, but never in one `MGET` read two ways. A damaged chunk is
/// never returned, a plain value is never taken for a damaged chunk, and every buffer gets its own key's value.
fn reads_of_different_kinds_never_share_an_mget(kind: Kind) {
    let server = support::Server::standalone(kind);
    // One worker: every thread's parts meet in the same batches.
    let client = Client::with_config(Config::from_url(&server.url()).unwrap().workers(1)).unwrap();
    let store = ChunkStore::new(client.clone(), Layout::Framed).with_namespace(unique("mixed"));
    let ks = keys(8, "org/mixed");
    let payloads: Vec<Bytes> = (0..8).map(|i| value("mixed", i, 3000).into()).collect();
    store.batched_put(&ks, payloads.clone(), None).unwrap();
    let damaged = store.store_key(&ks[7]);
    let mut bytes = redis::cmd("GET")
        .arg(&damaged)
        .query::<Vec<u8>>(&mut server.admin())
        .unwrap();
    bytes[100] ^= 1;
    redis::cmd("SET")
        .arg(&damaged)
        .arg(&bytes)
        .exec(&mut server.admin())
        .unwrap();
    let plain: Vec<String> = (0..8).map(|i| format!("{}plain{i}", unique("mixed"))).collect();
    let plain_values: Vec<Vec<u8>> = (0..8).map(|i| value("plain", i, 2000 + i)).collect();
    client.batched_put(&plain, plain_values.clone()).unwrap();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (store, client, ks, payloads) = (store.clone(), client.clone(), ks.clone(), payloads.clone());
            let (plain, plain_values) = (plain.clone(), plain_values.clone());
            std::thread::spawn(move || {
                for _ in 0..200 {
                    match t % 3 {
                        0 => {
                            let got = store.batched_get(&ks).unwrap();
                            for (i, r) in got.iter().enumerate() {
                                let chunk = r.as_ref().unwrap();
                                match i {
                                    7 => assert!(chunk.is_none(), "the damaged chunk was returned"),
                                    _ => assert_eq!(chunk.as_ref().unwrap().payload, payloads[i], "chunk {i}"),
                                }
                            }
                        }
                        1 => {
                            let got = client.batched_get(&plain).unwrap();
                            for (i, r) in got.into_iter().enumerate() {
                                assert_eq!(r.unwrap().as_deref(), Some(&plain_values[i][..]), "plain {i}");
                            }
                        }
                        _ => {
                            let filled = client.batched_get_into(&plain, vec![vec![0u8; 2100]; 8]);
                            for (i, f) in filled.into_iter().enumerate() {
                                let n = plain_values[i].len();
                                assert_eq!(f.result.unwrap(), Some(n), "filled {i}");
                                let buf = f.buf.unwrap();
                                assert_eq!(&buf[..n], &plain_values[i][..], "filled {i}");
                                assert!(buf[n..].iter().all(|&b| b == 0), "filled {i}: nothing past it");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn raw_layout_checks_the_size(d: &Deployment) {
    let store = d.store(Layout::Raw { size: 4096 });
    let ks = keys(3, "raw/model");
    let err = store.put(&ks[0], vec![1u8; 4095], None).unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput(ref m) if m.contains("must be 4096 bytes")),
        "{err}"
    );
    store
        .batched_put(
            &ks[..2],
            vec![Bytes::from(vec![1u8; 4096]), Bytes::from(vec![2u8; 4096])],
            None,
        )
        .unwrap();
    assert_eq!(
        d.raw_get(&store.store_key(&ks[1])).unwrap(),
        vec![2u8; 4096],
        "raw bytes, no header"
    );
    d.raw_set(&store.store_key(&ks[2]), &[3u8; 100]);
    let before = store.client().stats().corrupt;
    let got = store.batched_get(&ks).unwrap();
    assert_eq!(
        got[0].as_ref().unwrap().as_ref().unwrap().payload,
        Bytes::from(vec![1u8; 4096])
    );
    assert_eq!(got[2].as_ref().unwrap(), &None, "wrong length is a miss");
    assert_eq!(store.client().stats().corrupt - before, 1);
}

fn namespaces_and_ttl(d: &Deployment) {
    let a = d.store(Layout::Framed);
    let b = d.store(Layout::Framed);
    let k = keys(1, "shared/model");
    a.put(&k[0], b"from a".to_vec(), None).unwrap();
    assert_eq!(b.get(&k[0]).unwrap(), None, "another namespace does not see it");
    assert_eq!(&a.get(&k[0]).unwrap().unwrap().payload[..], b"from a");
    assert_eq!(d.ttl(&a.store_key(&k[0])), -1);
    let with_ttl = ChunkStore::new(
        Client::with_config(Config::from_url(&d.url).unwrap().ttl_secs(Some(300))).unwrap(),
        Layout::Framed,
    )
    .with_namespace(unique("ttl"));
    with_ttl.put(&k[0], b"expiring".to_vec(), None).unwrap();
    let t = d.ttl(&with_ttl.store_key(&k[0]));
    assert!((201..=300).contains(&t), "ttl {t}");
    // Per call: shorter, or none at all.
    with_ttl
        .with_ttl(Some(100))
        .put(&k[0], b"sooner".to_vec(), None)
        .unwrap();
    let t = d.ttl(&with_ttl.store_key(&k[0]));
    assert!((1..=100).contains(&t), "ttl {t}");
    with_ttl.with_ttl(None).put(&k[0], b"kept".to_vec(), None).unwrap();
    assert_eq!(d.ttl(&with_ttl.store_key(&k[0])), -1);
    // The split layout puts the TTL on both keys.
    let split = d
        .store(Layout::Split {
            naming: SplitNaming::HashTagged,
        })
        .with_ttl(Some(50));
    split.put(&k[0], b"both".to_vec(), None).unwrap();
    let (kv, meta) = split.split_keys(&k[0], SplitNaming::HashTagged);
    let (t1, t2) = (d.ttl(&kv), d.ttl(&meta));
    assert!((1..=50).contains(&t1) && (1..=50).contains(&t2), "ttl {t1} {t2}");
}

/// An OOM reply fails only the chunks it concerns; the others of the batch land.
fn out_of_memory_fails_only_its_chunks(kind: Kind) {
    let server = support::Server::standalone(kind);
    let mut admin = server.admin();
    let info: String = redis::cmd("INFO").arg("memory").query(&mut admin).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .exec(&mut admin)
        .unwrap();
    // Room for about three chunks beside the one connection's query buffer (which counts as used memory).
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used + (9 << 20))
        .exec(&mut admin)
        .unwrap();
    let client = Client::with_config(Config::from_url(&server.url()).unwrap().workers(1)).unwrap();
    let store = ChunkStore::new(client, Layout::Framed);
    let ks = keys(8, "oom/model");
    let payloads: Vec<Bytes> = (0..8).map(|i| value("oom", i, 2 << 20).into()).collect();
    let put = store.batched_put(&ks, payloads.clone(), None).unwrap();
    let landed: Vec<usize> = (0..8).filter(|&i| put[i].is_ok()).collect();
    let codes: Vec<_> = put
        .iter()
        .map(|r| r.as_ref().err().and_then(|e| e.server_code().map(String::from)))
        .collect();
    assert!(!landed.is_empty() && landed.len() < 8, "{codes:?}");
    for (i, r) in put.iter().enumerate() {
        match r {
            Ok(()) => assert_eq!(
                store.get(&ks[i]).unwrap().unwrap().payload,
                payloads[i],
                "chunk {i} landed"
            ),
            Err(e) => assert_eq!(e.server_code(), Some("OOM"), "chunk {i}: {e}"),
        }
    }
    // The client keeps working: reads are fine, and writes land again once there is room.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .exec(&mut admin)
        .unwrap();
    assert!(
        store
            .batched_put(&ks, payloads, None)
            .unwrap()
            .iter()
            .all(Result::is_ok)
    );
    assert_eq!(store.batched_contains(&ks).unwrap(), 8);
}

/// LMCache's metadata for one group: native-endian (little on x86) int32 `[length, fmt, dtype, s0, s1, s2, s3]`.
fn golden_meta(len: i32, meta: ChunkMeta) -> Vec<u8> {
    let ints = [len, meta.fmt.code(), meta.dtype.0, 2, 32, 256, 1024];
    assert_eq!(
        (meta.fmt.code(), meta.dtype.0),
        (1, 3),
        "LMCache's codes: KV_2LTD 1, bfloat16 3"
    );
    assert_eq!(meta.shape, [2, 32, 256, 1024]);
    ints.iter().flat_map(|i| i.to_le_bytes()).collect()
}

fn split_layout(d: &Deployment, naming: SplitNaming) {
    let store = d.store(Layout::Split { naming });
    let ks = keys(4, "meta-llama/Llama-3.1-8B-Instruct");
    let payloads: Vec<Bytes> = (0..4).map(|i| value("split", i, 10_000 + i).into()).collect();
    let put = store
        .batched_put(&ks[..3], payloads[..3].to_vec(), Some(lmcache_meta()))
        .unwrap();
    assert!(put.iter().all(Result::is_ok), "{put:?}");

    // Keys named as LMCache names them, bytes as LMCache writes them.
    let (kv, meta) = store.split_keys(&ks[0], naming);
    let base = store.store_key(&ks[0]);
    match naming {
        SplitNaming::HashTagged => {
            assert_eq!(
                (kv.clone(), meta.clone()),
                (format!("{{{base}}}:kv_bytes"), format!("{{{base}}}:metadata"))
            );
            assert_eq!(
                Slot::of(kv.as_bytes()),
                Slot::of(meta.as_bytes()),
                "one slot for both keys"
            );
        }
        SplitNaming::Plain => assert_eq!(
            (kv.clone(), meta.clone()),
            (format!("{base}kv_bytes"), format!("{base}metadata"))
        ),
        SplitNaming::Colon => assert_eq!(
            (kv.clone(), meta.clone()),
            (format!("{base}:kv_bytes"), format!("{base}:metadata"))
        ),
        other => panic!("no golden names for {other:?}"),
    }
    assert_eq!(
        d.raw_get(&kv).unwrap(),
        payloads[0].to_vec(),
        "kv_bytes hold the raw payload"
    );
    assert_eq!(d.raw_get(&meta).unwrap(), golden_meta(10_000, lmcache_meta()));

    let got = store.batched_get(&ks).unwrap();
    for i in 0..3 {
        let c = got[i].as_ref().unwrap().as_ref().expect("stored");
        assert_eq!((c.payload.clone(), c.meta), (payloads[i].clone(), Some(lmcache_meta())));
    }
    assert_eq!(got[3].as_ref().unwrap(), &None);
    assert_eq!(store.batched_contains(&ks).unwrap(), 3);
    assert_eq!(store.batched_get_non_blocking(&ks).wait().unwrap().len(), 3);

    // kv_bytes without metadata (a write in progress) is a miss, and so is a chunk whose metadata disagrees.
    let (kv3, meta3) = store.split_keys(&ks[3], naming);
    d.raw_set(&kv3, &payloads[3]);
    assert_eq!(store.get(&ks[3]).unwrap(), None);
    assert_eq!(store.batched_contains(&ks).unwrap(), 3);
    let before = store.client().stats().corrupt;
    d.raw_set(&meta3, &golden_meta(5, lmcache_meta()));
    assert_eq!(store.get(&ks[3]).unwrap(), None);
    assert_eq!(store.client().stats().corrupt, before + 1);
    assert_eq!(
        d.raw_get(&meta3),
        Some(golden_meta(5, lmcache_meta())),
        "not an orphan: left alone"
    );

    // An eviction orphan: metadata without kv_bytes. A miss; removed where the server can check both keys at once.
    redis::cmd("DEL").arg(&kv).exec(&mut d.admin(&kv)).unwrap();
    assert_eq!(store.get(&ks[0]).unwrap(), None);
    assert_eq!(store.batched_contains(&ks).unwrap(), 0);
    let removable = naming == SplitNaming::HashTagged || !d.cluster;
    assert_eq!(d.raw_get(&meta).is_none(), removable, "orphan removed: {removable}");
    // The chunk can be stored again and reads back whole.
    store.put(&ks[0], payloads[0].clone(), Some(lmcache_meta())).unwrap();
    assert_eq!(store.get(&ks[0]).unwrap().unwrap().payload, payloads[0]);
}

fn standalone_split_hash_tagged(kind: Kind) {
    split_layout(&Deployment::of(kind, false), SplitNaming::HashTagged);
}
fn standalone_split_plain(kind: Kind) {
    split_layout(&Deployment::of(kind, false), SplitNaming::Plain);
}
fn standalone_split_colon(kind: Kind) {
    split_layout(&Deployment::of(kind, false), SplitNaming::Colon);
}
fn cluster_split_colon(kind: Kind) {
    split_layout(&Deployment::of(kind, true), SplitNaming::Colon);
}
fn cluster_split_hash_tagged(kind: Kind) {
    split_layout(&Deployment::of(kind, true), SplitNaming::HashTagged);
}
fn cluster_split_plain(kind: Kind) {
    split_layout(&Deployment::of(kind, true), SplitNaming::Plain);
}

/// Reads into caller-owned buffers: filled in place, misses, damaged values and wrong-size buffers per chunk, and
/// the connection stays in step after a wrong size.
fn get_into_fills_caller_buffers(d: &Deployment) {
    let store = d.store(Layout::Framed);
    let ks = keys(5, "into/model");
    let sizes = [1 << 20, 4096, 32 << 20, 100, 7];
    let payloads: Vec<Bytes> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| value("into", i, n).into())
        .collect();
    store
        .batched_put(&ks[..4], payloads[..4].to_vec(), Some(lmcache_meta()))
        .unwrap();
    // Chunk 1 gets a damaged payload byte.
    let mut damaged = d.raw_get(&store.store_key(&ks[1])).unwrap();
    damaged[100] ^= 1;
    d.raw_set(&store.store_key(&ks[1]), &damaged);
    // Buffers: right size, right size (damaged), right size, wrong size, for a missing chunk.
    let bufs: Vec<Vec<u8>> = vec![
        vec![0; 1 << 20],
        vec![0; 4096],
        vec![0; 32 << 20],
        vec![0; 99],
        vec![0; 7],
    ];
    let before = store.client().stats().corrupt;
    let out = store.batched_get_into(&ks, bufs);
    assert_eq!(out.len(), 5);
    assert_eq!(out[0].result.as_ref().unwrap(), &Some(1 << 20));
    assert!(out[0].buf.as_ref().unwrap()[..] == payloads[0][..]);
    assert_eq!(out[1].result.as_ref().unwrap(), &None, "damaged: a miss");
    assert_eq!(store.client().stats().corrupt, before + 1);
    assert_eq!(out[2].result.as_ref().unwrap(), &Some(32 << 20));
    assert!(out[2].buf.as_ref().unwrap()[..] == payloads[2][..]);
    assert!(
        matches!(out[3].result, Err(Error::InvalidInput(_))),
        "{:?}",
        out[3].result
    );
    assert_eq!(
        out[3].buf.as_ref().unwrap().len(),
        99,
        "the buffer comes back untouched in size"
    );
    assert_eq!(out[4].result.as_ref().unwrap(), &None, "missing");
    // Still in step: a normal read right after returns the right chunk.
    assert_eq!(store.get(&ks[3]).unwrap().unwrap().payload, payloads[3]);
    // A buffer larger than the payload takes it (a partial chunk into a full chunk's buffer), nothing past it.
    let out = store.batched_get_into(&ks[3..4], vec![vec![0xEEu8; 150]]);
    assert_eq!(out[0].result.as_ref().unwrap(), &Some(100));
    let buf = out[0].buf.as_ref().unwrap();
    assert!(buf[..100] == payloads[3][..] && buf[100..].iter().all(|&b| b == 0xEE));
    // Raw layout: the buffer size is the layout's size.
    let raw = d.store(Layout::Raw { size: 4096 });
    raw.put(&ks[0], vec![6u8; 4096], None).unwrap();
    let slab: Box<[u8]> = vec![0u8; 4096].into_boxed_slice();
    let out = raw.batched_get_into(&ks[..1], vec![slab]);
    assert_eq!(out[0].result.as_ref().unwrap(), &Some(4096));
    assert!(out[0].buf.as_ref().unwrap().iter().all(|&b| b == 6));
    let out = raw.batched_get_into(&ks[..1], vec![vec![0u8; 10]]);
    assert!(out[0].result.is_err() && out[0].buf.is_some());
}

/// A framed batch of large and small chunks mixed (split into several parts on the way) reads back whole, and a
/// chunk over the size limit anywhere in a batch fails the whole call before anything is written.
fn framed_batches_of_mixed_sizes(d: &Deployment) {
    let store = d.store(Layout::Framed);
    let ks = keys(9, "mixed");
    let sizes = [5 << 20, 10, 6 << 20, 3 << 20, 2 << 20, 0, 40, 9 << 20, 1];
    let payloads: Vec<Bytes> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| value("mixed", i, n).into())
        .collect();
    let put = store.batched_put(&ks, payloads.clone(), Some(lmcache_meta())).unwrap();
    assert_eq!(put.len(), ks.len());
    assert!(put.iter().all(Result::is_ok), "{put:?}");
    let got = store.batched_get(&ks).unwrap();
    for (i, r) in got.into_iter().enumerate() {
        let c = r.unwrap().expect("stored");
        assert!(c.payload[..] == payloads[i][..], "chunk {i} of {} bytes", sizes[i]);
        assert_eq!(c.meta, Some(lmcache_meta()));
    }

    let config = Config::from_url(&d.url).unwrap().max_value_bytes(4 << 20);
    let limited = ChunkStore::new(Client::with_config(config).unwrap(), Layout::Framed).with_namespace(unique("ns"));
    let fresh = keys(3, "limited");
    let err = limited
        .batched_put(
            &fresh,
            vec![
                value("small", 0, 1 << 20).into(),
                value("small", 1, 3 << 20).into(),
                value("big", 2, 5 << 20).into(),
            ],
            None,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput(ref m) if m.contains("max_value_bytes")),
        "{err}"
    );
    for k in &fresh {
        assert_eq!(
            d.raw_get(&limited.store_key(k)),
            None,
            "nothing of a refused call is written"
        );
    }
    // The store stays usable.
    limited.put(&fresh[0], value("small", 0, 1 << 20), None).unwrap();
    assert!(limited.get(&fresh[0]).unwrap().is_some());
}

fn standalone_framed_mixed(kind: Kind) {
    framed_batches_of_mixed_sizes(&Deployment::of(kind, false));
}
fn cluster_framed_mixed(kind: Kind) {
    framed_batches_of_mixed_sizes(&Deployment::of(kind, true));
}

fn standalone_get_into(kind: Kind) {
    get_into_fills_caller_buffers(&Deployment::of(kind, false));
}
fn cluster_get_into(kind: Kind) {
    get_into_fills_caller_buffers(&Deployment::of(kind, true));
}

fn standalone_framed(kind: Kind) {
    framed_chunks_round_trip(&Deployment::of(kind, false));
}
fn standalone_damaged(kind: Kind) {
    damaged_values_are_misses_never_returned(&Deployment::of(kind, false));
}
fn standalone_raw(kind: Kind) {
    raw_layout_checks_the_size(&Deployment::of(kind, false));
}
fn standalone_namespaces_and_ttl(kind: Kind) {
    namespaces_and_ttl(&Deployment::of(kind, false));
}
fn cluster_framed(kind: Kind) {
    framed_chunks_round_trip(&Deployment::of(kind, true));
}
fn cluster_damaged(kind: Kind) {
    damaged_values_are_misses_never_returned(&Deployment::of(kind, true));
}
fn cluster_raw(kind: Kind) {
    raw_layout_checks_the_size(&Deployment::of(kind, true));
}
fn cluster_namespaces_and_ttl(kind: Kind) {
    namespaces_and_ttl(&Deployment::of(kind, true));
}

per_kind!(
    reads_of_different_kinds_never_share_an_mget,
    standalone_framed_mixed,
    cluster_framed_mixed,
    standalone_get_into,
    cluster_get_into,
    out_of_memory_fails_only_its_chunks,
    standalone_framed,
    standalone_damaged,
    standalone_raw,
    standalone_namespaces_and_ttl,
    cluster_framed,
    cluster_damaged,
    cluster_raw,
    cluster_namespaces_and_ttl,
    standalone_split_hash_tagged,
    standalone_split_plain,
    standalone_split_colon,
    cluster_split_colon,
    cluster_split_hash_tagged,
    cluster_split_plain
);
