//! The parts a worker is answering, each with its results so far. A part is found by its place and the place's
//! generation, so a unit still travelling after its part was answered (it timed out) is recognised and dropped,
//! and a reply slot is answered exactly once.

use std::time::Instant;

use crate::batch::Parts;
use crate::error::{Error, Result};
use crate::request::{Part, Priority};
use crate::shared::Shared;
use crate::unit::Unit;
use crate::value::KeyReply;

/// The active parts of one worker.
#[derive(Default)]
pub(crate) struct Active {
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
    admitted: u64,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

struct Entry {
    part: Part,
    results: Vec<Option<Result<KeyReply>>>,
    remaining: usize,
    /// Admission order, for sending in priority order, oldest first.
    seq: u64,
}

/// What a worker must know of a part it has answered.
pub(crate) struct Answered {
    pub(crate) priority: Priority,
    pub(crate) bytes: usize,
    /// The thread that submitted it.
    pub(crate) caller: u64,
}

impl Active {
    /// Takes `part`, which waits for `answers` answers (its keys; the nodes for a ping). Returns its place and
    /// generation, or `None` when it needed no answer and was answered at once.
    pub(crate) fn admit(&mut self, mut part: Part, answers: usize) -> Option<(usize, u32)> {
        if answers == 0 {
            part.reply.send(Vec::new());
            return None;
        }
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            self.slots.len() - 1
        });
        self.admitted += 1;
        let slot = &mut self.slots[index];
        slot.entry = Some(Entry {
            part,
            results: (0..answers).map(|_| None).collect(),
            remaining: answers,
            seq: self.admitted,
        });
        self.live += 1;
        Some((index, slot.generation))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn entry(&self, unit: &Unit) -> Option<&Entry> {
        let slot = self.slots.get(unit.part)?;
        (slot.generation == unit.generation).then_some(slot.entry.as_ref()?)
    }

    /// Whether `unit` still waits for its answer.
    pub(crate) fn live(&self, unit: &Unit) -> bool {
        self.entry(unit).is_some_and(|e| e.results[unit.key].is_none())
    }

    /// The deadline of `unit`'s part.
    pub(crate) fn deadline(&self, unit: &Unit) -> Option<Instant> {
        self.entry(unit).map(|e| e.part.deadline)
    }

    /// The key by which units are sent: priority, then age.
    pub(crate) fn order(&self, unit: &Unit) -> (Priority, u64, usize) {
        let e = self.entry(unit).expect("a live unit");
        (e.part.priority, e.seq, unit.key)
    }

    /// Records the answer of `unit` (ignored when it is answered already or its part is gone); answers the part
    /// when it was the last one, returning what the worker must know of it then.
    pub(crate) fn finish(&mut self, unit: &Unit, result: Result<KeyReply>, shared: &Shared) -> Option<Answered> {
        if !self.live(unit) {
            return None;
        }
        let stats = &shared.stats;
        stats.keys.add(1);
        match &result {
            Ok(KeyReply::Value(Some(v))) => {
                stats.hits.add(1);
                stats.bytes_read.add(v.len() as u64);
                shared.learn_value_size(v.len());
            }
            Ok(KeyReply::Filled(len)) => {
                stats.hits.add(1);
                stats.bytes_read.add(*len as u64);
            }
            Ok(KeyReply::Value(None)) => stats.misses.add(1),
            Ok(KeyReply::Done) => {
                let part = &self.slots[unit.part].entry.as_ref().expect("live").part;
                if let Some(v) = part.values.get(unit.key) {
                    stats.bytes_written.add(v.len() as u64);
                }
            }
            Ok(KeyReply::Flag(_)) => {}
            Err(e) => {
                stats.key_error(e);
                if e.is_timeout() {
                    stats.timeouts.add(1);
                }
            }
        }
        let slot = &mut self.slots[unit.part];
        let entry = slot.entry.as_mut().expect("live");
        entry.results[unit.key] = Some(result);
        entry.remaining -= 1;
        if entry.remaining > 0 {
            return None;
        }
        let mut entry = slot.entry.take().expect("live");
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(unit.part);
        self.live -= 1;
        let replies = entry.results.drain(..).map(|r| r.expect("all answered")).collect();
        entry.part.reply.send(replies);
        Some(Answered {
            priority: entry.part.priority,
            bytes: entry.part.bytes,
            caller: entry.part.caller,
        })
    }

    /// The earliest deadline of the parts waiting.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.entry.as_ref())
            .map(|e| e.part.deadline)
            .min()
    }

    /// The units still unanswered of every part whose deadline is `now` or earlier.
    pub(crate) fn expired(&self, now: Instant) -> Vec<Unit> {
        let mut out = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            let Some(e) = slot.entry.as_ref().filter(|e| e.part.deadline <= now) else {
                continue;
            };
            for (key, r) in e.results.iter().enumerate() {
                if r.is_none() {
                    out.push(Unit {
                        generation: slot.generation,
                        ..Unit::new(index, key)
                    });
                }
            }
        }
        out
    }

    /// Answers every key of every part with `err` (after a panic, or at the drain deadline).
    pub(crate) fn fail_all(&mut self, err: Error) {
        for slot in &mut self.slots {
            if let Some(mut e) = slot.entry.take() {
                let n = e.results.len();
                e.part.reply.send(vec![Err(err.clone()); n]);
                slot.generation = slot.generation.wrapping_add(1);
            }
        }
        self.free = (0..self.slots.len()).collect();
        self.live = 0;
    }
}

impl Parts for Active {
    fn part(&self, index: usize) -> &Part {
        &self.slots[index].entry.as_ref().expect("planned units are live").part
    }
}
