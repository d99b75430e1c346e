"""LMCache remote-storage plugin: LMCache's remote cache on kvcache_redis, switched on by configuration.

LMCache (0.5.6) loads it through its plugin framework::

    remote_storage_plugins: ["kvcache"]
    extra_config:
      remote_storage_plugin.kvcache.module_path: kvcache_redis.lmcache
      remote_storage_plugin.kvcache.class_name: KVCacheAdapter
      remote_storage_plugin.kvcache.url: redis://127.0.0.1:6379

Settings, all under ``remote_storage_plugin.<name>.`` (``<name>`` as listed in ``remote_storage_plugins``):

- ``url`` (required): any URL the library takes (``redis://``, ``rediss://``, ``valkey://``, ``redis-cluster://``,
  ``redis+sentinel://host,host/SERVICE``, ``unix:///path``...), or LMCache's ``redis-sentinel://`` form.
- ``layout`` (default ``framed``): how chunks are stored. ``framed`` is this project's (one key per chunk, a
  checksummed header before the payload: a damaged or torn chunk is a miss, never returned); ``raw`` is what
  LMCache's ``valkey://`` and ``resp://`` connectors write (one key, the bare bytes of a full chunk);
  ``split:plain`` is what ``redis://`` / ``redis-cluster://`` / ``redis-sentinel://`` write (``K + "kv_bytes"`` and
  ``K + "metadata"``); ``split:hash_tagged`` and ``split:colon`` are the older connectors' namings.
- ``namespace`` (default none): a prefix before every key.
- ``threads`` (default 8): threads the connector's calls wait on (each call blocks one; the calls of all of them
  share the client's pipelines).
- any option of ``kvcache_redis.Client`` (``workers``, ``timeout``, ``read_from``, ``tls_ca``...), by its name.

LMCache's own connector keys in ``extra_config`` that mean the same are honoured (``valkey_num_workers``,
``valkey_username`` / ``redis_username``, ``valkey_password`` / ``redis_password``, ``valkey_database``,
``tls_enable`` / ``use_tls``, ``valkey_enable_ttl`` + ``valkey_ttl_sec``, ``request_timeout``,
``connection_timeout``, ``valkey_mode``, ...), as is the top-level ``blocking_timeout_secs``; keys this client does
not apply are reported as warnings (``Client.from_lmcache_config`` reads them).

Priorities follow LMCache's: contains and lookups PEEK, prefetches PREFETCH, loads GET, stores PUT. Loaded chunks
are read from the socket straight into the memory objects LMCache allocates; a chunk that is missing, damaged, of
the wrong size, or whose memory could not be allocated reads as a miss, and every memory object not returned is
released.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch
from lmcache.v1.memory_management import MemoryObj
from lmcache.v1.protocol import RemoteMetadata
from lmcache.v1.storage_backend.connector import ConnectorAdapter, ConnectorContext
from lmcache.v1.storage_backend.connector.base_connector import RemoteConnector

from . import BatchError, ChunkMeta, ChunkStore, Client, Error, Priority

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The layouts, as the ``layout`` setting names them.
LAYOUTS = ("framed", "raw", "split:plain", "split:hash_tagged", "split:colon")

#: LMCache's dtypes by the names the library's chunk metadata uses.
_DTYPE_NAMES = {
    torch.float16: "half",
    torch.bfloat16: "bfloat16",
    torch.float32: "float",
    torch.float64: "double",
    torch.uint8: "uint8",
    torch.float8_e4m3fn: "fp8_e4m3fn",
    torch.float8_e5m2: "fp8_e5m2",
}

#: What the plugin's own settings are called, beside the client options.
_OWN = ("module_path", "class_name", "url", "layout", "namespace", "threads")


class KVCacheAdapter(ConnectorAdapter):  # type: ignore[misc]
    """The adapter LMCache instantiates (``class_name: KVCacheAdapter``): it claims ``plugin://kvcache`` URLs (any
    instance name, ``kvcache`` or ``kvcache.<instance>``) and builds a :class:`KVCacheConnector`."""

    def __init__(self) -> None:
        super().__init__("plugin://kvcache")

    def create_connector(self, context: ConnectorContext) -> RemoteConnector:
        return KVCacheConnector(
            loop=context.loop,
            local_cpu_backend=context.local_cpu_backend,
            config=context.config,
            metadata=context.metadata,
            plugin_name=context.plugin_name or "kvcache",
        )


def _settings(extra: dict[str, Any], plugin_name: str) -> dict[str, Any]:
    prefix = f"remote_storage_plugin.{plugin_name}."
    return {k[len(prefix) :]: v for k, v in extra.items() if k.startswith(prefix)}


def _client(config: Any, settings: dict[str, Any], extra: dict[str, Any]) -> Client:
    """The client: the URL and LMCache's own keys read by the library's LMCache reader, the plugin's client options
    on top."""
    url = settings.get("url")
    if not isinstance(url, str) or not url:
        raise ValueError("the kvcache plugin needs remote_storage_plugin.<name>.url (e.g. redis://host:6379)")
    text: dict[str, Any] = {"remote_url": url}
    if getattr(config, "blocking_timeout_secs", None) is not None:
        text["blocking_timeout_secs"] = config.blocking_timeout_secs
    lmcache_keys = {k: v for k, v in extra.items() if not k.startswith("remote_storage_plugin.")}
    if lmcache_keys:
        text["extra_config"] = lmcache_keys
    options = {k: v for k, v in settings.items() if k not in _OWN}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = Client.from_lmcache_config(json.dumps(text), **options)
    for w in caught:
        logger.info("kvcache plugin: %s", w.message)
    return client


def _view(obj: MemoryObj) -> memoryview:
    """A memory object's bytes as a flat byte view."""
    data = obj.byte_array
    view = data if isinstance(data, memoryview) else memoryview(data)
    return view if view.format == "B" else view.cast("B")


class KVCacheConnector(RemoteConnector):  # type: ignore[misc]
    """LMCache's remote connector interface on a :class:`kvcache_redis.Client`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        local_cpu_backend: Any,
        config: Any,
        metadata: Any = None,
        plugin_name: str = "kvcache",
    ) -> None:
        metadata = metadata if metadata is not None else getattr(local_cpu_backend, "metadata", None)
        super().__init__(config, metadata)
        extra: dict[str, Any] = dict(config.extra_config or {})
        settings = _settings(extra, plugin_name)
        layout = str(settings.get("layout", "framed"))
        if layout not in LAYOUTS:
            raise ValueError(f"remote_storage_plugin.{plugin_name}.layout {layout!r}: one of {', '.join(LAYOUTS)}")
        if layout == "raw" and getattr(config, "save_unfull_chunk", False):
            raise ValueError(
                "the raw layout stores full chunks of one size (as LMCache's valkey:// and resp:// connectors do): "
                "set save_unfull_chunk: false, or use the framed layout"
            )
        self.layout = layout
        self.loop = loop
        self.local_cpu_backend = local_cpu_backend
        self.client = _client(config, settings, extra)
        namespace = str(settings.get("namespace", ""))
        if layout.startswith("split:"):
            naming = layout.split(":", 1)[1]
            self.store = ChunkStore(self.client, "split", naming=naming, namespace=namespace)  # type: ignore[arg-type]
        elif layout == "raw":
            self.store = ChunkStore(self.client, "raw", size=self.full_chunk_size_bytes, namespace=namespace)
        else:
            self.store = ChunkStore(self.client, "framed", namespace=namespace)
        self.namespace = namespace
        threads = int(settings.get("threads", 8))
        if threads < 1:
            raise ValueError(f"remote_storage_plugin.{plugin_name}.threads must be at least 1, not {threads}")
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="kvcache-lmcache")
        self._closed = threading.Event()
        logger.info("kvcache plugin %s: %r, layout %s", plugin_name, self.client, layout)

    # --- helpers ---------------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs a blocking call on the connector's threads, so the event loop never waits on the network."""
        return await self.loop.run_in_executor(self._pool, fn, *args)

    def _name(self, key: Any) -> str:
        return self.namespace + str(key.to_string())

    def _allocate(self) -> MemoryObj | None:
        try:
            obj: MemoryObj | None = self.local_cpu_backend.allocate(self.meta_shapes, self.meta_dtypes, self.meta_fmt)
        except Exception as e:
            logger.warning("kvcache plugin: allocation failed: %s", e)
            return None
        return obj

    def _finish(self, obj: MemoryObj, n: int | None) -> MemoryObj | None:
        """The memory object of a chunk read into it (`n` bytes), or `None` (and the object released)."""
        if n is None:
            obj.ref_count_down()
            return None
        try:
            return self.reshape_partial_chunk(obj, n)
        except ValueError as e:
            logger.warning("kvcache plugin: a stored chunk of %d bytes does not fit this model: %s", n, e)
            obj.ref_count_down()
            return None

    def _load(self, keys: Sequence[Any], priority: Priority) -> list[MemoryObj | None]:
        """Reads every chunk into a memory object of its own; a miss (or any failure) releases it."""
        if not keys:
            return []
        if self.layout.startswith("split:"):
            return self._load_split(keys, priority)
        objs = [self._allocate() for _ in keys]
        wanted = [i for i, o in enumerate(objs) if o is not None]
        results: list[Any] = [None] * len(keys)
        if wanted:
            # The store checks the layout (a framed chunk's checksum, a raw chunk's size) on the way in.
            names = [keys[i].to_string() for i in wanted]
            views = [_view(objs[i]) for i in wanted]
            got = self._read_into(self.store.batched_get_into, names, views, priority)
            for i, n in zip(wanted, got, strict=True):
                results[i] = n
        return [self._finish(o, n) if o is not None else None for o, n in zip(objs, results, strict=True)]

    def _read_into(
        self, reader: Callable[..., list[int | None]], names: list[str], views: list[memoryview], priority: Priority
    ) -> list[int | None]:
        """Lengths read into the views; failures are misses (logged)."""
        try:
            return reader(names, views, priority=priority)
        except BatchError as e:
            for i, err in e.errors.items():
                logger.warning("kvcache plugin: chunk %s read as a miss: %s", names[i], err)
            return [r if isinstance(r, int) and not isinstance(r, bool) else None for r in e.results]
        except Error as e:
            logger.warning("kvcache plugin: %d chunks read as misses: %s", len(names), e)
            return [None] * len(names)

    def _load_split(self, keys: Sequence[Any], priority: Priority) -> list[MemoryObj | None]:
        """Two keys per chunk: the metadata first (small, LMCache's `RemoteMetadata`), then the KV bytes straight into
        a memory object shaped as it says; both must agree."""
        pairs = [self.store.split_keys(k.to_string()) for k in keys]
        metas = self._get_values([m for _, m in pairs], priority)
        objs: list[MemoryObj | None] = []
        lengths: list[int] = []
        for raw in metas:
            meta = self._metadata(raw)
            obj = None
            if meta is not None:
                try:
                    obj = self.local_cpu_backend.allocate(meta.shapes, meta.dtypes, meta.fmt)
                except Exception as e:
                    logger.warning("kvcache plugin: allocation failed: %s", e)
            if obj is not None and meta is not None and meta.length > len(_view(obj)):
                obj.ref_count_down()
                obj = None
            objs.append(obj)
            lengths.append(meta.length if meta is not None else -1)
        wanted = [i for i, o in enumerate(objs) if o is not None]
        got: list[int | None] = []
        if wanted:
            kv_names = [pairs[i][0] for i in wanted]
            views = [_view(objs[i]) for i in wanted]
            got = self._read_into(self.client.batched_get_into, kv_names, views, priority)
        results: list[MemoryObj | None] = [None] * len(keys)
        for i, n in zip(wanted, got, strict=True):
            obj = objs[i]
            assert obj is not None
            # Metadata and bytes of one chunk must agree: kv_bytes without its metadata, or metadata left by an
            # evicted chunk, is a miss.
            results[i] = self._finish(obj, n if n is not None and n == lengths[i] else None)
        return results

    def _get_values(self, names: list[str], priority: Priority) -> list[bytes | None]:
        try:
            return self.client.batched_get(names, priority=priority)
        except BatchError as e:
            return [r if isinstance(r, bytes) else None for r in e.results]
        except Error as e:
            logger.warning("kvcache plugin: %d chunks read as misses: %s", len(names), e)
            return [None] * len(names)

    def _metadata(self, raw: bytes | None) -> RemoteMetadata | None:
        if raw is None or len(raw) != self.remote_metadata_bytes:
            return None
        try:
            return RemoteMetadata.deserialize(raw)
        except Exception as e:
            logger.warning("kvcache plugin: unreadable chunk metadata: %s", e)
            return None

    def _store(self, keys: Sequence[Any], objs: Sequence[MemoryObj]) -> None:
        """Writes every chunk from its memory object's bytes (lent, not copied); failures are logged."""
        if not keys:
            return
        views = [_view(o) for o in objs]
        try:
            if self.layout.startswith("split:"):
                self._store_split([k.to_string() for k in keys], objs, views)
            elif self.layout == "raw":
                full = [i for i, v in enumerate(views) if len(v) == self.full_chunk_size_bytes]
                if len(full) < len(views):
                    logger.warning("kvcache plugin: %d partial chunks not stored (raw layout)", len(views) - len(full))
                names = [self._name(keys[i]) for i in full]
                self.client.batched_put(names, [views[i] for i in full], priority=Priority.PUT)
            else:
                for meta, idx in self._by_meta(objs).items():
                    chunk_meta = ChunkMeta(*meta) if meta is not None else None
                    self.store.batched_put(
                        [k.to_string() for k in (keys[i] for i in idx)],
                        [views[i] for i in idx],
                        chunk_meta,
                        priority=Priority.PUT,
                    )
        except Error as e:
            logger.warning("kvcache plugin: storing %d chunks: %s", len(keys), e)

    def _by_meta(self, objs: Sequence[MemoryObj]) -> dict[tuple[int, str, tuple[int, ...]] | None, list[int]]:
        """Chunks grouped by the metadata the framed header records (one group of one known dtype; else none)."""
        groups: dict[tuple[int, str, tuple[int, ...]] | None, list[int]] = {}
        for i, o in enumerate(objs):
            shapes, dtypes = o.get_shapes(), o.get_dtypes()
            name = _DTYPE_NAMES.get(dtypes[0]) if len(dtypes) == 1 else None
            meta = None
            if name is not None and len(shapes[0]) <= 4:
                meta = (int(o.get_memory_format().value), name, tuple(int(d) for d in shapes[0]))
            groups.setdefault(meta, []).append(i)
        return groups

    def _store_split(self, keys: list[str], objs: Sequence[MemoryObj], views: list[memoryview]) -> None:
        pairs = [self.store.split_keys(k) for k in keys]
        metas = [
            RemoteMetadata(len(v), o.get_shapes(), o.get_dtypes(), o.get_memory_format()).serialize()
            for o, v in zip(objs, views, strict=True)
        ]
        # kv_bytes first, then the metadata that makes the chunk visible (as LMCache writes them).
        landed = self._put_each([kv for kv, _ in pairs], views)
        self._put_each([pairs[i][1] for i in landed], [metas[i] for i in landed])

    def _put_each(self, names: list[str], values: Sequence[Any]) -> list[int]:
        """Puts; the positions that landed."""
        if not names:
            return []
        try:
            self.client.batched_put(names, values, priority=Priority.PUT)
            return list(range(len(names)))
        except BatchError as e:
            for i, err in e.errors.items():
                logger.warning("kvcache plugin: storing %s: %s", names[i], err)
            return [i for i in range(len(names)) if i not in e.errors]

    # --- LMCache's remote connector interface ----------------------------------------------------------------

    async def exists(self, key: Any) -> bool:
        return await self._run(self.exists_sync, key)

    def exists_sync(self, key: Any) -> bool:
        return self.store.batched_contains([key.to_string()], priority=Priority.PEEK) == 1

    async def get(self, key: Any) -> MemoryObj | None:
        return (await self._run(self._load, [key], Priority.GET))[0]

    async def put(self, key: Any, memory_obj: MemoryObj) -> None:
        await self._run(self._store, [key], [memory_obj])

    def support_batched_get(self) -> bool:
        return True

    async def batched_get(self, keys: list[Any]) -> list[MemoryObj | None]:
        return await self._run(self._load, keys, Priority.GET)

    def support_batched_put(self) -> bool:
        return True

    async def batched_put(self, keys: list[Any], memory_objs: list[MemoryObj]) -> None:
        await self._run(self._store, keys, memory_objs)

    def support_batched_contains(self) -> bool:
        return True

    def batched_contains(self, keys: list[Any]) -> int:
        try:
            return self.store.batched_contains([k.to_string() for k in keys], priority=Priority.PEEK)
        except Error as e:
            logger.warning("kvcache plugin: contains of %d keys answered 0: %s", len(keys), e)
            return 0

    def support_batched_async_contains(self) -> bool:
        return True

    async def batched_async_contains(self, lookup_id: str, keys: list[Any], pin: bool = False) -> int:
        return await self._run(self.batched_contains, keys)

    def support_batched_get_non_blocking(self) -> bool:
        return True

    async def batched_get_non_blocking(self, lookup_id: str, keys: list[Any]) -> list[MemoryObj]:
        """The consecutive prefix of loaded chunks; every memory object after the first miss is released."""
        loaded = await self._run(self._load, keys, Priority.PREFETCH)
        prefix: list[MemoryObj] = []
        for i, obj in enumerate(loaded):
            if obj is None:
                for later in loaded[i + 1 :]:
                    if later is not None:
                        later.ref_count_down()
                break
            prefix.append(obj)
        return prefix

    def remove_sync(self, key: Any) -> bool:
        split = self.layout.startswith("split:")
        names = list(self.store.split_keys(key.to_string())) if split else [self._name(key)]
        return any(self.client.batched_remove(names, priority=Priority.PUT))

    def support_ping(self) -> bool:
        return True

    async def ping(self) -> int:
        try:
            await self._run(self.client.ping)
            return 0
        except Error as e:
            logger.warning("kvcache plugin: ping failed: %s", e)
            return 1

    async def list(self) -> list[str]:
        """Not offered: LMCache does not call it, and listing a shared cache means scanning every node."""
        return []

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        await self._run(self.client.close)
        self._pool.shutdown(wait=False)

    def __repr__(self) -> str:
        return f"<KVCacheConnector {self.layout} {self.client!r}>"


__all__ = ["LAYOUTS", "KVCacheAdapter", "KVCacheConnector"]
