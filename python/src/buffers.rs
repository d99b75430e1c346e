//! Python buffers lent to the workers without a copy: writable windows that values are read into, and read-only
//! views that values are written from. A view stays exported (its object alive, its memory pinned) until every
//! window or value made from it is gone; only then is it released. A call that returns while a worker still holds
//! one (interrupted by Ctrl-C while its write was queued) leaves its views exported until the worker lets go.
//!
//! The buffer protocol entered the limited API in CPython 3.11 with the layout it has had since 3.3, so the
//! functions and struct are declared here for this abi3-py310 build (PyO3 offers them only from 3.11).

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi::{Py_ssize_t, PyObject};
use pyo3::prelude::*;

/// CPython's `Py_buffer` (stable since 3.3, in the limited API since 3.11).
#[repr(C)]
struct RawView {
    buf: *mut c_void,
    obj: *mut PyObject,
    len: Py_ssize_t,
    itemsize: Py_ssize_t,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut Py_ssize_t,
    strides: *mut Py_ssize_t,
    suboffsets: *mut Py_ssize_t,
    internal: *mut c_void,
}

unsafe extern "C" {
    fn PyObject_GetBuffer(obj: *mut PyObject, view: *mut RawView, flags: c_int) -> c_int;
    fn PyBuffer_Release(view: *mut RawView);
    fn PyBuffer_IsContiguous(view: *const RawView, order: c_char) -> c_int;
}

/// `PyBUF_FULL_RO`: any exporter can answer it; contiguity and writability are checked after.
const PYBUF_FULL_RO: c_int = 0x0100 | 0x0010 | 0x0008 | 0x0004;

/// Whether a buffer is written into (reads) or read from (writes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// An exported buffer, released with the GIL held when dropped.
pub struct View {
    raw: Box<RawView>,
}

// SAFETY: the view is only a pointer and a length plus the exporter's reference; it is released with the GIL held
// (see `Drop`), and shared only to read its bytes.
unsafe impl Send for View {}
unsafe impl Sync for View {}

impl View {
    /// Exports `obj`'s buffer: C-contiguous, and writable when it is to be written into. `what` names it in errors
    /// ("buffer 3").
    pub fn new(obj: &Bound<'_, PyAny>, access: Access, what: &dyn Fn() -> String) -> PyResult<View> {
        let mut raw = Box::new(RawView {
            buf: std::ptr::null_mut(),
            obj: std::ptr::null_mut(),
            len: 0,
            itemsize: 0,
            readonly: 0,
            ndim: 0,
            format: std::ptr::null_mut(),
            shape: std::ptr::null_mut(),
            strides: std::ptr::null_mut(),
            suboffsets: std::ptr::null_mut(),
            internal: std::ptr::null_mut(),
        });
        // SAFETY: `obj` is a live object and the GIL is held; on success the view holds a reference to it.
        if unsafe { PyObject_GetBuffer(obj.as_ptr(), &mut *raw, PYBUF_FULL_RO) } != 0 {
            let cause = PyErr::fetch(obj.py());
            let type_name = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
            let err = PyTypeError::new_err(format!(
                "{} must support the buffer protocol (bytes, bytearray, memoryview, a NumPy array...), not {type_name}",
                what()
            ));
            err.set_cause(obj.py(), Some(cause));
            return Err(err);
        }
        let view = View { raw };
        if access == Access::Read && view.raw.readonly != 0 {
            return Err(PyTypeError::new_err(format!(
                "{} is read-only: values are read into writable buffers (bytearray, a writable memoryview, a NumPy \
                 array...)",
                what()
            )));
        }
        // SAFETY: a view filled in by a successful export.
        if unsafe { PyBuffer_IsContiguous(&*view.raw, b'C' as c_char) } == 0 {
            return Err(PyValueError::new_err(format!(
                "{} is not C-contiguous: pass a contiguous buffer (e.g. numpy.ascontiguousarray, tensor.contiguous())",
                what()
            )));
        }
        Ok(view)
    }

    pub fn len(&self) -> usize {
        self.raw.len as usize
    }

    fn ptr(&self) -> *mut u8 {
        self.raw.buf as *mut u8
    }

    /// The view's bytes. The caller keeps `self` alive and the GIL held (or the object otherwise unchanged) while
    /// it uses them.
    pub fn bytes(&self) -> &[u8] {
        if self.len() == 0 {
            return &[];
        }
        // SAFETY: a C-contiguous export of `len` bytes, alive as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len()) }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: releasing a view exported by `new`, once, with the GIL held (attach is a no-op when it is).
        Python::attach(|_| unsafe { PyBuffer_Release(&mut *self.raw) });
    }
}

/// Counts the windows and values lent out of a set of views, so the views are released only once all are back.
#[derive(Default)]
pub struct Lease {
    out: Mutex<usize>,
    back: Condvar,
}

impl Lease {
    fn lend(self: &Arc<Self>) -> Token {
        *self.out.lock() += 1;
        Token(self.clone())
    }

    /// Waits (with the GIL released by the caller) until every loan is back, up to `limit`; whether all are.
    pub fn wait_all_back(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let mut out = self.out.lock();
        while *out > 0 {
            if self.back.wait_until(&mut out, until).timed_out() {
                return *out == 0;
            }
        }
        true
    }
}

/// One loan; given back when dropped.
struct Token(Arc<Lease>);

impl Drop for Token {
    fn drop(&mut self) {
        let mut out = self.0.out.lock();
        *out -= 1;
        if *out == 0 {
            self.0.back.notify_all();
        }
    }
}

/// Views that values or windows were lent from, released once every loan is back.
pub struct Loans {
    views: Vec<View>,
    lease: Arc<Lease>,
}

/// How long a call that returned waits for its loans before leaving them to `sweep`. A worker holds a loan until it
/// has written the value (or answered the call), so after an answer they are back within microseconds; only a
/// call that gave up early (Ctrl-C) or at its deadline while its write was still under way leaves one out.
const LOAN_WAIT: Duration = Duration::from_millis(200);

/// Views whose loans were still out when their call returned: released by `sweep` once the loans are back.
static DEFERRED: Mutex<Vec<Loans>> = Mutex::new(Vec::new());
static ANY_DEFERRED: AtomicBool = AtomicBool::new(false);

impl Loans {
    pub fn new() -> Loans {
        Loans {
            views: Vec::new(),
            lease: Arc::default(),
        }
    }

    /// Keeps `view` until the loans are back; its number.
    pub fn keep(&mut self, view: View) -> usize {
        self.views.push(view);
        self.views.len() - 1
    }

    /// The views kept, in order.
    pub fn views(&self) -> &[View] {
        &self.views
    }

    /// A value for the library made of view `i`'s bytes without copying them.
    pub fn value(&self, i: usize) -> Bytes {
        let view = &self.views[i];
        Bytes::from_owner(Lent {
            ptr: view.ptr(),
            len: view.len(),
            _token: self.lease.lend(),
        })
    }

    /// A window onto view `i`'s bytes, for the library to read a value into.
    pub fn window(&self, i: usize) -> Window {
        let view = &self.views[i];
        Window {
            ptr: view.ptr(),
            len: view.len(),
            _token: self.lease.lend(),
        }
    }

    /// Once the call has returned: waits (GIL released) up to `LOAN_WAIT` for every loan (not at all when the
    /// call was interrupted), then releases the views (GIL held). Views with loans still out stay exported (their
    /// memory valid, their objects alive) until `sweep` finds the loans back.
    pub fn settle(self, py: Python<'_>, interrupted: bool) {
        sweep(py);
        if self.views.is_empty() {
            return;
        }
        let lease = self.lease.clone();
        let wait = if interrupted { Duration::ZERO } else { LOAN_WAIT };
        if py.detach(move || lease.wait_all_back(wait)) {
            drop(self.views);
        } else {
            DEFERRED.lock().push(self);
            ANY_DEFERRED.store(true, Ordering::Release);
        }
    }

    fn all_back(&self) -> bool {
        *self.lease.out.lock() == 0
    }
}

/// Releases the views of earlier calls whose loans have come back since (GIL held). Cheap when there are none.
pub fn sweep(_py: Python<'_>) {
    if !ANY_DEFERRED.load(Ordering::Acquire) {
        return;
    }
    let back: Vec<Loans> = {
        let mut deferred = DEFERRED.lock();
        let (back, out): (Vec<Loans>, Vec<Loans>) =
            std::mem::take(&mut *deferred).into_iter().partition(Loans::all_back);
        *deferred = out;
        ANY_DEFERRED.store(!deferred.is_empty(), Ordering::Release);
        back
    };
    drop(back);
}

/// Bytes of a view lent to the library as a value (read by a worker writing it to a socket).
struct Lent {
    ptr: *const u8,
    len: usize,
    _token: Token,
}

// SAFETY: the memory stays exported while the token is out (`Loans::settle` waits for it); it is only read.
unsafe impl Send for Lent {}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: see `Send` above.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A writable window onto a view, lent to the library to read a value into.
pub struct Window {
    ptr: *mut u8,
    len: usize,
    _token: Token,
}

// SAFETY: the memory stays exported while the token is out; windows of one call never overlap (checked by
// `disjoint`), so each byte has one writer.
unsafe impl Send for Window {}

impl AsMut<[u8]> for Window {
    fn as_mut(&mut self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: see `Send` above.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// Checks that no two views overlap in memory (two windows writing the same bytes at once).
pub fn disjoint(views: &[View]) -> PyResult<()> {
    let mut spans: Vec<(usize, usize, usize)> = views
        .iter()
        .enumerate()
        .filter(|(_, v)| v.len() > 0)
        .map(|(i, v)| (v.ptr() as usize, v.ptr() as usize + v.len(), i))
        .collect();
    spans.sort_unstable();
    for pair in spans.windows(2) {
        if pair[1].0 < pair[0].1 {
            let (a, b) = (pair[0].2.min(pair[1].2), pair[0].2.max(pair[1].2));
            return Err(PyValueError::new_err(format!(
                "buffers {a} and {b} overlap: each value needs memory of its own"
            )));
        }
    }
    Ok(())
}
