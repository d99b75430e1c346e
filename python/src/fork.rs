//! Objects that hold the client's worker threads belong to the process that opened them. After `os.fork()` the
//! child has none of those threads (and their locks may be held for ever), so using an inherited object there
//! raises `ForkedError`, and dropping one there leaks it instead of waiting for threads that do not exist.

use std::mem::ManuallyDrop;

use pyo3::prelude::*;

/// A value usable only in the process that made it.
pub struct Owned<T> {
    pid: u32,
    value: ManuallyDrop<Option<T>>,
}

impl<T> Owned<T> {
    pub fn new(value: T) -> Owned<T> {
        Owned {
            pid: std::process::id(),
            value: ManuallyDrop::new(Some(value)),
        }
    }

    /// The value, or `ForkedError` in another process. `what` names the object in the message.
    pub fn get(&self, py: Python<'_>, what: &str) -> PyResult<&T> {
        let here = std::process::id();
        match self.value.as_ref() {
            Some(v) if here == self.pid => Ok(v),
            Some(_) => Err(crate::errors::forked(py, what, self.pid, here)),
            None => Err(crate::errors::to_py(py, &kvcache_redis::Error::Closed)),
        }
    }

    /// The value, taken out to be dropped elsewhere (`None` in another process, where it must never be dropped).
    pub fn take(&mut self) -> Option<T> {
        if self.is_ours() { self.value.take() } else { None }
    }

    /// Whether this process made it.
    pub fn is_ours(&self) -> bool {
        std::process::id() == self.pid
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
