//! The four scheduling levels of calls, highest first. Pure.

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
