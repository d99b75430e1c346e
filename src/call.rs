//! One call with per-call settings (priority, timeout, size hint, TTL): each operation checks its input, splits
//! the call into parts (`split`), queues them within the budget, and waits for the answers (`pending`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::command::Command;
use crate::error::{Error, Result};
use crate::pending::{Pending, PendingGet, into_value, prefix};
use crate::request::{Part, Priority, ReplySlot};
use crate::shared::Shared;
use crate::split::{self, Limits};
use crate::value::{DestSlot, Fill, KeyReply, SetValue};

/// A check a waiting caller runs between slices of its wait (see [`Call::interruptible`]): `true` stops the wait.
pub type Interrupt = Arc<dyn Fn() -> bool + Send + Sync>;

/// How often a wait runs its [`Interrupt`] check.
pub(crate) const INTERRUPT_CHECK: Duration = Duration::from_millis(50);

/// The per-call settings, kept apart from the call so that a chunk store can carry them too.
#[derive(Clone, Default)]
pub(crate) struct Settings {
    pub(crate) priority: Option<Priority>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) size_hint: Option<usize>,
    pub(crate) ttl_secs: Option<Option<u64>>,
    pub(crate) interrupt: Option<Interrupt>,
    /// Reads check each value as a chunk frame while reading it (the chunk layer's framed layout).
    pub(crate) verify_frames: bool,
    /// Set when the call already started (the direct lane handed it to the workers): its deadline stays.
    pub(crate) deadline: Option<Instant>,
}

impl Settings {
    /// This call's timeout: its own, else the client's.
    pub(crate) fn timeout_or(&self, config: &crate::config::Config) -> Duration {
        self.timeout.unwrap_or(config.request_timeout)
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .field("size_hint", &self.size_hint)
            .field("ttl_secs", &self.ttl_secs)
            .field("interruptible", &self.interrupt.is_some())
            .field("verify_frames", &self.verify_frames)
            .finish()
    }
}

/// One call with per-call settings; every setter is optional. Built by [`Client::call`](crate::Client::call).
#[must_use = "a Call does nothing until one of its operations is invoked"]
pub struct Call<'a> {
    shared: &'a Arc<Shared>,
    settings: Settings,
}

impl<'a> Call<'a> {
    pub(crate) fn new(shared: &'a Arc<Shared>) -> Call<'a> {
        Call::with(shared, Settings::default())
    }

    pub(crate) fn with(shared: &'a Arc<Shared>, settings: Settings) -> Call<'a> {
        Call { shared, settings }
    }

    /// Overrides the operation's default priority.
    pub fn priority(mut self, p: Priority) -> Self {
        self.settings.priority = Some(p);
        self
    }

    /// Overrides [`Config::request_timeout`](crate::Config::request_timeout) for this call.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.settings.timeout = Some(d);
        self
    }

    /// Expected size of each value read, to bound round trips before the client has learned it.
    pub fn size_hint(mut self, bytes: usize) -> Self {
        self.settings.size_hint = Some(bytes);
        self
    }

    /// Overrides [`Config::ttl_secs`](crate::Config::ttl_secs) for this call's writes (`None`: no expiry).
    pub fn ttl_secs(mut self, ttl: Option<u64>) -> Self {
        self.settings.ttl_secs = Some(ttl);
        self
    }

    /// While waiting for its answers, the call runs `check` every 50 ms on the calling thread; when it returns
    /// `true` the call stops waiting and fails with [`Error::Interrupted`] (what was queued may still be carried
    /// out, and its answers are dropped; caller buffers of [`batched_get_into`](Self::batched_get_into) are taken
    /// back first, so nothing writes into them afterwards). For callers that must react to signals while they wait,
    /// such as a binding for another language's Ctrl-C. A small read carried by a direct lane (see
    /// [`Config::direct_reads`](crate::Config::direct_reads)) is not checked while in the lane: it ends or moves to the
    /// workers within two `stall_threshold`s. Defaults to none: waits end with the answers or the deadline.
    pub fn interruptible(mut self, check: Interrupt) -> Self {
        self.settings.interrupt = Some(check);
        self
    }

    /// See [`Client::get`](crate::Client::get).
    pub fn get(self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let mut r = self.batched_get(&[key])?;
        r.pop().expect("one key, one result")
    }

    /// See [`Client::put`](crate::Client::put).
    pub fn put(self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<()> {
        let mut r = self.batched_put(&[key], [value])?;
        r.pop().expect("one key, one result")
    }

    /// See [`Client::exists`](crate::Client::exists).
    pub fn exists(self, key: impl AsRef<[u8]>) -> Result<bool> {
        let replies = self.run(Command::Exists, Priority::Peek, to_keys(&[key]), Vec::new())?;
        replies
            .into_iter()
            .next()
            .expect("one key, one result")
            .map(|r| r == KeyReply::Flag(true))
    }

    /// See [`Client::remove`](crate::Client::remove).
    pub fn remove(self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.batched_remove(&[key])?.pop().expect("one key, one result")
    }

    /// See [`Client::batched_remove`](crate::Client::batched_remove).
    pub fn batched_remove<K: AsRef<[u8]>>(self, keys: &[K]) -> Result<Vec<Result<bool>>> {
        let replies = self.run(Command::Del, Priority::Put, to_keys(keys), Vec::new())?;
        Ok(replies
            .into_iter()
            .map(|r| r.map(|r| r == KeyReply::Flag(true)))
            .collect())
    }

    /// Deletes each `metas[i]` only if it still holds `values[i]` and `kvs[i]` does not exist (split-layout
    /// orphans); one result per key, `true` when deleted.
    pub(crate) fn delete_orphans(
        self,
        metas: Vec<Bytes>,
        kvs: Vec<Bytes>,
        values: Vec<Bytes>,
    ) -> Result<Vec<Result<bool>>> {
        let values = kvs
            .into_iter()
            .zip(values)
            .map(|(head, body)| SetValue { head, body })
            .collect();
        let replies = self.run(Command::DeleteOrphan, Priority::Put, metas, values)?;
        Ok(replies
            .into_iter()
            .map(|r| r.map(|r| r == KeyReply::Flag(true)))
            .collect())
    }

    /// Reads `keys[i]` straight into the buffer in `dests[i]` (checked as `fill` says); one reply per key:
    /// `Filled(len)`, `Value(None)` when missing or damaged, or the key's error.
    pub(crate) fn get_into(self, keys: Vec<Bytes>, dests: Vec<DestSlot>, fill: Fill) -> Result<Vec<Result<KeyReply>>> {
        let mut pending = self.submit_with(Command::Get, Priority::Get, keys, Vec::new(), Some((dests, fill)))?;
        pending.wait(self.settings.interrupt.as_ref())?;
        pending.into_replies()
    }

    /// See [`Client::batched_get_into`](crate::Client::batched_get_into).
    pub fn batched_get_into<K, B>(self, keys: &[K], bufs: Vec<B>) -> Vec<crate::FillResult<B>>
    where
        K: AsRef<[u8]>,
        B: AsMut<[u8]> + Send + 'static,
    {
        crate::fill::fill(self, to_keys(keys), bufs, Fill::Fit)
    }

    /// See [`Client::batched_get`](crate::Client::batched_get).
    pub fn batched_get<K: AsRef<[u8]>>(mut self, keys: &[K]) -> Result<Vec<Result<Option<Bytes>>>> {
        let keys = to_keys(keys);
        // Counted until the call ends, whichever way it goes: the lanes are for callers that would queue behind
        // each other at the workers.
        let reading = self.shared.lanes.reading();
        let direct = if reading.with_others() {
            self.direct(&keys)
        } else {
            None
        };
        let replies = match direct {
            Some(replies) => replies.into_iter().map(Ok).collect(),
            None => self.run(Command::Get, Priority::Get, keys, Vec::new())?,
        };
        Ok(replies.into_iter().map(|r| r.map(into_value)).collect())
    }

    /// A small read through the direct lane (see `lane`); `None` when the workers must carry it, with the call's
    /// deadline kept for them.
    fn direct(&mut self, keys: &[Bytes]) -> Option<Vec<KeyReply>> {
        let shared = self.shared;
        let config = &shared.config;
        let priority = self.settings.priority.unwrap_or(Priority::Get);
        let expected = self.settings.size_hint.unwrap_or_else(|| shared.expected_value_size());
        if keys.is_empty()
            || keys.len() > crate::lane::MAX_CALL_KEYS
            || !matches!(priority, Priority::Get | Priority::Peek)
            || self.settings.verify_frames
            || expected > crate::lane::MAX_VALUE
            || keys.iter().any(|k| k.len() > config.max_key_bytes)
            || shared.is_closed()
        {
            return None;
        }
        let started = Instant::now();
        let deadline = self
            .settings
            .deadline
            .unwrap_or(started + self.settings.timeout_or(config));
        let replies = shared.lanes.get(shared, keys, deadline);
        match &replies {
            Some(_) => {
                shared.stats.call(Command::Get.op(), priority, keys.len());
                shared.stats.call_done(priority, started.elapsed());
            }
            None => self.settings.deadline = Some(deadline),
        }
        replies
    }

    /// See [`Client::batched_put`](crate::Client::batched_put).
    pub fn batched_put<K, V, I>(self, keys: &[K], values: I) -> Result<Vec<Result<()>>>
    where
        K: AsRef<[u8]>,
        V: Into<Bytes>,
        I: IntoIterator<Item = V>,
    {
        let values: Vec<SetValue> = values.into_iter().map(|v| SetValue::from(v.into())).collect();
        self.put_values(to_keys(keys), values)
    }

    /// Writes `values` (possibly in two pieces each) under `keys`; the one write path of every layout.
    pub(crate) fn put_values(self, keys: Vec<Bytes>, values: Vec<SetValue>) -> Result<Vec<Result<()>>> {
        if values.len() != keys.len() {
            return Err(Error::InvalidInput(format!(
                "{} keys but {} values",
                keys.len(),
                values.len()
            )));
        }
        let limit = self.shared.config.max_value_bytes;
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| v.len() > limit) {
            return Err(Error::InvalidInput(format!(
                "value {i} is {} bytes, above the {limit}-byte limit (max_value_bytes)",
                v.len()
            )));
        }
        // What is written is what will be read: learn value sizes from writes too, so the first reads are
        // already shaped for them.
        for v in &values {
            self.shared.learn_value_size(v.len());
        }
        let ttl_secs = self.settings.ttl_secs.unwrap_or(self.shared.config.ttl_secs);
        if ttl_secs == Some(0) {
            return Err(Error::InvalidInput("a TTL of 0 seconds would expire at once".into()));
        }
        let replies = self.run(Command::Set { ttl_secs }, Priority::Put, keys, values)?;
        Ok(replies.into_iter().map(|r| r.map(|_| ())).collect())
    }

    /// See [`Client::batched_contains`](crate::Client::batched_contains).
    pub fn batched_contains<K: AsRef<[u8]>>(self, keys: &[K]) -> Result<usize> {
        let shared = self.shared.clone();
        let replies = self.run(Command::Exists, Priority::Peek, to_keys(keys), Vec::new())?;
        let prefix = prefix(&shared, replies, |r| (r == KeyReply::Flag(true)).then_some(()))?;
        Ok(prefix.len())
    }

    /// See [`Client::batched_get_non_blocking`](crate::Client::batched_get_non_blocking).
    pub fn batched_get_non_blocking<K: AsRef<[u8]>>(self, keys: &[K]) -> PendingGet {
        let shared = self.shared.clone();
        let pending = self.submit(Command::Get, Priority::Prefetch, to_keys(keys), Vec::new());
        PendingGet::new(shared, pending)
    }

    /// See [`Client::ping`](crate::Client::ping).
    pub fn ping(self) -> Result<()> {
        self.run(Command::Ping, Priority::Peek, Vec::new(), Vec::new())?
            .into_iter()
            .try_for_each(|r| r.map(|_| ()))
    }

    /// Submits and waits for every key's answer.
    fn run(
        &self,
        command: Command,
        default: Priority,
        keys: Vec<Bytes>,
        values: Vec<SetValue>,
    ) -> Result<Vec<Result<KeyReply>>> {
        let mut pending = self.submit(command, default, keys, values)?;
        pending.wait(self.settings.interrupt.as_ref())?;
        pending.into_replies()
    }

    /// Splits the call into parts bounded in keys and bytes and queues them.
    fn submit(&self, command: Command, default: Priority, keys: Vec<Bytes>, values: Vec<SetValue>) -> Result<Pending> {
        self.submit_with(command, default, keys, values, None)
    }

    /// Like `submit`, with one destination per key for reads that fill caller buffers.
    fn submit_with(
        &self,
        command: Command,
        default: Priority,
        keys: Vec<Bytes>,
        values: Vec<SetValue>,
        dests: Option<(Vec<DestSlot>, Fill)>,
    ) -> Result<Pending> {
        let shared = self.shared;
        let config = &shared.config;
        let stats = &shared.stats;
        let priority = self.settings.priority.unwrap_or(default);
        let deadline = self
            .settings
            .deadline
            .unwrap_or_else(|| Instant::now() + self.settings.timeout_or(config));
        // Every key passes here, whatever the call: checked before anything is queued.
        if let Some((i, k)) = keys.iter().enumerate().find(|(_, k)| k.len() > config.max_key_bytes) {
            return Err(Error::InvalidInput(format!(
                "key {i} is {} bytes, above the {}-byte limit (max_key_bytes)",
                k.len(),
                config.max_key_bytes
            )));
        }
        if self.shared.is_closed() {
            return Err(Error::Closed);
        }
        stats.call(command.op(), priority, keys.len());
        let expected = self
            .settings
            .size_hint
            .unwrap_or_else(|| shared.expected_value_size())
            .max(1);
        let mut pending = Pending::new(shared.clone(), deadline, priority);
        let fill = dests.as_ref().map(|(_, fill)| *fill);
        let limits = Limits {
            max_keys: config.batch_max_keys,
            max_bytes: config.batch_max_bytes,
        };
        let caller = crate::request::caller_id();
        for piece in split::split(command, keys, values, dests.map(|(d, _)| d), expected, limits) {
            // Room in the budget first (maybe waiting), then the queue: never wait while holding the lock close needs.
            let ticket = shared.budget.admit(piece.bytes, deadline).inspect_err(|e| {
                if matches!(e, Error::Overloaded(_)) {
                    stats.overloads.add(1);
                }
            })?;
            let (reply, rx) = ReplySlot::new();
            let keys = piece.keys.len();
            self.shared.queue(Part {
                command,
                priority,
                keys: piece.keys,
                values: piece.values,
                bytes: piece.bytes,
                expected_value: expected,
                verify_frames: self.settings.verify_frames,
                dests: fill.map(|f| (piece.dests, f)),
                deadline,
                reply,
                _ticket: Some(ticket),
                caller,
            })?;
            stats.parts.add(1);
            pending.push(rx, keys);
        }
        Ok(pending)
    }
}

/// Copies the keys into one buffer (one allocation per call, not per key) and cuts them from it. (Their size is
/// checked where every call's keys pass, in `submit_with`.)
fn to_keys<K: AsRef<[u8]>>(keys: &[K]) -> Vec<Bytes> {
    let total = keys.iter().map(|k| k.as_ref().len()).sum();
    let mut all = BytesMut::with_capacity(total);
    for k in keys {
        all.extend_from_slice(k.as_ref());
    }
    let all = all.freeze();
    let mut at = 0;
    keys.iter()
        .map(|k| {
            let key = all.slice(at..at + k.as_ref().len());
            at += key.len();
            key
        })
        .collect()
}
