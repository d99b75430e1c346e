//! The chunk layer: `ChunkKey` (LMCache's key strings), `ChunkMeta` (LMCache's metadata), `Chunk`, and
//! `ChunkStore` over a `Client`, in every layout the library has.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use kvcache_redis::{Chunk, ChunkKey, ChunkMeta, ChunkStore, Dtype, Layout, MemoryFormat, SplitNaming};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::args::type_name;
use crate::buffers::Loans;
use crate::client::{CallArgs, Pending, PyClient, PyPendingGet, take_back, windows};
use crate::errors::to_py;
use crate::fork::Owned;
use crate::values;

/// The key of one KV-cache chunk, as LMCache names it: `model@world_size@worker_id@chunk_hash@dtype`, then an
/// optional layer and `@tag%value` pairs.
#[pyclass(module = "kvcache_redis._native", name = "ChunkKey", frozen)]
#[derive(Clone)]
pub struct PyChunkKey {
    key: ChunkKey,
}

fn dtype(name: &str) -> PyResult<Dtype> {
    name.parse()
        .map_err(|e: kvcache_redis::Error| PyValueError::new_err(e.to_string()))
}

#[pymethods]
impl PyChunkKey {
    #[new]
    #[pyo3(signature = (model, world_size, worker_id, chunk_hash, dtype, layer=None, tags=None))]
    #[allow(clippy::too_many_arguments)] // Python's constructor: one argument per field of LMCache's key.
    fn new(
        py: Python<'_>,
        model: &str,
        world_size: u32,
        worker_id: u32,
        chunk_hash: &str,
        dtype: &str,
        layer: Option<u32>,
        tags: Option<Vec<(String, String)>>,
    ) -> PyResult<PyChunkKey> {
        let mut key =
            ChunkKey::new(model, world_size, worker_id, chunk_hash, self::dtype(dtype)?).map_err(|e| to_py(py, &e))?;
        key.layer = layer;
        key.tags = tags.unwrap_or_default();
        key.validate().map_err(|e| to_py(py, &e))?;
        Ok(PyChunkKey { key })
    }

    /// Parses LMCache's key string.
    #[staticmethod]
    fn parse(py: Python<'_>, text: &str) -> PyResult<PyChunkKey> {
        Ok(PyChunkKey {
            key: text.parse().map_err(|e| to_py(py, &e))?,
        })
    }

    /// LMCache's hex form of an int chunk hash (`format(h, 'x')`).
    #[staticmethod]
    fn hash_of_int(h: i128) -> String {
        ChunkKey::hash_of_int(h)
    }

    /// LMCache's hex form of a bytes chunk hash.
    #[staticmethod]
    fn hash_of_bytes(h: &[u8]) -> String {
        ChunkKey::hash_of_bytes(h)
    }

    #[getter]
    fn model(&self) -> &str {
        &self.key.model
    }
    #[getter]
    fn world_size(&self) -> u32 {
        self.key.world_size
    }
    #[getter]
    fn worker_id(&self) -> u32 {
        self.key.worker_id
    }
    #[getter]
    fn chunk_hash(&self) -> &str {
        &self.key.chunk_hash
    }
    #[getter]
    fn dtype(&self) -> &'static str {
        self.key.dtype.as_str()
    }
    #[getter]
    fn layer(&self) -> Option<u32> {
        self.key.layer
    }
    #[getter]
    fn tags(&self) -> Vec<(String, String)> {
        self.key.tags.clone()
    }

    fn __str__(&self) -> String {
        self.key.to_string()
    }

    fn __repr__(&self) -> String {
        format!("ChunkKey.parse({:?})", self.key.to_string())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyChunkKey>().is_ok_and(|o| o.get().key == self.key)
    }

    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.key.hash(&mut h);
        h.finish()
    }
}

/// A chunk key given as a `ChunkKey` or as LMCache's key string.
fn chunk_key(py: Python<'_>, k: &Bound<'_, PyAny>, what: &dyn Fn() -> String) -> PyResult<ChunkKey> {
    if let Ok(k) = k.cast::<PyChunkKey>() {
        return Ok(k.get().key.clone());
    }
    if let Ok(s) = k.cast::<PyString>() {
        return s.to_str()?.parse().map_err(|e| to_py(py, &e));
    }
    Err(PyTypeError::new_err(format!(
        "{} must be a ChunkKey or an LMCache key string, not {}",
        what(),
        type_name(k)
    )))
}

fn chunk_keys(py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<Vec<ChunkKey>> {
    if keys.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "keys must be a list of chunk keys, not a single str",
        ));
    }
    keys.try_iter()?
        .enumerate()
        .map(|(i, k)| chunk_key(py, &k?, &|| format!("key {i}")))
        .collect()
}

/// The `kvcache_redis.MemoryFormat` enum (Python), for `ChunkMeta.fmt`.
fn memory_format_enum(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static ENUM: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    ENUM.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("kvcache_redis._enums")?.getattr("MemoryFormat")?.unbind())
    })
    .map(|e| e.bind(py))
}

/// LMCache's chunk metadata: memory format, dtype and shape (up to 4 dimensions).
#[pyclass(module = "kvcache_redis._native", name = "ChunkMeta", frozen)]
#[derive(Clone)]
pub struct PyChunkMeta {
    meta: ChunkMeta,
}

#[pymethods]
impl PyChunkMeta {
    /// `fmt`: a `MemoryFormat` (or its code or name, e.g. `"KV_2LTD"`); `dtype`: LMCache's name (`"bfloat16"`...);
    /// `shape`: up to 4 dimensions.
    #[new]
    fn new(py: Python<'_>, fmt: &Bound<'_, PyAny>, dtype: &str, shape: Vec<u32>) -> PyResult<PyChunkMeta> {
        let fmt = if let Ok(name) = fmt.cast::<PyString>() {
            let name = name.to_str()?;
            let code = memory_format_enum(py)?
                .getattr(name)
                .map_err(|_| PyValueError::new_err(format!("unknown memory format {name:?}")))?
                .extract::<i32>()?;
            MemoryFormat::from_code(code)
        } else {
            MemoryFormat::from_code(fmt.extract::<i32>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "fmt must be a MemoryFormat, its code or name, not {}",
                    type_name(fmt)
                ))
            })?)
        };
        let meta = ChunkMeta::new(fmt, self::dtype(dtype)?, &shape).map_err(|e| to_py(py, &e))?;
        Ok(PyChunkMeta { meta })
    }

    /// The memory format: a `MemoryFormat`, or the code itself when it is one this version does not know.
    #[getter]
    fn fmt<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let code = self.meta.fmt.code();
        match memory_format_enum(py)?.call1((code,)) {
            Ok(known) => Ok(known),
            Err(_) => Ok(code.into_pyobject(py)?.into_any()),
        }
    }

    /// LMCache's dtype name, or `None` for a code this version does not know (see `dtype_code`).
    #[getter]
    fn dtype(&self) -> Option<&'static str> {
        self.meta.dtype.dtype().map(Dtype::as_str)
    }

    /// The dtype's code in LMCache's metadata.
    #[getter]
    fn dtype_code(&self) -> i32 {
        self.meta.dtype.0
    }

    /// The shape, without the trailing zeros of the padding.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.meta.dims())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyChunkMeta>().is_ok_and(|o| o.get().meta == self.meta)
    }

    fn __repr__(&self) -> String {
        let dtype = self
            .meta
            .dtype
            .dtype()
            .map_or_else(|| format!("code {}", self.meta.dtype.0), |d| d.to_string());
        format!("ChunkMeta({}, {dtype}, {:?})", self.meta.fmt, self.meta.dims())
    }
}

/// A chunk read back: its payload (`bytes`) and its metadata (`ChunkMeta`, or `None`).
#[pyclass(module = "kvcache_redis._native", name = "Chunk", frozen)]
pub struct PyChunk {
    #[pyo3(get)]
    payload: Py<PyBytes>,
    #[pyo3(get)]
    meta: Option<Py<PyChunkMeta>>,
}

#[pymethods]
impl PyChunk {
    fn __repr__(&self, py: Python<'_>) -> String {
        let meta = self.meta.as_ref().map_or("None".to_string(), |m| m.get().__repr__());
        format!("Chunk({} bytes, {meta})", self.payload.bind(py).as_bytes().len())
    }
}

/// Chunks as Python `Chunk`s, payloads copied in one pass.
pub fn chunks_to_py(py: Python<'_>, chunks: Vec<Chunk>) -> PyResult<Vec<Bound<'_, PyAny>>> {
    let payloads: Vec<bytes::Bytes> = chunks.iter().map(|c| c.payload.clone()).collect();
    let objects = values::to_bytes_all(py, &payloads)?;
    chunks
        .into_iter()
        .zip(objects)
        .map(|(c, payload)| chunk(py, payload, c.meta))
        .collect()
}

fn chunk<'py>(py: Python<'py>, payload: Bound<'py, PyAny>, meta: Option<ChunkMeta>) -> PyResult<Bound<'py, PyAny>> {
    let meta = meta.map(|meta| Py::new(py, PyChunkMeta { meta })).transpose()?;
    Ok(Bound::new(
        py,
        PyChunk {
            payload: payload.cast_into::<PyBytes>()?.unbind(),
            meta,
        },
    )?
    .into_any())
}

/// KV-cache chunks over a `Client`, in a layout: `"framed"` (one key per chunk, a checksummed header before the
/// payload; the default for new caches), `"raw"` (one key per chunk of exactly `size` bytes, LMCache's
/// `valkey://` and `resp://`), or `"split"` (two keys per chunk, `naming` `"plain"`, `"hash_tagged"` or
/// `"colon"`, LMCache's two-key connectors).
#[pyclass(module = "kvcache_redis._native", name = "ChunkStore", frozen)]
pub struct PyChunkStore {
    store: Owned<ChunkStore>,
    client: Py<PyClient>,
}

impl Drop for PyChunkStore {
    fn drop(&mut self) {
        // The store holds a clone of the client: never dropped in another process.
        if let Some(store) = self.store.take() {
            Python::attach(|py| py.detach(move || drop(store)));
        }
    }
}

fn layout(layout: &str, size: Option<usize>, naming: Option<&str>) -> PyResult<Layout> {
    let naming = match naming {
        None => None,
        Some("plain") => Some(SplitNaming::Plain),
        Some("hash_tagged") => Some(SplitNaming::HashTagged),
        Some("colon") => Some(SplitNaming::Colon),
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "bad naming {other:?}: plain, hash_tagged or colon"
            )));
        }
    };
    match (layout, size, naming) {
        ("framed", None, None) => Ok(Layout::Framed),
        ("raw", Some(size), None) if size > 0 => Ok(Layout::Raw { size }),
        ("raw", _, None) => Err(PyValueError::new_err(
            "the raw layout needs size= (every chunk's bytes, > 0)",
        )),
        ("split", None, naming) => Ok(Layout::Split {
            naming: naming.unwrap_or(SplitNaming::Plain),
        }),
        ("framed" | "split", Some(_), _) => Err(PyValueError::new_err("size= is for the raw layout")),
        ("framed" | "raw", _, Some(_)) => Err(PyValueError::new_err("naming= is for the split layout")),
        (other, ..) => Err(PyValueError::new_err(format!(
            "bad layout {other:?}: framed, raw or split"
        ))),
    }
}

impl PyChunkStore {
    /// The store with a call's settings and signal check.
    fn with(&self, py: Python<'_>, call: &CallArgs) -> PyResult<ChunkStore> {
        let store = self.store.get(py, "chunk store")?;
        crate::buffers::sweep(py);
        let mut store = store.with_interrupt(call.signals.check());
        if let Some(p) = call.priority {
            store = store.with_priority(p);
        }
        if let Some(t) = call.timeout {
            store = store.with_timeout(t);
        }
        Ok(store)
    }
}

#[pymethods]
impl PyChunkStore {
    #[new]
    #[pyo3(signature = (client, layout="framed", *, size=None, naming=None, namespace="", ttl_secs=None))]
    fn new(
        py: Python<'_>,
        client: Bound<'_, PyClient>,
        layout: &str,
        size: Option<usize>,
        naming: Option<&str>,
        namespace: &str,
        ttl_secs: Option<u64>,
    ) -> PyResult<PyChunkStore> {
        let mut store =
            ChunkStore::new(client.get().inner(py)?, self::layout(layout, size, naming)?).with_namespace(namespace);
        if let Some(ttl) = ttl_secs {
            store = store.with_ttl(Some(ttl));
        }
        Ok(PyChunkStore {
            store: Owned::new(store),
            client: client.unbind(),
        })
    }

    /// The client underneath.
    #[getter]
    fn client(&self, py: Python<'_>) -> Py<PyClient> {
        self.client.clone_ref(py)
    }

    /// `"framed"`, `"raw"` or `"split"`.
    #[getter]
    fn layout(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(match self.store.get(py, "chunk store")?.layout() {
            Layout::Framed => "framed",
            Layout::Raw { .. } => "raw",
            _ => "split",
        })
    }

    /// The key a chunk is stored under (the namespace, then LMCache's key string); in the split layout, its
    /// `kv_bytes` key.
    fn store_key(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<String> {
        let store = self.store.get(py, "chunk store")?;
        let key = chunk_key(py, key, &|| "key".into())?;
        Ok(match store.layout() {
            Layout::Split { naming } => store.split_keys(&key, naming).0,
            _ => store.store_key(&key),
        })
    }

    /// The kv_bytes and metadata keys of a chunk in the split layout (`naming` of this store, else `naming=`).
    #[pyo3(signature = (key, naming=None))]
    fn split_keys(&self, py: Python<'_>, key: &Bound<'_, PyAny>, naming: Option<&str>) -> PyResult<(String, String)> {
        let store = self.store.get(py, "chunk store")?;
        let key = chunk_key(py, key, &|| "key".into())?;
        let naming = match (naming, store.layout()) {
            (Some(n), _) => match self::layout("split", None, Some(n))? {
                Layout::Split { naming } => naming,
                _ => unreachable!("a split layout"),
            },
            (None, Layout::Split { naming }) => naming,
            (None, _) => return Err(PyValueError::new_err("not a split-layout store: give naming=")),
        };
        Ok(store.split_keys(&key, naming))
    }

    #[pyo3(signature = (key, payload, meta=None, *, priority=None, timeout=None))]
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
        meta: Option<PyRef<'_, PyChunkMeta>>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let call = CallArgs::new(priority, timeout)?;
        let store = self.with(py, &call)?;
        let key = chunk_key(py, key, &|| "key".into())?;
        let mut loans = Loans::new();
        let payload = values::value(py, payload, &mut loans)?;
        let meta = meta.map(|m| m.meta);
        let done = py.detach(|| store.put(&key, payload, meta));
        loans.settle(py, matches!(done, Err(kvcache_redis::Error::Interrupted)));
        done.map_err(|e| call.error(py, &e))
    }

    /// Stores `payloads[i]` as chunk `keys[i]`, all with the same metadata.
    #[pyo3(signature = (keys, payloads, meta=None, *, priority=None, timeout=None))]
    fn batched_put(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        payloads: &Bound<'_, PyAny>,
        meta: Option<PyRef<'_, PyChunkMeta>>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let call = CallArgs::new(priority, timeout)?;
        let store = self.with(py, &call)?;
        let keys = chunk_keys(py, keys)?;
        let mut loans = Loans::new();
        let payloads = values::values(py, payloads, &mut loans)?;
        let meta = meta.map(|m| m.meta);
        let done = py.detach(|| store.batched_put(&keys, payloads, meta));
        loans.settle(py, matches!(done, Err(kvcache_redis::Error::Interrupted)));
        let done = done.map_err(|e| call.error(py, &e))?;
        call.results(py, done, |()| Ok(py.None().into_bound(py)))?;
        Ok(())
    }

    /// One chunk, or `None` when it is missing or did not check out.
    #[pyo3(signature = (key, *, priority=None, timeout=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        priority: Option<&Bound<'py, PyAny>>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let call = CallArgs::new(priority, timeout)?;
        let store = self.with(py, &call)?;
        let key = chunk_key(py, key, &|| "key".into())?;
        match py.detach(|| store.get(&key)) {
            Ok(Some(c)) => Ok(chunks_to_py(py, vec![c])?.pop()),
            Ok(None) => Ok(None),
            Err(e) => Err(call.error(py, &e)),
        }
    }

    /// One `Chunk` or `None` per key, in order.
    #[pyo3(signature = (keys, *, priority=None, timeout=None))]
    fn batched_get<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        priority: Option<&Bound<'py, PyAny>>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let call = CallArgs::new(priority, timeout)?;
        let store = self.with(py, &call)?;
        let keys = chunk_keys(py, keys)?;
        let got = py.detach(|| store.batched_get(&keys)).map_err(|e| call.error(py, &e))?;
        let found: Vec<Chunk> = got.iter().filter_map(|r| r.as_ref().ok().cloned().flatten()).collect();
        let mut converted = chunks_to_py(py, found)?.into_iter();
        call.results(py, got, |c| {
            Ok(match c {
                Some(_) => converted.next().expect("one per chunk"),
                None => py.None().into_bound(py),
            })
        })
    }

    /// The number of consecutive chunks, from the first, that are present.
    #[pyo3(signature = (keys, *, priority=None, timeout=None))]
    fn batched_contains(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let call = CallArgs::new(priority, timeout)?;
        let store = self.with(py, &call)?;
        let keys = chunk_keys(py, keys)?;
        py.detach(|| store.batched_contains(&keys))
            .map_err(|e| call.error(py, &e))
    }

    /// Starts loading and returns at once; the handle's `wait` gives the consecutive prefix of good chunks.
    #[pyo3(signature = (keys, *, priority=None, timeout=None))]
    fn batched_get_non_blocking(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyPendingGet> {
        let call = CallArgs::new(priority, timeout)?;
        let store = self.with(py, &call)?;
        let keys = chunk_keys(py, keys)?;
        let pending = py.detach(|| store.batched_get_non_blocking(&keys));
        Ok(PyPendingGet::new(Pending::Chunks(pending)))
    }

    /// Reads each chunk's payload straight into `buffers[i]` (writable, C-contiguous; framed: at least the payload's
    /// size, raw: exactly the layout's);
    /// one `int` (bytes) or `None` (missing or damaged) per key.
    #[pyo3(signature = (keys, buffers, *, priority=None, timeout=None))]
    fn batched_get_into<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        buffers: &Bound<'py, PyAny>,
        priority: Option<&Bound<'py, PyAny>>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let call = CallArgs::new(priority, timeout)?;
        let store = self.with(py, &call)?;
        let keys = chunk_keys(py, keys)?;
        let loans = windows(buffers)?;
        if loans.views().len() != keys.len() {
            return Err(PyValueError::new_err(format!(
                "{} keys but {} buffers: one buffer per key",
                keys.len(),
                loans.views().len()
            )));
        }
        let windows = (0..keys.len()).map(|i| loans.window(i)).collect();
        let filled = py.detach(|| store.batched_get_into(&keys, windows));
        let results = take_back(filled);
        loans.settle(py, false);
        call.results(py, results, |n| {
            Ok(match n {
                Some(n) => n.into_pyobject(py)?.into_any(),
                None => py.None().into_bound(py),
            })
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let store = self.store.get(py, "chunk store")?;
        Ok(format!("<kvcache_redis.ChunkStore {:?}>", store.layout()))
    }
}
