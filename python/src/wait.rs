//! Blocking calls made with the GIL released and Ctrl-C honoured: the library runs a check every 50 ms while it
//! waits, which takes the GIL for a moment and runs Python's signal handlers; an exception they raise (a
//! `KeyboardInterrupt`) ends the wait and is what the call raises. The check is made once per thread and what it
//! catches stays with that thread (the check runs on the thread that waits), so a call allocates nothing for it.

use std::cell::RefCell;
use std::sync::Arc;

use kvcache_redis::{Error, Interrupt};
use pyo3::prelude::*;

thread_local! {
    /// This thread's check, shared by all its calls.
    static CHECK: Interrupt = Arc::new(|| {
        Python::attach(|py| match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                CAUGHT.with(|c| *c.borrow_mut() = Some(e));
                true
            }
        })
    });
    /// What this thread's check caught, until its call raises it.
    static CAUGHT: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// The signal check of the calling thread's calls.
#[derive(Clone, Copy, Default)]
pub struct Signals;

impl Signals {
    /// The check to give the library.
    pub fn check(&self) -> Interrupt {
        CHECK.with(Arc::clone)
    }

    /// The exception for a library error: what the signal handler raised when the wait was interrupted.
    pub fn error(&self, py: Python<'_>, e: &Error) -> PyErr {
        match (e, CAUGHT.with(|c| c.borrow_mut().take())) {
            (Error::Interrupted, Some(raised)) => raised,
            _ => crate::errors::to_py(py, e),
        }
    }
}
