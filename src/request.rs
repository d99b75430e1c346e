//! What travels from callers to workers: one queued part of a call, and what comes back for it.

use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::Sender;

use crate::error::Result;

/// Scheduling priority of a call; workers always take the highest queued level first (with aging, so `Put`
/// is never starved forever). Each operation has a default, which [`Call::priority`](crate::Call::priority)
/// overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// `exists`, `batched_contains`: answers that decide whether to load at all.
    Peek = 0,
    /// `batched_get_non_blocking`: loads started ahead of need.
    Prefetch = 1,
    /// `get`, `batched_get`.
    Get = 2,
    /// `put`, `batched_put`, `remove`.
    Put = 3,
}

impl Priority {
    /// All levels, highest first.
    pub const ALL: [Priority; 4] = [Priority::Peek, Priority::Prefetch, Priority::Get, Priority::Put];

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The command family of a part; every key of the part gets the same command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `GET` / `MGET`; replies [`KeyReply::Value`].
    Get,
    /// `EXISTS`; replies [`KeyReply::Flag`].
    Exists,
    /// `SET [EX ttl]`; replies [`KeyReply::Done`].
    Set { ttl_secs: Option<u64> },
    /// `DEL`; replies [`KeyReply::Flag`].
    Del,
    /// `PING` to every primary; one reply per primary, no keys.
    Ping,
}

/// What one key (or, for `Ping`, one node) got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyReply {
    Value(Option<Bytes>),
    Flag(bool),
    Done,
}

/// One queued unit of work: a slice of a caller's call, bounded in keys and bytes so that several workers can
/// share a large call and one part fits one round trip.
pub(crate) struct Part {
    pub(crate) kind: Kind,
    pub(crate) priority: Priority,
    pub(crate) keys: Vec<Bytes>,
    /// For `Set`: one value per key.
    pub(crate) values: Vec<Bytes>,
    /// Expected size of each value for reads; actual bytes for writes.
    pub(crate) bytes: usize,
    pub(crate) expected_value: usize,
    pub(crate) deadline: Instant,
    /// Answered exactly once, with one entry per key (per primary for `Ping`). Dropping it unanswered makes the
    /// caller see [`Error::WorkerLost`](crate::Error::WorkerLost).
    pub(crate) reply: Sender<Vec<Result<KeyReply>>>,
}

impl Part {
    /// Answers the part; a caller that stopped waiting is not an error.
    pub(crate) fn answer(&self, replies: Vec<Result<KeyReply>>) {
        let _ = self.reply.send(replies);
    }

    /// Answers every key of the part with the same error.
    pub(crate) fn fail(&self, err: crate::Error) {
        let n = self.keys.len().max(1);
        self.answer(vec![Err(err); n]);
    }
}
