//! The chunk layer's layouts side by side: framed, raw, reads into caller buffers.

use crate::prelude::*;

impl Runner {
    /// The framed layout's price: the same 8 x 32 MiB chunks through the framed layout (header + CRC-32 checked
    /// on every read) and through the raw layout (no header, no check), alternately.
    pub fn chunk_layouts(&mut self, name: &'static str, url: &str) {
        use kvcache_redis::{ChunkKey, ChunkStore, Dtype, Layout};
        let len = 32 * MIB;
        let keys: Vec<ChunkKey> = (0..8)
            .map(|i| ChunkKey::new("meta-llama/Llama-3-8B", 1, 0, &format!("{i:x}"), Dtype::Bfloat16).unwrap())
            .collect();
        let framed = ChunkStore::new(ours(url), Layout::Framed).with_namespace("framed:");
        let raw = ChunkStore::new(ours(url), Layout::Raw { size: len }).with_namespace("raw:");
        let payloads = values(8, len);
        // get_into: 8 caller-owned 32 MiB slabs, reused call after call (as an engine's pinned buffers would be).
        let slabs = std::cell::RefCell::new(Some((0..8).map(|_| vec![0u8; len]).collect::<Vec<_>>()));
        let mut raw_conn = TcpStream::connect(url.trim_start_matches("redis://")).unwrap();
        raw_conn.set_nodelay(true).unwrap();
        let mut scratch = Vec::new();
        let t = alternate(
            self.rounds,
            &mut [
                &mut || {
                    assert!(
                        raw.batched_put(&keys, payloads.clone(), None)
                            .unwrap()
                            .iter()
                            .all(Result::is_ok)
                    )
                },
                &mut || {
                    assert!(
                        framed
                            .batched_put(&keys, payloads.clone(), None)
                            .unwrap()
                            .iter()
                            .all(Result::is_ok)
                    )
                },
                &mut || assert!(raw.batched_get(&keys).unwrap().iter().all(|r| matches!(r, Ok(Some(_))))),
                &mut || {
                    assert!(
                        framed
                            .batched_get(&keys)
                            .unwrap()
                            .iter()
                            .all(|r| matches!(r, Ok(Some(_))))
                    )
                },
                &mut || {
                    let bufs = slabs.borrow_mut().take().unwrap();
                    let out = framed.batched_get_into(&keys, bufs);
                    assert!(out.iter().all(|f| matches!(f.result, Ok(Some(n)) if n == len)));
                    *slabs.borrow_mut() = Some(out.into_iter().map(|f| f.buf.unwrap()).collect());
                },
                &mut || {
                    for k in &keys {
                        assert_eq!(raw_get(&mut raw_conn, &raw.store_key(k), &mut scratch), len);
                    }
                },
            ],
        );
        let total = 8 * len;
        self.record(
            Row::new(name, "chunk put 8 x 32 MiB, framed", "raw layout (no header)", "GiB/s")
                .values(gib(total, t[0]), gib(total, t[1])),
        );
        self.record(
            Row::new(
                name,
                "chunk get_into 8 x 32 MiB, framed, caller slabs",
                "ceiling: raw reader, reused buffer",
                "GiB/s",
            )
            .values(gib(total, t[5]), gib(total, t[4]))
            .target(0.8),
        );
        self.record(
            Row::new(
                name,
                "chunk get 8 x 32 MiB, framed (CRC checked)",
                "raw layout (no check)",
                "GiB/s",
            )
            .values(gib(total, t[2]), gib(total, t[3])),
        );
    }
}
