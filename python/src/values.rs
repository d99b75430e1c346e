//! Values crossing the boundary: Python buffers to write (small ones copied into one allocation, large ones lent
//! without a copy), and values read back as `bytes` (copied once, without the GIL when there is much to copy).

use bytes::{Bytes, BytesMut};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rayon::prelude::*;

use crate::buffers::{Access, Loans, View};

/// Values at least this large are lent to the workers instead of copied (the library writes them to the socket
/// without copying them too); smaller ones are copied into one buffer per call, which the library copies into
/// its pipeline anyway.
const LEND_FROM: usize = 64 << 10;

/// Copies of more than this many bytes are made with the GIL released.
const COPY_WITHOUT_GIL: usize = 1 << 20;

/// The values of a write, one per item of `values` (any buffers), in order; large ones lent out of `loans`.
pub fn values(py: Python<'_>, values: &Bound<'_, PyAny>, loans: &mut Loans) -> PyResult<Vec<Bytes>> {
    if values.is_instance_of::<PyBytes>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "values must be a list (or other iterable) of values, not a single bytes",
        ));
    }
    let mut views = Vec::new();
    for (i, v) in values.try_iter()?.enumerate() {
        views.push(View::new(&v?, Access::Write, &|| format!("value {i}"))?);
    }
    Ok(from_views(py, views, loans))
}

/// One value.
pub fn value(py: Python<'_>, value: &Bound<'_, PyAny>, loans: &mut Loans) -> PyResult<Bytes> {
    let view = View::new(value, Access::Write, &|| "the value".to_string())?;
    Ok(from_views(py, vec![view], loans).pop().expect("one value"))
}

fn from_views(py: Python<'_>, views: Vec<View>, loans: &mut Loans) -> Vec<Bytes> {
    let small: usize = views.iter().map(View::len).filter(|&n| n < LEND_FROM).sum();
    let mut copied = BytesMut::with_capacity(small);
    let mut out: Vec<Option<Bytes>> = Vec::with_capacity(views.len());
    let mut to_copy = Vec::new();
    for view in views {
        if view.len() >= LEND_FROM {
            let i = loans.keep(view);
            out.push(Some(loans.value(i)));
        } else {
            out.push(None);
            to_copy.push(view);
        }
    }
    let copy = |copied: &mut BytesMut, views: &[View]| {
        for v in views {
            copied.extend_from_slice(v.bytes());
        }
    };
    if small > COPY_WITHOUT_GIL {
        // The views stay exported meanwhile, so their memory cannot move.
        py.detach(|| copy(&mut copied, &to_copy));
    } else {
        copy(&mut copied, &to_copy);
    }
    let mut copied = copied.freeze();
    let sizes: Vec<usize> = to_copy.iter().map(View::len).collect();
    drop(to_copy);
    let mut sizes = sizes.into_iter();
    out.into_iter()
        .map(|v| v.unwrap_or_else(|| copied.split_to(sizes.next().expect("one size per copied value"))))
        .collect()
}

/// A value read, as `bytes`.
pub fn to_bytes<'py>(py: Python<'py>, v: &Bytes) -> PyResult<Bound<'py, PyAny>> {
    Ok(to_bytes_all(py, std::slice::from_ref(v))?.pop().expect("one value"))
}

/// Values read, as `bytes`, in order: allocated with the GIL held, filled without it when they are large.
pub fn to_bytes_all<'py>(py: Python<'py>, values: &[Bytes]) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let total: usize = values.iter().map(Bytes::len).sum();
    if total <= COPY_WITHOUT_GIL {
        return Ok(values.iter().map(|v| PyBytes::new(py, v).into_any()).collect());
    }
    let mut targets = Vec::with_capacity(values.len());
    let objects = values
        .iter()
        .map(|v| {
            // SAFETY: a new bytes object of `len` bytes, not yet filled; nothing else sees it before it is.
            unsafe {
                let obj = pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), v.len() as pyo3::ffi::Py_ssize_t);
                let obj = Bound::from_owned_ptr_or_err(py, obj)?;
                targets.push(Target(pyo3::ffi::PyBytes_AsString(obj.as_ptr()) as *mut u8));
                Ok(obj)
            }
        })
        .collect::<PyResult<Vec<Bound<'py, PyAny>>>>()?;
    py.detach(|| {
        // In parallel: the copy is most of what the binding adds to a large read.
        values.par_iter().zip(&targets).for_each(|(v, t)| {
            // SAFETY: each target is its own new object's `len` bytes, which only this copy touches.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), t.0, v.len()) }
        });
    });
    Ok(objects)
}

/// Where a new bytes object's contents go.
struct Target(*mut u8);

// SAFETY: the object is new and unshared; only the copying thread writes it, while the caller waits.
unsafe impl Send for Target {}
unsafe impl Sync for Target {}
