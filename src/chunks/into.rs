//! Reading chunks straight into caller-owned buffers: each payload goes from the socket into its buffer with no copy
//! in between, and every buffer comes back with its result.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use super::{ChunkStore, Layout};
use crate::chunk_key::ChunkKey;
use crate::error::{Error, Result};
use crate::pending::REPLY_GRACE;
use crate::value::{DestSlot, Destination, Fill, KeyReply};

impl ChunkStore {
    /// Reads chunks straight into caller-owned buffers (pre-allocated or pinned slabs: anything
    /// `AsMut<[u8]> + Send`): the payload of `keys[i]` goes from the socket into `bufs[i]`, whose length must be
    /// the chunk's payload length, with no copy in between (framed chunks have their header read apart and their
    /// checksum checked on the way). Every buffer comes back with its result, in order. Priority
    /// [`Priority::Get`](crate::Priority::Get). Not available for the split layout yet.
    pub fn batched_get_into<B: AsMut<[u8]> + Send + 'static>(
        &self,
        keys: &[ChunkKey],
        mut bufs: Vec<B>,
    ) -> Vec<FillResult<B>> {
        let refuse = |bufs: Vec<B>, why: String| {
            bufs.into_iter()
                .map(|b| FillResult {
                    buf: Some(b),
                    result: Err(Error::InvalidInput(why.clone())),
                })
                .collect()
        };
        let fill = match self.layout {
            Layout::Framed => Fill::Framed,
            Layout::Raw { size } => match bufs.iter_mut().position(|b| b.as_mut().len() != size) {
                Some(i) => return refuse(bufs, format!("buffer {i} is not the raw layout's {size} bytes")),
                None => Fill::Raw,
            },
            Layout::Split { .. } => {
                return refuse(
                    bufs,
                    "reading into buffers is not available for the split layout yet".into(),
                );
            }
        };
        if keys.len() != bufs.len() {
            let why = format!("{} chunk keys but {} buffers", keys.len(), bufs.len());
            return refuse(bufs, why);
        }
        let slots: Vec<DestSlot> = bufs
            .into_iter()
            .map(|b| Arc::new(Mutex::new(Some(Box::new(b) as Box<dyn Destination>))))
            .collect();
        let keys = self.store_keys(keys).into_iter().map(Bytes::from).collect();
        let replies = self.client.call().get_into(keys, slots.clone(), fill);
        slots
            .into_iter()
            .enumerate()
            .map(|(i, slot)| {
                // Free at once unless the call gave up while a worker was still reading into it; that worker
                // lets go within its own deadline, so this wait is bounded.
                let buf = slot
                    .try_lock_for(REPLY_GRACE + Duration::from_secs(1))
                    .and_then(|mut b| b.take())
                    .and_then(|b| b.into_any().downcast::<B>().ok())
                    .map(|b| *b);
                let result = match &replies {
                    Err(e) => Err(e.clone()),
                    Ok(r) => match &r[i] {
                        Ok(KeyReply::Filled(n)) => Ok(Some(*n)),
                        Ok(_) => Ok(None),
                        Err(e) => Err(e.clone()),
                    },
                };
                FillResult { buf, result }
            })
            .collect()
    }
}

/// What became of one buffer given to [`ChunkStore::batched_get_into`].
#[derive(Debug)]
pub struct FillResult<B> {
    /// The buffer, handed back. `None` only when the call gave up on its deadline while a worker was still
    /// writing into it (the worker drops it when done).
    pub buf: Option<B>,
    /// `Ok(Some(n))`: the chunk's payload, `n` bytes, fills the buffer; `Ok(None)`: missing (or damaged, counted);
    /// `Err`: this chunk's error, e.g. [`Error::InvalidInput`](crate::Error::InvalidInput) when the buffer is not the chunk's size.
    pub result: Result<Option<usize>>,
}
