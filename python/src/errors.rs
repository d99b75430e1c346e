//! The library's errors as the Python exceptions of `kvcache_redis.errors`, with the same messages; per-key
//! failures of batched calls as one `BatchError` carrying every key's result.

use kvcache_redis::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyType};

/// The module the exception classes live in (Python, so that they can derive from two built-ins).
fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || PyModule::import(py, "kvcache_redis.errors").map(Bound::unbind))?;
    module
        .bind(py)
        .getattr(name)?
        .cast_into::<PyType>()
        .map_err(PyErr::from)
}

/// A new exception of class `name` (of `kvcache_redis.errors`) with `message`, and attributes.
pub fn new_error(py: Python<'_>, name: &str, message: String, attrs: &[(&str, &str)]) -> PyErr {
    let built = (|| -> PyResult<PyErr> {
        let exc = class(py, name)?.call1((message.clone(),))?;
        for (k, v) in attrs {
            exc.setattr(*k, *v)?;
        }
        Ok(PyErr::from_value(exc))
    })();
    built.unwrap_or_else(|e| e)
}

/// The exception for a library error.
pub fn to_py(py: Python<'_>, e: &Error) -> PyErr {
    let message = e.to_string();
    let (name, node, code): (&str, Option<&str>, Option<&str>) = match e {
        Error::Closed => ("ClosedError", None, None),
        Error::Timeout { node } => ("TimeoutError", node.as_deref(), None),
        Error::Io { node, .. } => ("ConnectionError", Some(node), None),
        Error::Tls { node, .. } => ("TlsError", Some(node), None),
        Error::Server { node, code, .. } if matches!(code.as_str(), "WRONGPASS" | "NOAUTH" | "NOPERM") => {
            ("AuthenticationError", Some(node), Some(code))
        }
        Error::Server { node, code, .. } => ("ServerError", Some(node), Some(code)),
        Error::TooManyRedirects { node, .. } => ("RedirectError", Some(node), None),
        Error::Protocol { node, .. } => ("ProtocolError", Some(node), None),
        Error::Topology(_) => ("TopologyError", None, None),
        Error::Overloaded(_) => ("OverloadedError", None, None),
        Error::InvalidInput(_) => ("InvalidInputError", None, None),
        Error::Config(_) => ("ConfigError", None, None),
        Error::WorkerLost => ("WorkerLostError", None, None),
        Error::NotReplicated { node, .. } => ("NotReplicatedError", Some(node), None),
        _ => ("Error", None, None),
    };
    let mut attrs = Vec::new();
    if let Some(node) = node {
        attrs.push(("node", node));
    }
    if let Some(code) = code {
        attrs.push(("code", code));
    }
    new_error(py, name, message, &attrs)
}

/// `ForkedError`: a client or handle used in a process other than the one that opened it.
pub fn forked(py: Python<'_>, what: &str, owner: u32, here: u32) -> PyErr {
    new_error(
        py,
        "ForkedError",
        format!(
            "this {what} was opened in process {owner} and cannot be used in process {here} (after os.fork(), its \
             worker threads are gone): open a new client in this process"
        ),
        &[],
    )
}

/// The per-key outcome of a batched call: each key's Python result, or its error. Returns the results as a list
/// when every key succeeded; raises the first key's own exception when every key failed (a dead node, a timeout:
/// `except ConnectionError` works), and `BatchError`, carrying every key's result, when only some failed.
pub fn results<'py>(py: Python<'py>, per_key: Vec<Result<Bound<'py, PyAny>, Error>>) -> PyResult<Bound<'py, PyList>> {
    let failed: Vec<(usize, &Error)> = per_key
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
        .collect();
    if failed.is_empty() {
        let ok = per_key.into_iter().map(|r| r.expect("no failures"));
        return PyList::new(py, ok);
    }
    let (first, first_err) = failed[0];
    if failed.len() == per_key.len() {
        return Err(to_py(py, first_err));
    }
    let message = format!(
        "{} of {} keys failed; key {first}: {first_err}",
        failed.len(),
        per_key.len()
    );
    let items: Vec<Bound<'py, PyAny>> = per_key
        .into_iter()
        .map(|r| match r {
            Ok(v) => v,
            Err(e) => to_py(py, &e).into_value(py).into_bound(py).into_any(),
        })
        .collect();
    let list = PyList::new(py, items)?;
    let exc = class(py, "BatchError")?.call1((message, list))?;
    Err(PyErr::from_value(exc))
}
