//! Objects that hold the client's worker threads belong to the process that opened them. After `os.fork()` the
//! child has none of those threads (and their locks may be held for ever), so using an inherited object there
//! raises `ForkedError`, and dropping one there leaks it instead of waiting for threads that do not exist.
//!
//! A fork is noticed without a system call per use: a `pthread_atfork` handler (which runs for every fork of the
//! process, `os.fork()`, `multiprocessing` or a C library's) bumps a generation in the child, and each object
//! remembers the generation it was made in.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

/// Forks this process has gone through (in its own line of descent).
static GENERATION: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    fn pthread_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
    ) -> std::ffi::c_int;
}

/// Runs in the child right after any fork; only an atomic add (async-signal-safe).
unsafe extern "C" fn after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Registers the fork handler (once, at import).
pub fn register() -> PyResult<()> {
    // SAFETY: registers a handler that only touches an atomic.
    match unsafe { pthread_atfork(None, None, Some(after_fork_in_child)) } {
        0 => Ok(()),
        e => Err(PyOSError::new_err(format!("pthread_atfork failed ({e})"))),
    }
}

/// A value usable only in the process that made it.
pub struct Owned<T> {
    generation: u64,
    pid: u32,
    value: ManuallyDrop<Option<T>>,
}

impl<T> Owned<T> {
    pub fn new(value: T) -> Owned<T> {
        Owned {
            generation: GENERATION.load(Ordering::SeqCst),
            pid: std::process::id(),
            value: ManuallyDrop::new(Some(value)),
        }
    }

    /// The value, or `ForkedError` in another process. `what` names the object in the message.
    pub fn get(&self, py: Python<'_>, what: &str) -> PyResult<&T> {
        match self.value.as_ref() {
            Some(v) if self.is_ours() => Ok(v),
            Some(_) => Err(crate::errors::forked(py, what, self.pid, std::process::id())),
            None => Err(crate::errors::to_py(py, &kvcache_redis::Error::Closed)),
        }
    }

    /// Whether this process made it.
    pub fn is_ours(&self) -> bool {
        GENERATION.load(Ordering::Relaxed) == self.generation
    }

    /// The value, taken out to be dropped elsewhere (`None` in another process, where it must never be dropped).
    pub fn take(&mut self) -> Option<T> {
        if self.is_ours() { self.value.take() } else { None }
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if self.is_ours() {
            // SAFETY: dropped once, here; never touched again.
            unsafe { ManuallyDrop::drop(&mut self.value) }
        }
    }
}
