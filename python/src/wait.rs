//! Blocking calls made with the GIL released and Ctrl-C honoured: the library runs a check every 50 ms while it
//! waits, which takes the GIL for a moment and runs Python's signal handlers; an exception they raise (a
//! `KeyboardInterrupt`) ends the wait and is what the call raises.

use std::sync::Arc;

use kvcache_redis::{Error, Interrupt};
use parking_lot::Mutex;
use pyo3::prelude::*;

/// The signal check of one call, and what it caught.
#[derive(Clone, Default)]
pub struct Signals {
    caught: Arc<Mutex<Option<PyErr>>>,
}

impl Signals {
    /// The check to give the library.
    pub fn check(&self) -> Interrupt {
        let caught = self.caught.clone();
        Arc::new(move || {
            Python::attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    *caught.lock() = Some(e);
                    true
                }
            })
        })
    }

    /// The exception for a library error: what the signal handler raised when the wait was interrupted.
    pub fn error(&self, py: Python<'_>, e: &Error) -> PyErr {
        match (e, self.caught.lock().take()) {
            (Error::Interrupted, Some(raised)) => raised,
            _ => crate::errors::to_py(py, e),
        }
    }
}
