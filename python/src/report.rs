//! What the client reports, as plain Python data: its counters (`stats()`), what the Sentinels say
//! (`sentinels()`), and warnings.

use kvcache_redis::{Latency, Priority, SentinelAnswer, Stats};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// The names of the priority levels, highest first, as `stats()` keys them.
const LEVELS: [&str; 4] = ["peek", "prefetch", "get", "put"];

fn per_level<'py, T>(
    py: Python<'py>,
    values: &[T; 4],
    item: impl Fn(&T) -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (p, v) in Priority::ALL.iter().zip(values) {
        d.set_item(LEVELS[*p as usize], item(v)?)?;
    }
    Ok(d)
}

fn latency<'py>(py: Python<'py>, l: &Latency) -> PyResult<Bound<'py, PyAny>> {
    let d = PyDict::new(py);
    d.set_item("count", l.count)?;
    d.set_item("p50_us", l.p50_us)?;
    d.set_item("p99_us", l.p99_us)?;
    d.set_item("p999_us", l.p999_us)?;
    d.set_item("max_us", l.max_us)?;
    Ok(d.into_any())
}

/// `Stats` as a dict with the same names (`requests` and `latency` keyed by priority name).
pub fn stats<'py>(py: Python<'py>, s: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(
        "requests",
        per_level(py, &s.requests, |n| Ok(n.into_pyobject(py)?.into_any()))?,
    )?;
    let counters = [
        ("parts", s.parts),
        ("keys", s.keys),
        ("direct_keys", s.direct_keys),
        ("hits", s.hits),
        ("misses", s.misses),
        ("key_errors", s.key_errors),
        ("corrupt", s.corrupt),
        ("prefix_failures", s.prefix_failures),
        ("moved", s.moved),
        ("asked", s.asked),
        ("retries", s.retries),
        ("io_retries", s.io_retries),
        ("connects", s.connects),
        ("timeouts", s.timeouts),
        ("round_trips", s.round_trips),
        ("overloads", s.overloads),
        ("marked_down", s.marked_down),
        ("silences", s.silences),
        ("rerouted", s.rerouted),
        ("refreshes", s.refreshes),
        ("queued", s.queued),
        ("in_flight_bytes", s.in_flight_bytes),
        ("bytes_read", s.bytes_read),
        ("bytes_written", s.bytes_written),
    ];
    for (name, v) in counters {
        d.set_item(name, v)?;
    }
    d.set_item("nodes_down", s.nodes_down.clone())?;
    let nodes = PyList::empty(py);
    for n in &s.nodes {
        let nd = PyDict::new(py);
        nd.set_item("node", &n.node)?;
        nd.set_item("round_trips", n.round_trips)?;
        nd.set_item("commands", n.commands)?;
        nd.set_item("keys", n.keys)?;
        nodes.append(nd)?;
    }
    d.set_item("nodes", nodes)?;
    d.set_item("latency", per_level(py, &s.latency, |l| latency(py, l))?)?;
    Ok(d)
}

/// Each Sentinel's answer as a dict: `sentinel`, `service`, and either `primary`, `epoch`, `flags`, `replicas`
/// (dicts of `addr`, `flags`, `link_ok`, `usable`) or `error`.
pub fn sentinels<'py>(py: Python<'py>, answers: &[SentinelAnswer]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for a in answers {
        let d = PyDict::new(py);
        d.set_item("sentinel", &a.sentinel)?;
        d.set_item("service", &a.service)?;
        match &a.view {
            Ok(v) => {
                d.set_item("primary", &v.primary)?;
                d.set_item("epoch", v.epoch)?;
                d.set_item("flags", &v.flags)?;
                let replicas = PyList::empty(py);
                for r in &v.replicas {
                    let rd = PyDict::new(py);
                    rd.set_item("addr", &r.addr)?;
                    rd.set_item("flags", &r.flags)?;
                    rd.set_item("link_ok", r.link_ok)?;
                    rd.set_item("usable", r.usable())?;
                    replicas.append(rd)?;
                }
                d.set_item("replicas", replicas)?;
                d.set_item("error", py.None())?;
            }
            Err(e) => d.set_item("error", e.to_string())?,
        }
        out.append(d)?;
    }
    Ok(out)
}

/// A `UserWarning` from the caller's line.
pub fn warn(py: Python<'_>, message: &str) -> PyResult<()> {
    let category = py.get_type::<pyo3::exceptions::PyUserWarning>();
    PyErr::warn(py, &category, &std::ffi::CString::new(message).unwrap_or_default(), 2)
}
