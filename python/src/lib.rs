//! Python bindings of kvcache-redis (`import kvcache_redis`): the library's client and chunk store, translated and
//! nothing more. Every blocking call releases the GIL and wakes every 50 ms for signals; values are read straight
//! into caller buffers and written from them without copies; objects refuse to be used after `os.fork()` in the
//! child. The Python side of the package (`kvcache_redis/`) holds the exceptions, enums and type stubs.

mod args;
mod buffers;
mod chunks;
mod client;
mod errors;
mod fork;
mod report;
mod values;
mod wait;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::PyClient>()?;
    m.add_class::<client::PyPendingGet>()?;
    m.add_class::<chunks::PyChunkStore>()?;
    m.add_class::<chunks::PyChunkKey>()?;
    m.add_class::<chunks::PyChunkMeta>()?;
    m.add_class::<chunks::PyChunk>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    fork::register()?;
    Ok(())
}
