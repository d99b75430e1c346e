//! The answers of a submitted call: one one-shot receiver per part, waited on until the call's deadline (plus a
//! grace for the worker's own timeout answer), and the handle of a non-blocking get.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oneshot::RecvTimeoutError;

use crate::call::{INTERRUPT_CHECK, Interrupt};
use crate::error::{Error, Result};
use crate::request::{Priority, ReplyReceiver};
use crate::shared::Shared;
use crate::value::KeyReply;

/// How long a caller waits past its deadline for the worker's own timeout answer before giving up on it.
pub(crate) const REPLY_GRACE: Duration = Duration::from_millis(100);

/// A submitted call's parts, waiting for their answers.
pub(crate) struct Pending {
    parts: Vec<PartWait>,
    pub(crate) deadline: Instant,
    /// For the latency of the call: when it was submitted, at which level, and where it is recorded.
    started: Instant,
    priority: Priority,
    shared: Arc<Shared>,
}

struct PartWait {
    rx: ReplyReceiver,
    keys: usize,
    got: Option<Vec<Result<KeyReply>>>,
}

impl Pending {
    pub(crate) fn new(shared: Arc<Shared>, deadline: Instant, priority: Priority) -> Pending {
        Pending {
            parts: Vec::new(),
            deadline,
            started: Instant::now(),
            priority,
            shared,
        }
    }

    /// Adds a queued part of `keys` keys, answered through `rx`.
    pub(crate) fn push(&mut self, rx: ReplyReceiver, keys: usize) {
        self.parts.push(PartWait { rx, keys, got: None });
    }

    /// Receives what arrives until `until`; returns whether every part is answered. Parts still unanswered
    /// once the call's deadline (plus grace) has passed are answered with a timeout, so this never waits long.
    pub(crate) fn receive(&mut self, until: Instant) -> bool {
        let give_up = self.deadline + REPLY_GRACE;
        let mut done = true;
        for part in self.parts.iter_mut().filter(|p| p.got.is_none()) {
            let wait = until.min(give_up);
            let answer = match part.rx.recv_deadline(wait) {
                Ok(replies) => Some(replies),
                Err(RecvTimeoutError::Disconnected) => Some(vec![Err(Error::WorkerLost); part.keys.max(1)]),
                Err(RecvTimeoutError::Timeout) if Instant::now() >= give_up => {
                    Some(vec![Err(Error::Timeout { node: None }); part.keys.max(1)])
                }
                Err(RecvTimeoutError::Timeout) => None,
            };
            done &= answer.is_some();
            part.got = answer;
        }
        done
    }

    /// Receives every answer (parts unanswered by the deadline plus grace are answered with a timeout), running
    /// `interrupt` between slices of the wait: when it says so, stops with [`Error::Interrupted`].
    pub(crate) fn wait(&mut self, interrupt: Option<&Interrupt>) -> Result<()> {
        let until = self.deadline + REPLY_GRACE;
        let Some(interrupted) = interrupt else {
            self.receive(until);
            return Ok(());
        };
        loop {
            if self.receive((Instant::now() + INTERRUPT_CHECK).min(until)) {
                return Ok(());
            }
            if interrupted() {
                return Err(Error::Interrupted);
            }
        }
    }

    /// Every key's reply in order; the whole call's error when nothing at all was answered.
    pub(crate) fn into_replies(self) -> Result<Vec<Result<KeyReply>>> {
        self.shared.stats.call_done(self.priority, self.started.elapsed());
        let replies: Vec<Result<KeyReply>> = self.parts.into_iter().flat_map(|p| p.got.unwrap_or_default()).collect();
        if let Some(Err(first)) = replies.first() {
            let whole = matches!(first, Error::Timeout { .. } | Error::Closed | Error::WorkerLost);
            if whole && replies.iter().all(|r| r.is_err()) {
                return Err(first.clone());
            }
        }
        Ok(replies)
    }
}

/// The handle of a [`Client::batched_get_non_blocking`](crate::Client::batched_get_non_blocking) call. It resolves by the call's deadline at the latest,
/// also when the client is closed meanwhile. Dropping it abandons the answer (the work may still be done).
pub struct PendingGet {
    shared: Arc<Shared>,
    pending: Result<Pending>,
    result: Option<Result<Vec<Bytes>>>,
}

impl std::fmt::Debug for PendingGet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingGet")
            .field("ready", &self.result.is_some())
            .finish()
    }
}

impl PendingGet {
    pub(crate) fn new(shared: Arc<Shared>, pending: Result<Pending>) -> PendingGet {
        PendingGet {
            shared,
            pending,
            result: None,
        }
    }

    /// Waits for the answer: the values of the consecutive keys, from the first, that were found (values after
    /// the first miss or failure are dropped, not compacted).
    pub fn wait(mut self) -> Result<Vec<Bytes>> {
        loop {
            if let Some(r) = self.wait_timeout(Duration::from_secs(3600)) {
                return r;
            }
        }
    }

    /// Like [`wait`](Self::wait), but gives up after `timeout` and returns `None`; the handle stays usable.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<Vec<Bytes>>> {
        if self.result.is_none() {
            let ready = match &mut self.pending {
                Err(e) => {
                    self.result = Some(Err(e.clone()));
                    return self.result.clone();
                }
                Ok(p) => p.receive(Instant::now() + timeout),
            };
            if ready {
                let pending = std::mem::replace(&mut self.pending, Err(Error::Closed)).expect("checked Ok above");
                let values = pending.into_replies().and_then(|r| prefix(&self.shared, r, into_value));
                self.result = Some(values);
            }
        }
        self.result.clone()
    }

    /// The answer if it has arrived, without waiting.
    pub fn poll(&mut self) -> Option<Result<Vec<Bytes>>> {
        self.wait_timeout(Duration::ZERO)
    }
}

/// The consecutive prefix of replies that `hit` accepts; stops at the first miss or failure.
pub(crate) fn prefix<T>(
    shared: &Shared,
    replies: Vec<Result<KeyReply>>,
    hit: impl Fn(KeyReply) -> Option<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for (i, r) in replies.into_iter().enumerate() {
        match r {
            Ok(r) => match hit(r) {
                Some(v) => out.push(v),
                None => break,
            },
            Err(e) if i == 0 => return Err(e),
            Err(e) => {
                shared.stats.prefix_failures.add(1);
                log::warn!("prefix stopped at key {i} by a failure: {e}");
                break;
            }
        }
    }
    Ok(out)
}

/// The value of a read's reply.
pub(crate) fn into_value(r: KeyReply) -> Option<Bytes> {
    match r {
        KeyReply::Value(v) => v,
        _ => None,
    }
}
