"""The LMCache plugin, loaded through LMCache 0.5.6's own configuration and connector manager, against real
servers: Llama-3-8B-shaped chunks (256 tokens, bf16, KV_2LTD, 32 MiB) stored, loaded and compared with
`torch.equal`; misses, prefix counts, non-blocking loads, memory given back; every layout; the caches LMCache's own
connectors write, read both ways; a Cluster primary killed during loads.

Needs PyTorch and LMCache (scripts/test-lmcache.sh runs these in a cached environment that has them)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lmcache")

from lmcache.utils import CacheEngineKey  # noqa: E402
from lmcache.v1.config import LMCacheEngineConfig  # noqa: E402
from lmcache.v1.metadata import LMCacheMetadata  # noqa: E402
from lmcache.v1.storage_backend.connector import CreateConnector  # noqa: E402
from lmcache.v1.storage_backend.local_cpu_backend import LocalCPUBackend  # noqa: E402

from kvcache_redis.lmcache import KVCacheConnector  # noqa: E402

from .conftest import Deployment, Deployments, start  # noqa: E402

MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
#: Llama-3-8B: 32 layers, 8 KV heads of 128, bf16; a chunk of 256 tokens is [2, 32, 256, 1024] = 32 MiB.
KV_SHAPE = (32, 2, 256, 8, 128)
PLUGIN = {
    "remote_storage_plugin.kvcache.module_path": "kvcache_redis.lmcache",
    "remote_storage_plugin.kvcache.class_name": "KVCacheAdapter",
}


class Engine:
    """What LMCache gives a connector: its config, metadata, CPU memory (the allocator chunks are loaded into) and
    event loop."""

    def __init__(self, extra: dict[str, Any], save_unfull_chunk: bool = False) -> None:
        self.config = LMCacheEngineConfig.from_dict(
            {
                "chunk_size": 256,
                "local_cpu": True,
                "max_local_cpu_size": 1.0,
                "remote_serde": "naive",
                "save_unfull_chunk": save_unfull_chunk,
                "remote_storage_plugins": ["kvcache"],
                "extra_config": extra,
            }
        )
        self.metadata = LMCacheMetadata(
            model_name=MODEL,
            world_size=1,
            local_world_size=1,
            worker_id=0,
            local_worker_id=0,
            kv_dtype=torch.bfloat16,
            kv_shape=KV_SHAPE,
        )
        self.backend = LocalCPUBackend(self.config, self.metadata)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def connector(self, url: str = "plugin://kvcache") -> Any:
        """A connector as LMCache makes one (through its connector manager and plugin framework)."""
        name = "kvcache" if url.startswith("plugin://") else None
        return CreateConnector(url, self.loop, self.backend, self.config, self.metadata, plugin_name=name)

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def in_use(self) -> int:
        """Bytes of CPU memory objects allocated and not released."""
        return int(self.backend.memory_allocator.pin_allocator.address_manager.total_allocated_size)

    def chunk(self, i: int, tokens: int = 256) -> Any:
        """A memory object holding chunk `i`'s (deterministic) KV tensor; `tokens` < 256 makes a partial chunk."""
        shape = torch.Size([2, 32, tokens, 1024])
        obj = self.backend.allocate([shape], [torch.bfloat16], None)
        assert obj is not None, "out of CPU memory"
        n = obj.tensor.numel()
        obj.tensor.copy_(((torch.arange(n, dtype=torch.int64) * 7 + i * 13) % 1021).reshape(shape).to(torch.bfloat16))
        return obj

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.backend.close()  # its CPU arena: without this, every engine of the session would keep its own


def key(i: int) -> Any:
    return CacheEngineKey(MODEL, 1, 0, 0x1000 + i, torch.bfloat16)


@pytest.fixture
def engine_for(deployment: Deployment) -> Iterator[Callable[..., Engine]]:
    made: list[Engine] = []

    def make(layout: str = "framed", save_unfull_chunk: bool = False, **extra: Any) -> Engine:
        settings = {**PLUGIN, "remote_storage_plugin.kvcache.url": deployment.url}
        settings["remote_storage_plugin.kvcache.layout"] = layout
        settings["remote_storage_plugin.kvcache.namespace"] = f"t{len(made)}:{os.getpid()}:{time.monotonic_ns()}:"
        engine = Engine({**settings, **extra}, save_unfull_chunk)
        made.append(engine)
        return engine

    yield make
    for e in made:
        e.close()


def put(engine: Engine, conn: Any, keys: list[Any], ids: list[int]) -> list[Any]:
    """Stores chunks `ids` under `keys`; the tensors written (the connector releases the objects, as LMCache's
    backend expects)."""
    objs = [engine.chunk(i) for i in ids]
    tensors = [o.tensor.clone() for o in objs]
    engine.run(conn.batched_put(keys, objs))
    return tensors


def test_the_plugin_loads_through_lmcaches_config(engine_for: Callable[..., Engine]) -> None:
    engine = engine_for()
    conn = engine.connector()
    inner = conn._connector
    assert isinstance(inner, KVCacheConnector), type(inner)
    for flag in ["ping", "batched_get", "batched_put", "batched_async_contains", "batched_get_non_blocking"]:
        assert getattr(conn, f"support_{flag}")(), flag
    assert inner.support_batched_contains()
    assert engine.run(conn.ping()) == 0
    engine.run(conn.close())


@pytest.mark.parametrize("layout", ["framed", "raw", "split:plain", "split:hash_tagged", "split:colon"])
def test_llama_chunks_round_trip_with_lmcaches_contract(engine_for: Callable[..., Engine], layout: str) -> None:
    engine = engine_for(layout)
    conn = engine.connector()
    keys = [key(i) for i in range(6)]
    base = engine.in_use()
    tensors = put(engine, conn, keys[:3] + keys[4:], [0, 1, 2, 4, 5])
    assert engine.in_use() == base, "written objects released"
    assert conn._connector.batched_contains(keys) == 3
    assert engine.run(conn.batched_async_contains("lookup", keys)) == 3
    assert engine.run(conn.exists(keys[0])) and not conn.exists_sync(keys[3])
    got = engine.run(conn.batched_get(keys))
    assert [g is None for g in got] == [False, False, False, True, False, False], "positional misses"
    for g, t in zip([got[0], got[1], got[2], got[4], got[5]], tensors, strict=True):
        assert g.get_shapes() == [torch.Size([2, 32, 256, 1024])] and torch.equal(g.tensor, t)
        g.ref_count_down()
    assert engine.in_use() == base
    one = engine.run(conn.get(keys[1]))
    assert torch.equal(one.tensor, tensors[1])
    one.ref_count_down()
    assert engine.run(conn.get(keys[3])) is None
    prefix = engine.run(conn.batched_get_non_blocking("lookup", keys))
    assert len(prefix) == 3 and all(torch.equal(p.tensor, t) for p, t in zip(prefix, tensors, strict=False))
    for p in prefix:
        p.ref_count_down()
    assert engine.in_use() == base, "everything after the first miss was released"
    assert conn._connector.remove_sync(keys[0]) and not conn.exists_sync(keys[0])
    engine.run(conn.close())


def test_misses_and_damaged_chunks_give_their_memory_back(
    engine_for: Callable[..., Engine], deployment: Deployment
) -> None:
    redis = pytest.importorskip("redis")
    engine = engine_for("framed")
    conn = engine.connector()
    keys = [key(i) for i in range(4)]
    put(engine, conn, keys, [0, 1, 2, 3])
    inner = conn._connector
    admin = (redis.RedisCluster if deployment.topology == "cluster" else redis.Redis).from_url(deployment.url)
    names = [inner.store.store_key(k.to_string()) for k in keys]
    good = admin.get(names[0])
    damaged = bytearray(good)
    damaged[1000] ^= 0xFF
    admin.set(names[1], bytes(damaged))  # a flipped payload byte
    admin.set(names[2], good[: len(good) // 2])  # torn
    admin.set(names[3], b"not a chunk at all")
    admin.close()
    base = engine.in_use()
    for _ in range(3):
        got = engine.run(conn.batched_get([*keys, key(99)]))
        assert got[0] is not None and all(g is None for g in got[1:]), "damaged chunks are misses"
        got[0].ref_count_down()
        assert engine.in_use() == base, "every object of a miss released"
    prefix = engine.run(conn.batched_get_non_blocking("l", keys))
    assert len(prefix) == 1, "the prefix stops at the first damaged chunk"
    prefix[0].ref_count_down()
    assert engine.in_use() == base
    assert engine.run(conn.batched_async_contains("l", keys)) == 4, "presence alone cannot tell"


def test_a_partial_chunk_comes_back_reshaped(engine_for: Callable[..., Engine]) -> None:
    engine = engine_for("framed", save_unfull_chunk=True)
    conn = engine.connector()
    k = key(7)
    obj = engine.chunk(7, tokens=100)
    expected = obj.tensor.clone()
    engine.run(conn.batched_put([k], [obj]))
    got = engine.run(conn.get(k))
    assert got is not None and got.tensor.shape == torch.Size([2, 32, 100, 1024])
    assert torch.equal(got.tensor, expected)
    got.ref_count_down()


def test_bad_plugin_settings_say_what_is_wrong(
    engine_for: Callable[..., Engine], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError, match="layout"):
        KVCacheConnector(**_ctx(engine_for("zip")))
    with pytest.raises(ValueError, match="save_unfull_chunk"):
        KVCacheConnector(**_ctx(engine_for("raw", save_unfull_chunk=True)))
    engine = engine_for()
    del engine.config.extra_config["remote_storage_plugin.kvcache.url"]
    with pytest.raises(ValueError, match="url"):
        KVCacheConnector(**_ctx(engine))
    # LMCache's own keys are honoured; the ones this client does not apply are said, not ignored.
    with caplog.at_level(logging.INFO, logger="kvcache_redis.lmcache"):
        engine = engine_for(max_connections=150, valkey_num_workers=2, request_timeout=3.0)
        KVCacheConnector(**_ctx(engine)).client.close()
    assert "max_connections" in caplog.text
    with pytest.raises(Exception, match="colour"):
        KVCacheConnector(**_ctx(engine_for(**{"remote_storage_plugin.kvcache.colour": "blue"})))


def _ctx(engine: Engine) -> dict[str, Any]:
    return {
        "loop": engine.loop,
        "local_cpu_backend": engine.backend,
        "config": engine.config,
        "metadata": engine.metadata,
    }


# --- the caches LMCache's own connectors write -------------------------------------------------------------


def _theirs(deployment: Deployment, scheme: str) -> str:
    hosts = [n.addr for n in deployment.nodes if n.role == "primary"]
    if scheme == "redis-cluster":
        return "redis-cluster://" + ",".join(hosts)
    return f"{scheme}://{hosts[0]}"


@pytest.mark.parametrize(
    ("scheme", "layout"),
    [("redis", "split:plain"), ("valkey", "raw"), ("resp", "raw"), ("redis-cluster", "split:plain")],
)
def test_interop_with_lmcaches_connectors(deployments: Deployments, kind: str, scheme: str, layout: str) -> None:
    topology = "cluster" if scheme == "redis-cluster" else "standalone"
    deployment = deployments.get(kind, topology)
    extra = {
        **PLUGIN,
        "remote_storage_plugin.kvcache.url": deployment.url,
        "remote_storage_plugin.kvcache.layout": layout,
        "save_chunk_meta": False,
    }
    engine = Engine(extra)
    try:
        ours, theirs = engine.connector(), engine.connector(_theirs(deployment, scheme))
        salt = time.monotonic_ns() % 100_000 * 10
        written_by_them = [key(salt + i) for i in range(3)]
        written_by_us = [key(salt + 100 + i) for i in range(3)]
        t_them = put(engine, theirs, written_by_them, [1, 2, 3])
        t_us = put(engine, ours, written_by_us, [4, 5, 6])
        got = engine.run(ours.batched_get(written_by_them))
        assert all(g is not None and torch.equal(g.tensor, t) for g, t in zip(got, t_them, strict=True))
        for g in got:
            g.ref_count_down()
        for k, t in zip(written_by_us, t_us, strict=True):
            g = engine.run(theirs.get(k))
            assert g is not None and torch.equal(g.tensor, t), f"{scheme} read what the plugin wrote"
            g.ref_count_down()
        assert ours._connector.batched_contains(written_by_them) == 3
        engine.run(ours.close())
        # LMCache's RedisConnector.close() does not return (its executor waits for itself): not awaited here.
    finally:
        engine.close()


@pytest.mark.parametrize("topology", ["sentinel", "tls"])
def test_sentinel_and_tls_deployments(deployments: Deployments, kind: str, topology: str) -> None:
    """The plugin on a Sentinel-managed primary (reading from its replicas) and over TLS: URLs as the library takes
    them, chunks stored and loaded whole."""
    if topology == "tls" and kind != "redis":
        pytest.skip("the Valkey build here has no TLS")
    d = deployments.get(kind, topology)
    extra = {**PLUGIN, "remote_storage_plugin.kvcache.url": d.url}
    if topology == "sentinel":
        extra["remote_storage_plugin.kvcache.read_from"] = "spread"
    engine = Engine(extra)
    try:
        conn = engine.connector()
        keys = [key(time.monotonic_ns() % 1_000_000 + i) for i in range(3)]
        tensors = put(engine, conn, keys, [1, 2, 3])
        deadline = time.monotonic() + 5
        while True:  # replicas follow their primary a moment later
            got = engine.run(conn.batched_get(keys))
            if all(g is not None for g in got) or time.monotonic() > deadline:
                break
            for g in got:
                if g is not None:
                    g.ref_count_down()
            time.sleep(0.05)
        assert all(g is not None and torch.equal(g.tensor, t) for g, t in zip(got, tensors, strict=True))
        for g in got:
            g.ref_count_down()
        engine.run(conn.close())
    finally:
        engine.close()


def test_a_cluster_primary_killed_during_loads(kind: str) -> None:
    """Loads during a primary's death: misses or a short wait, never a hung engine, and the other shards' chunks
    keep loading."""
    cluster = start(kind, "cluster")
    try:
        extra = {
            **PLUGIN,
            "remote_storage_plugin.kvcache.url": cluster.url,
            "remote_storage_plugin.kvcache.timeout": 2.0,
        }
        engine = Engine(extra)
        conn = engine.connector()
        keys = [key(i) for i in range(12)]
        tensors = put(engine, conn, keys, list(range(12)))
        victim = next(n for n in cluster.nodes if n.role == "primary")
        os.kill(victim.pid, signal.SIGKILL)
        hits, slowest = 0, 0.0
        for _ in range(6):
            started = time.monotonic()
            got = engine.run(conn.batched_get(keys), timeout=30)
            slowest = max(slowest, time.monotonic() - started)
            for g, t in zip(got, tensors, strict=True):
                if g is not None:
                    assert torch.equal(g.tensor, t), "never a wrong chunk"
                    hits += 1
                    g.ref_count_down()
        assert slowest < 10, f"a load took {slowest:.1f} s"
        assert hits > 0, "the other shards' chunks kept loading"
        engine.run(conn.close())
        engine.close()
    finally:
        cluster.stop()
