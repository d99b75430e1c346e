//! `kvcache_redis.Client` and `PendingGet`: the library's client and its non-blocking get, every call made with
//! the GIL released and Ctrl-C honoured.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kvcache_redis::{Call, Client, Config, Error, PendingGet, Priority};
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::args;
use crate::buffers::{self, Access, Loans, View};
use crate::errors;
use crate::fork::Owned;
use crate::report;
use crate::values;
use crate::wait::Signals;

/// How long a `wait` sleeps between checks for signals.
const SLICE: Duration = Duration::from_millis(50);

/// A blocking, batching client for a standalone Redis / Valkey server, a Cluster or a Sentinel-managed primary.
#[pyclass(module = "kvcache_redis._native", name = "Client", frozen)]
pub struct PyClient {
    client: Owned<Client>,
    /// The URL (password redacted) or the file it was opened from, for `repr`.
    shown: String,
}

impl Drop for PyClient {
    fn drop(&mut self) {
        // Stopping the workers may drain queued calls for a while: not with the GIL held.
        if let Some(client) = self.client.take() {
            Python::attach(|py| py.detach(move || drop(client)));
        }
    }
}

/// Per-call settings from keyword arguments.
pub struct CallArgs {
    pub priority: Option<Priority>,
    pub timeout: Option<Duration>,
    pub signals: Signals,
}

impl CallArgs {
    pub fn new(priority: Option<&Bound<'_, PyAny>>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<CallArgs> {
        Ok(CallArgs {
            priority: args::priority(priority)?,
            timeout: args::timeout(timeout)?,
            signals: Signals,
        })
    }

    /// A call on `client` with these settings and the signal check.
    pub fn on<'a>(&self, client: &'a Client) -> Call<'a> {
        let mut call = client.call().interruptible(self.signals.check());
        if let Some(p) = self.priority {
            call = call.priority(p);
        }
        if let Some(t) = self.timeout {
            call = call.timeout(t);
        }
        call
    }

    /// The exception for a library error (the signal handler's own when the wait was interrupted).
    pub fn error(&self, py: Python<'_>, e: &Error) -> PyErr {
        self.signals.error(py, e)
    }

    /// Per-key results as a list, or `BatchError`; an interrupted wait raises what the signal handler raised.
    pub fn results<'py, T>(
        &self,
        py: Python<'py>,
        per_key: Vec<kvcache_redis::Result<T>>,
        mut convert: impl FnMut(T) -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        if let Some(Err(e)) = per_key.iter().find(|r| matches!(r, Err(Error::Interrupted))) {
            return Err(self.error(py, e));
        }
        let per_key = per_key
            .into_iter()
            .map(|r| match r {
                Ok(v) => convert(v).map(Ok),
                Err(e) => Ok(Err(e)),
            })
            .collect::<PyResult<Vec<_>>>()?;
        errors::results(py, per_key)
    }
}

/// Opens a client on a helper thread, waiting for it in slices so that Ctrl-C reaches the caller.
fn open(py: Python<'_>, config: Config) -> PyResult<Client> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("kvcache-redis-open".into())
        .spawn(move || {
            let _ = tx.send(Client::with_config(config));
        })
        .map_err(PyErr::from)?;
    let mut rx = Some(rx);
    loop {
        let (back, got) = py.detach(move || {
            let rx = rx.take().expect("put back every turn");
            let got = rx.recv_timeout(SLICE);
            (rx, got)
        });
        rx = Some(back);
        match got {
            Ok(opened) => return opened.map_err(|e| errors::to_py(py, &e)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(errors::to_py(py, &Error::WorkerLost));
            }
        }
    }
}

/// A client from an LMCache configuration's text; `shown` names it in warnings and `repr`.
fn from_lmcache_text(
    py: Python<'_>,
    text: &str,
    shown: &str,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<PyClient> {
    let read = Config::from_lmcache_yaml(text).map_err(|e| errors::to_py(py, &e))?;
    for key in &read.unknown {
        report::warn(py, &format!("{shown}: unknown key {key:?} ignored"))?;
    }
    for why in &read.not_applied {
        report::warn(py, &format!("{shown}: not applied: {why}"))?;
    }
    let config = args::apply(py, read.config, options)?;
    Ok(PyClient {
        client: Owned::new(open(py, config)?),
        shown: shown.to_string(),
    })
}

impl PyClient {
    /// The client, in the process that opened it; every call passes here, and releases on the way the buffers of
    /// earlier calls that workers have let go since.
    fn client(&self, py: Python<'_>) -> PyResult<&Client> {
        // The process check first: in a forked child nothing else may be touched (locks the parent's threads held
        // at the fork stay held there).
        let client = self.client.get(py, "client")?;
        buffers::sweep(py);
        Ok(client)
    }

    pub fn inner(&self, py: Python<'_>) -> PyResult<Client> {
        self.client(py).cloned()
    }
}

#[pymethods]
impl PyClient {
    #[new]
    #[pyo3(signature = (url, **options))]
    fn new(py: Python<'_>, url: &str, options: Option<&Bound<'_, PyDict>>) -> PyResult<PyClient> {
        let config = Config::from_url(url).map_err(|e| errors::to_py(py, &e))?;
        let config = args::apply(py, config, options)?;
        Ok(PyClient {
            client: Owned::new(open(py, config)?),
            shown: kvcache_redis::redact_url(url),
        })
    }

    /// Opens a client from an LMCache configuration file (YAML), as `Config::from_lmcache_yaml` reads it; keyword
    /// options as for `Client(...)` apply on top. Keys the file has that this client does not know, and connector
    /// keys it does not apply, are reported with a `UserWarning` (the engine's own settings, such as `chunk_size`,
    /// are not).
    #[staticmethod]
    #[pyo3(signature = (path, **options))]
    fn from_lmcache_yaml(py: Python<'_>, path: PathBuf, options: Option<&Bound<'_, PyDict>>) -> PyResult<PyClient> {
        let text = std::fs::read_to_string(&path).map_err(PyErr::from)?;
        let shown = format!("lmcache:{}", path.display());
        from_lmcache_text(py, &text, &shown, options)
    }

    /// Like `from_lmcache_yaml`, from the configuration's text (YAML, or JSON, which is YAML too).
    #[staticmethod]
    #[pyo3(signature = (text, **options))]
    fn from_lmcache_config(py: Python<'_>, text: &str, options: Option<&Bound<'_, PyDict>>) -> PyResult<PyClient> {
        from_lmcache_text(py, text, "lmcache config", options)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let kind = match self.client.get(py, "client") {
            Ok(c) if c.is_cluster() => "cluster",
            Ok(_) => "standalone",
            Err(_) => "opened in another process",
        };
        format!("<kvcache_redis.Client {} ({kind})>", self.shown)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    /// Whether the deployment is a Cluster.
    #[getter]
    fn is_cluster(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.client(py)?.is_cluster())
    }

    /// The primaries the client routes to now, `host:port`.
    fn primaries(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(self.client(py)?.primaries())
    }

    #[pyo3(signature = (key, *, priority=None, timeout=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        priority: Option<&Bound<'py, PyAny>>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let (client, call) = (self.client(py)?, CallArgs::new(priority, timeout)?);
        let key = args::key(key)?;
        let got = py.detach(|| call.on(client).get(&key));
        match got {
            Ok(v) => v.map(|v| values::to_bytes(py, &v)).transpose(),
            Err(e) => Err(call.error(py, &e)),
        }
    }

    #[pyo3(signature = (key, value, *, priority=None, timeout=None, ttl_secs=None))]
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        ttl_secs: Option<u64>,
    ) -> PyResult<()> {
        let (client, call) = (self.client(py)?, CallArgs::new(priority, timeout)?);
        let key = args::key(key)?;
        let mut loans = Loans::new();
        let value = values::value(py, value, &mut loans)?;
        let done = py.detach(|| with_ttl(call.on(client), ttl_secs).put(&key, value));
        loans.settle(py, matches!(done, Err(Error::Interrupted)));
        done.map_err(|e| call.error(py, &e))
    }

    #[pyo3(signature = (key, *, priority=None, timeout=None))]
    fn exists(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let (client, call) = (self.client(py)?, CallArgs::new(priority, timeout)?);
        let key = args::key(key)?;
        py.detach(|| call.on(client).exists(&key))
            .map_err(|e| call.error(py, &e))
    }

    #[pyo3(signature = (key, *, priority=None, timeout=None))]
    fn remove(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let (client, call) = (self.client(py)?, CallArgs::new(priority, timeout)?);
        let key = args::key(key)?;
        py.detach(|| call.on(client).remove(&key))
            .map_err(|e| call.error(py, &e))
    }

    #[pyo3(signature = (keys, *, priority=None, timeout=None))]
    fn batched_get<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        priority: Option<&Bound<'py, PyAny>>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (client, call) = (self.client(py)?, CallArgs::new(priority, timeout)?);
        let keys = args::keys(keys)?;
        let got = py
            .detach(|| call.on(client).batched_get(&keys.slices()))
            .map_err(|e| call.error(py, &e))?;
        // Values become `bytes` in one pass (without the GIL when they are large), then take their places.
        let found: Vec<bytes::Bytes> = got.iter().filter_map(|r| r.as_ref().ok().cloned().flatten()).collect();
        let mut converted = values::to_bytes_all(py, &found)?.into_iter();
        call.results(py, got, |v| {
            Ok(match v {
                Some(_) => converted.next().expect("one per value"),
                None => py.None().into_bound(py),
            })
        })
    }

    #[pyo3(signature = (keys, buffers, *, priority=None, timeout=None))]
    fn batched_get_into<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        buffers: &Bound<'py, PyAny>,
        priority: Option<&Bound<'py, PyAny>>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (client, call) = (self.client(py)?, CallArgs::new(priority, timeout)?);
        let keys = args::keys(keys)?;
        let loans = windows(buffers)?;
        if loans.views().len() != keys.len() {
            return Err(PyValueError::new_err(format!(
                "{} keys but {} buffers: one buffer per key",
                keys.len(),
                loans.views().len()
            )));
        }
        let windows = (0..keys.len()).map(|i| loans.window(i)).collect();
        let filled = py.detach(|| call.on(client).batched_get_into(&keys.slices(), windows));
        let results = take_back(filled);
        loans.settle(py, false);
        call.results(py, results, |n| {
            Ok(match n {
                Some(n) => n.into_pyobject(py)?.into_any(),
                None => py.None().into_bound(py),
            })
        })
    }

    #[pyo3(signature = (keys, values, *, priority=None, timeout=None, ttl_secs=None))]
    fn batched_put(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        ttl_secs: Option<u64>,
    ) -> PyResult<()> {
        let (client, call) = (self.client(py)?, CallArgs::new(priority, timeout)?);
        let keys = args::keys(keys)?;
        let mut loans = Loans::new();
        let values = values::values(py, values, &mut loans)?;
        if values.len() != keys.len() {
            return Err(PyValueError::new_err(format!(
                "{} keys but {} values: one value per key",
                keys.len(),
                values.len()
            )));
        }
        let done = py.detach(|| with_ttl(call.on(client), ttl_secs).batched_put(&keys.slices(), values));
        loans.settle(py, matches!(done, Err(Error::Interrupted)));
        let done = done.map_err(|e| call.error(py, &e))?;
        call.results(py, done, |()| Ok(py.None().into_bound(py)))?;
        Ok(())
    }

    #[pyo3(signature = (keys, *, priority=None, timeout=None))]
    fn batched_remove<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        priority: Option<&Bound<'py, PyAny>>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (client, call) = (self.client(py)?, CallArgs::new(priority, timeout)?);
        let keys = args::keys(keys)?;
        let done = py
            .detach(|| call.on(client).batched_remove(&keys.slices()))
            .map_err(|e| call.error(py, &e))?;
        call.results(py, done, |b| Ok(pyo3::types::PyBool::new(py, b).to_owned().into_any()))
    }

    #[pyo3(signature = (keys, *, priority=None, timeout=None))]
    fn batched_contains(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let (client, call) = (self.client(py)?, CallArgs::new(priority, timeout)?);
        let keys = args::keys(keys)?;
        py.detach(|| call.on(client).batched_contains(&keys.slices()))
            .map_err(|e| call.error(py, &e))
    }

    #[pyo3(signature = (keys, *, priority=None, timeout=None))]
    fn batched_get_non_blocking(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyPendingGet> {
        let (client, call) = (self.client(py)?, CallArgs::new(priority, timeout)?);
        let keys = args::keys(keys)?;
        let pending = py.detach(|| call.on(client).batched_get_non_blocking(&keys.slices()));
        Ok(PyPendingGet::new(Pending::Bytes(pending)))
    }

    #[pyo3(signature = (*, timeout=None))]
    fn ping(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let (client, call) = (self.client(py)?, CallArgs::new(None, timeout)?);
        py.detach(|| call.on(client).ping()).map_err(|e| call.error(py, &e))
    }

    /// The client's counters, as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        report::stats(py, &self.client(py)?.stats())
    }

    /// What each Sentinel says of the service (a list of dicts), or `None` for other deployments.
    fn sentinels<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let client = self.client(py)?;
        let answers = py.detach(|| client.sentinels());
        answers.map(|a| report::sentinels(py, &a)).transpose()
    }

    /// Stops the workers (calls already queued are carried out for up to `drain_timeout`) and waits for them.
    /// Idempotent; later calls raise `ClosedError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if !self.client.is_ours() {
            return Ok(());
        }
        let client = self.client(py)?;
        py.detach(|| client.close()).map_err(|e| errors::to_py(py, &e))
    }
}

/// A write call with a TTL other than the client's, when one is given.
fn with_ttl(call: Call<'_>, ttl_secs: Option<u64>) -> Call<'_> {
    match ttl_secs {
        Some(ttl) => call.ttl_secs(Some(ttl)),
        None => call,
    }
}

/// The writable buffers of a read, exported for the call, each its own memory.
pub fn windows(buffers: &Bound<'_, PyAny>) -> PyResult<Loans> {
    let mut loans = Loans::new();
    for (i, b) in buffers.try_iter()?.enumerate() {
        loans.keep(View::new(&b?, Access::Read, &|| format!("buffer {i}"))?);
    }
    buffers::disjoint(loans.views())?;
    Ok(loans)
}

/// Each buffer's result; the windows handed back are let go (one a worker still holds keeps its view exported,
/// see `Loans::settle`).
pub fn take_back<B>(filled: Vec<kvcache_redis::FillResult<B>>) -> Vec<kvcache_redis::Result<Option<usize>>> {
    filled.into_iter().map(|f| f.result).collect()
}

/// What a non-blocking get waits for: values, or chunks.
pub enum Pending {
    Bytes(PendingGet),
    Chunks(kvcache_redis::PendingChunks),
}

/// The handle of `batched_get_non_blocking`: `wait`, `poll` or `done`. It resolves by the call's deadline at the
/// latest, and answers the same once resolved.
#[pyclass(module = "kvcache_redis._native", name = "PendingGet", frozen)]
pub struct PyPendingGet {
    pending: Owned<Mutex<Pending>>,
    result: Mutex<Option<Py<PyAny>>>,
}

impl PyPendingGet {
    pub fn new(pending: Pending) -> PyPendingGet {
        PyPendingGet {
            pending: Owned::new(Mutex::new(pending)),
            result: Mutex::new(None),
        }
    }

    /// Waits up to `slice` for the answer, without the GIL; `Some` once it is in (and kept).
    fn try_resolve(&self, py: Python<'_>, slice: Duration) -> PyResult<Option<Py<PyAny>>> {
        // The process check first (see `PyClient::client`).
        let pending = self.pending.get(py, "pending get")?;
        if let Some(r) = self.result.lock().as_ref() {
            return Ok(Some(r.clone_ref(py)));
        }
        // Another thread waiting holds the lock: this one reports "not yet".
        let Some(mut pending) = pending.try_lock() else {
            if !slice.is_zero() {
                py.detach(|| std::thread::sleep(slice.min(SLICE)));
            }
            return Ok(None);
        };
        let waiting: &mut Pending = &mut pending;
        let answer = py.detach(|| match waiting {
            Pending::Bytes(p) => p.wait_timeout(slice).map(|r| r.map(Answer::Bytes)),
            Pending::Chunks(p) => p.wait_timeout(slice).map(|r| r.map(Answer::Chunks)),
        });
        let Some(answer) = answer else {
            return Ok(None);
        };
        let value: Py<PyAny> = match answer {
            Ok(Answer::Bytes(values)) => PyList::new(py, values::to_bytes_all(py, &values)?)?.into_any().unbind(),
            Ok(Answer::Chunks(chunks)) => PyList::new(py, crate::chunks::chunks_to_py(py, chunks)?)?
                .into_any()
                .unbind(),
            // A failure is kept too, and raised again by every later wait.
            Err(e) => errors::to_py(py, &e).into_value(py).into_any(),
        };
        *self.result.lock() = Some(value.clone_ref(py));
        Ok(Some(value))
    }
}

enum Answer {
    Bytes(Vec<bytes::Bytes>),
    Chunks(Vec<kvcache_redis::Chunk>),
}

/// The answer, or the exception it is.
fn answer(py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
    let bound = value.bind(py);
    if bound.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        return Err(PyErr::from_value(bound.clone()));
    }
    Ok(value)
}

#[pymethods]
impl PyPendingGet {
    /// Waits for the consecutive prefix of hits (values after the first miss or failure are dropped). With
    /// `timeout` (seconds), raises `TimeoutError` if it is not in by then; the handle stays usable.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let limit = args::timeout(timeout)?;
        let until = limit.map(|t| Instant::now() + t);
        loop {
            let left = until.map_or(SLICE, |u| u.saturating_duration_since(Instant::now()).min(SLICE));
            if let Some(v) = self.try_resolve(py, left)? {
                return answer(py, v);
            }
            py.check_signals()?;
            if until.is_some_and(|u| Instant::now() >= u) {
                let waited = limit.expect("set with until").as_secs_f64();
                let message = format!("timed out: not ready after waiting {waited} s (the handle stays usable)");
                return Err(errors::new_error(py, "TimeoutError", message, &[]));
            }
        }
    }

    /// The answer if it is in (raising as `wait` would), else `None`; never waits.
    fn poll(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.try_resolve(py, Duration::ZERO)?.map(|v| answer(py, v)).transpose()
    }

    /// Whether the answer is in.
    fn done(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.try_resolve(py, Duration::ZERO)?.is_some())
    }

    fn __repr__(&self) -> String {
        let state = if self.result.lock().is_some() {
            "done"
        } else {
            "pending"
        };
        format!("<kvcache_redis.PendingGet ({state})>")
    }
}
