//! What travels from callers to workers: one queued part of a call, and what comes back for it.

use std::time::Instant;

use bytes::Bytes;

use crate::command::Command;
use crate::error::{Error, Result};
pub(crate) use crate::priority::Priority;
use crate::value::{DestSlot, Fill, KeyReply, SetValue};

/// One queued unit of work: a slice of a caller's call, bounded in keys and bytes so that several workers can
/// share a large call and one part fits one round trip.
pub(crate) struct Part {
    /// What is asked of every key.
    pub(crate) command: Command,
    pub(crate) priority: Priority,
    pub(crate) keys: Vec<Bytes>,
    /// For `Set`: one value per key.
    pub(crate) values: Vec<SetValue>,
    /// Expected size of each value for reads; actual bytes for writes.
    pub(crate) bytes: usize,
    pub(crate) expected_value: usize,
    /// Reads: check each value as a chunk frame while reading it.
    pub(crate) verify_frames: bool,
    /// Reads: one destination per key, filled in place of returning the value.
    pub(crate) dests: Option<(Vec<DestSlot>, Fill)>,
    pub(crate) deadline: Instant,
    /// Answered once, with one entry per key (per primary for `Ping`).
    pub(crate) reply: ReplySlot,
    /// The part's share of the queue budget, given back when the part is dropped.
    pub(crate) _ticket: Option<crate::budget::Ticket>,
    /// The thread that submitted it (see `caller_id`).
    pub(crate) caller: u64,
}

/// A number for the calling thread, the same for all its calls: workers count the distinct threads they answer.
pub(crate) fn caller_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    ID.with(|id| *id)
}

impl Part {
    /// Answers every key of the part with the same error.
    pub(crate) fn fail(&mut self, err: Error) {
        let n = self.keys.len().max(1);
        self.reply.send(vec![Err(err); n]);
    }
}

/// The receiving end the caller waits on. A one-shot channel that parks the caller at once (no spinning, which
/// matters with many waiting callers on few cores).
pub(crate) type ReplyReceiver = oneshot::Receiver<Vec<Result<KeyReply>>>;

/// The sending end of a part's reply. Sending consumes it, so a part is answered at most once; dropping it
/// unanswered (a worker that panicked) makes the caller see [`Error::WorkerLost`](crate::Error::WorkerLost).
#[derive(Default)]
pub(crate) struct ReplySlot(Option<oneshot::Sender<Vec<Result<KeyReply>>>>);

impl ReplySlot {
    /// A slot and the receiver its answer goes to.
    pub(crate) fn new() -> (ReplySlot, ReplyReceiver) {
        let (tx, rx) = oneshot::channel();
        (ReplySlot(Some(tx)), rx)
    }

    /// Sends the answer, if none was sent yet; a caller that stopped waiting is not an error.
    pub(crate) fn send(&mut self, replies: Vec<Result<KeyReply>>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(replies);
        }
    }
}
