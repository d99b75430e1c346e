//! One key of one part (for `Ping`, one node) on its way to a node, and what its earlier attempts used of the
//! redirect and retry limits. Plain data, shared by planning, settling and the worker.

/// One key of one part (for `Ping`, one node) on its way to a node, with what its previous attempts left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unit {
    /// Where the part is (see `batch::Parts`), and the generation of that place when the unit was made: a unit whose
    /// part has been answered meanwhile (its place reused) is recognised as stale.
    pub(crate) part: usize,
    pub(crate) generation: u32,
    /// Index of the key in its part (for `Ping`, of the node).
    pub(crate) key: usize,
    /// Redirects (MOVED, ASK) followed so far.
    pub(crate) redirects: usize,
    /// Retries after TRYAGAIN / CLUSTERDOWN / LOADING / MASTERDOWN so far.
    pub(crate) retries: usize,
    /// A node this unit must go to regardless of the map (ASK target, or the node a `Ping` is for).
    pub(crate) to: Option<String>,
    /// Send `ASKING` first.
    pub(crate) asking: bool,
    /// Already resent once on a fresh connection after an I/O error.
    pub(crate) io_retried: bool,
    /// Must be read on its own (`GET`, not inside an `MGET`): its `MGET` failed as a whole, and reading the keys
    /// one by one finds which key it was.
    pub(crate) alone: bool,
}

impl Unit {
    pub(crate) fn new(part: usize, key: usize) -> Unit {
        Unit {
            part,
            generation: 0,
            key,
            redirects: 0,
            retries: 0,
            to: None,
            asking: false,
            io_retried: false,
            alone: false,
        }
    }
}
