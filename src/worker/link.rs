//! A worker's state for one node: its connection (or the connect under way), the pipeline written and owed
//! replies, and what is known of the node's silences.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::command::Command;
use crate::connection::Connection;
use crate::reader::Expect;
use crate::settle::Answer;
use crate::unit::Unit;

/// This worker's state for one node.
pub(super) struct Link {
    pub(super) node: Arc<str>,
    pub(super) conn: Option<Connection>,
    /// Since when a connect runs.
    pub(super) connecting: Option<Instant>,
    /// What was written and is owed a reply, in order: one pipeline at a time.
    pub(super) owed: VecDeque<Sent>,
    /// Puts whose answer was read, settled once the pipeline's `WAIT` answers.
    pub(super) deferred: Vec<(Unit, Answer)>,
    /// When the current pipeline was queued for writing.
    pub(super) sent_at: Option<Instant>,
    /// Whether the connection had carried a pipeline before the current one (a failure then may be staleness).
    pub(super) reused: bool,
    pub(super) used: bool,
    /// Readable at the last poll.
    pub(super) readable: bool,
    /// Owes replies and has been silent past `silence_timeout`.
    pub(super) silent: bool,
    pub(super) reported: Option<Instant>,
    /// It spoke after a silence at this instant: its answers are held until a slot map read later confirms it.
    pub(super) unconfirmed_since: Option<Instant>,
    /// Marked down for this silence already.
    pub(super) marked: bool,
    /// Since when the node has owed replies without sending a byte, carried over from connections dropped
    /// unanswered (see `drop_unanswered`); cleared by the first byte it sends.
    pub(super) unanswered_since: Option<Instant>,
}

impl Link {
    pub(super) fn new(node: Arc<str>) -> Link {
        Link {
            node,
            conn: None,
            connecting: None,
            owed: VecDeque::new(),
            deferred: Vec::new(),
            sent_at: None,
            reused: false,
            used: false,
            readable: false,
            silent: false,
            reported: None,
            unconfirmed_since: None,
            marked: false,
            unanswered_since: None,
        }
    }

    /// Forgets the connection and everything about it. A connection dropped with requests in flight is aborted
    /// (a reset, not a close): what the kernel has not delivered yet is discarded rather than retransmitted, so a
    /// node cut off and replaced cannot execute those requests when its link comes back.
    pub(super) fn reset(&mut self) {
        if self.busy()
            && let Some(conn) = &self.conn
        {
            conn.abort();
        }
        *self = Link::new(self.node.clone());
    }

    /// Drops a connection whose owed replies nobody waits for any more, remembering since when the node has said
    /// nothing: the next connection continues that silence. Otherwise a request timeout shorter than
    /// `silence_timeout` would hide a frozen node for ever (each new connection would start a new silence, as a
    /// frozen server's kernel still accepts connections and writes), and its replacement would never be looked for.
    pub(super) fn drop_unanswered(&mut self) {
        let since = self.last_progress();
        self.reset_keeping_silence();
        self.unanswered_since = Some(since);
    }

    /// `reset`, but what is known of the node's current silence stays: since when it has said nothing, whether it
    /// was found silent (what it says next waits for a slot map check) and when that was last reported.
    pub(super) fn reset_keeping_silence(&mut self) {
        let (since, silent, reported) = (self.unanswered_since, self.silent, self.reported);
        self.reset();
        (self.unanswered_since, self.silent, self.reported) = (since, silent, reported);
    }

    pub(super) fn busy(&self) -> bool {
        self.connecting.is_some() || !self.owed.is_empty() || self.conn.as_ref().is_some_and(|c| c.wants_write())
    }

    /// When bytes last moved for the work in flight (or the connect started); for a node that left a connection
    /// unanswered, when it last sent anything.
    pub(super) fn last_progress(&self) -> Instant {
        if let Some(since) = self.unanswered_since {
            return since;
        }
        let io = self.conn.as_ref().map(Connection::last_io);
        [self.connecting, io, self.sent_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or_else(Instant::now)
    }

    /// The units its replies are owed for, the deferred puts included.
    pub(super) fn units(&self) -> impl Iterator<Item = &Unit> {
        let owed = self.owed.iter().flat_map(|s| match &s.what {
            What::Step { units, .. } => units.as_slice(),
            _ => &[],
        });
        owed.chain(self.deferred.iter().map(|(u, _)| u))
    }
}

/// One command written, and what its reply is for.
pub(super) struct Sent {
    pub(super) what: What,
    pub(super) expect: Expect,
}

pub(super) enum What {
    Asking,
    Step { command: Command, units: Vec<Unit> },
    Wait { replicas: usize },
}
