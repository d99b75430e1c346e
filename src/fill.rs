//! Reads straight into caller-owned buffers: each buffer is lent to the workers for the call and taken back with
//! its result, in order, so that nothing writes into it once the caller has it again.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::call::Call;
use crate::error::{Error, Result};
use crate::pending::REPLY_GRACE;
use crate::value::{DestSlot, Destination, Fill, KeyReply};

/// What became of one buffer given to [`Client::batched_get_into`](crate::Client::batched_get_into) or
/// [`ChunkStore::batched_get_into`](crate::ChunkStore::batched_get_into).
#[derive(Debug)]
pub struct FillResult<B> {
    /// The buffer, handed back. `None` only when the call gave up while a worker was in the middle of a read
    /// into it and did not let go within a second (the worker drops it when done): never in practice, since a
    /// worker holds a buffer only for one non-blocking read.
    pub buf: Option<B>,
    /// `Ok(Some(n))`: the value (a chunk's payload) is the buffer's first `n` bytes; `Ok(None)`: missing (or, for
    /// chunks, damaged and counted); `Err`: this key's error, e.g.
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) when the value does not fit the buffer (nothing was
    /// written into it).
    pub result: Result<Option<usize>>,
}

/// Every buffer back with the same error: nothing was sent.
pub(crate) fn refuse<B>(bufs: Vec<B>, err: Error) -> Vec<FillResult<B>> {
    bufs.into_iter()
        .map(|b| FillResult {
            buf: Some(b),
            result: Err(err.clone()),
        })
        .collect()
}

/// Reads `keys[i]` into `bufs[i]` as `fill` says, then takes every buffer back with its result.
pub(crate) fn fill<B: AsMut<[u8]> + Send + 'static>(
    call: Call<'_>,
    keys: Vec<Bytes>,
    bufs: Vec<B>,
    fill: Fill,
) -> Vec<FillResult<B>> {
    if keys.len() != bufs.len() {
        let why = format!("{} keys but {} buffers", keys.len(), bufs.len());
        return refuse(bufs, Error::InvalidInput(why));
    }
    let slots: Vec<DestSlot> = bufs
        .into_iter()
        .map(|b| Arc::new(Mutex::new(Some(Box::new(b) as Box<dyn Destination>))))
        .collect();
    let replies = call.get_into(keys, slots.clone(), fill);
    slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| {
            // Taking the buffer out of its slot is what stops the workers writing into it: a worker locks the
            // slot for each read and finds it empty afterwards. The lock is held for one non-blocking read at
            // most, so this wait is short; the bound only guards against the impossible.
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
