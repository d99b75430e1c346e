//! Reading chunks straight into caller-owned buffers: each payload goes from the socket into its buffer with no copy
//! in between, and every buffer comes back with its result.

use bytes::Bytes;

use super::{ChunkStore, Layout};
use crate::chunk_key::ChunkKey;
use crate::error::Error;
use crate::fill::{self, FillResult};
use crate::value::Fill;

impl ChunkStore {
    /// Reads chunks straight into caller-owned buffers (pre-allocated or pinned slabs: anything
    /// `AsMut<[u8]> + Send`): the payload of `keys[i]` goes from the socket into `bufs[i]`, with no copy in between
    /// (framed chunks have their header read apart and their checksum checked on the way). A framed chunk's
    /// payload may be shorter than its buffer (a partial chunk: `Ok(Some(n))` says how much was filled), never
    /// longer (that key's [`Error::InvalidInput`], nothing written); a raw chunk is exactly the layout's size.
    /// Every buffer comes back with its result, in order. Priority [`Priority::Get`](crate::Priority::Get). Not
    /// available for the split layout yet.
    pub fn batched_get_into<B: AsMut<[u8]> + Send + 'static>(
        &self,
        keys: &[ChunkKey],
        mut bufs: Vec<B>,
    ) -> Vec<FillResult<B>> {
        let fill = match self.layout {
            Layout::Framed => Fill::Framed,
            Layout::Raw { size } => match bufs.iter_mut().position(|b| b.as_mut().len() != size) {
                Some(i) => {
                    let why = format!("buffer {i} is not the raw layout's {size} bytes");
                    return fill::refuse(bufs, Error::InvalidInput(why));
                }
                None => Fill::Raw,
            },
            Layout::Split { .. } => {
                let why = "reading into buffers is not available for the split layout yet".to_string();
                return fill::refuse(bufs, Error::InvalidInput(why));
            }
        };
        if keys.len() != bufs.len() {
            let why = format!("{} chunk keys but {} buffers", keys.len(), bufs.len());
            return fill::refuse(bufs, Error::InvalidInput(why));
        }
        let keys = self.store_keys(keys).into_iter().map(Bytes::from).collect();
        fill::fill(self.call(), keys, bufs, fill)
    }
}
