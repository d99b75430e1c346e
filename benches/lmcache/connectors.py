"""One LMCache remote connector on one workload, in a process of its own, driven through LMCache's remote-connector
interface as LMCache's remote backend drives it (coroutines on an event loop thread); prints one line of JSON.

    python connectors.py CLIENT ROW URL REPS

CLIENT: kvcache (the plugin, framed layout), kvcache-raw (the plugin, raw layout), redis, valkey, resp,
redis-cluster (LMCache's own, driven as LMCache's remote backend drives them: batched calls where the connector
offers them, else one call per key, gathered). ROW: get8, put8, get32, put32 (chunks of 32 MiB, Llama-3-8B's),
get1000 (1000 chunks of 16 KiB), contains1000. The read rows read what `seed` wrote, in each client's layout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from typing import Any

import torch
from lmcache.utils import CacheEngineKey
from lmcache.v1.config import LMCacheEngineConfig
from lmcache.v1.metadata import LMCacheMetadata
from lmcache.v1.storage_backend.connector import CreateConnector
from lmcache.v1.storage_backend.local_cpu_backend import LocalCPUBackend

MODEL = "bench/Meta-Llama-3-8B"
BIG = (32, 2, 256, 8, 128)  # 32 MiB chunks
SMALL = (1, 2, 256, 1, 16)  # 16 KiB chunks
ROWS = {"get8": (BIG, 8), "put8": (BIG, 8), "get32": (BIG, 32), "put32": (BIG, 32), "get1000": (SMALL, 1000)}
ROWS["contains1000"] = (SMALL, 1000)


def layout_of(client: str) -> str:
    return {"kvcache": "framed", "kvcache-raw": "raw"}.get(client, "raw")


def engine(shape: tuple[int, ...], url: str, client: str, chunks: int) -> tuple[Any, Any, Any]:
    chunk_bytes = 2 * shape[0] * shape[2] * shape[3] * shape[4] * 2
    extra = {
        "remote_storage_plugin.kvcache.module_path": "kvcache_redis.lmcache",
        "remote_storage_plugin.kvcache.class_name": "KVCacheAdapter",
        "remote_storage_plugin.kvcache.url": url,
        "remote_storage_plugin.kvcache.layout": layout_of(client),
        "save_chunk_meta": False,
    }
    gib = max(1.0, 2.2 * chunks * chunk_bytes / (1 << 30))
    config = LMCacheEngineConfig.from_dict(
        {
            "chunk_size": 256,
            "local_cpu": True,
            "max_local_cpu_size": gib,
            "remote_serde": "naive",
            "save_unfull_chunk": False,
            "remote_storage_plugins": ["kvcache"],
            "extra_config": extra,
        }
    )
    metadata = LMCacheMetadata(
        model_name=MODEL,
        world_size=1,
        local_world_size=1,
        worker_id=0,
        local_worker_id=0,
        kv_dtype=torch.bfloat16,
        kv_shape=shape,
    )
    return config, metadata, LocalCPUBackend(config, metadata)


def tensor(i: int, shape: torch.Size) -> torch.Tensor:
    n = shape.numel()
    return ((torch.arange(n, dtype=torch.int64) * 7 + i * 13) % 1021).reshape(shape).to(torch.bfloat16)


def key(i: int, tag: str) -> Any:
    return CacheEngineKey(f"{MODEL}-{tag}", 1, 0, 0x10000 + i, torch.bfloat16)


def run(client: str, row: str, url: str, reps: int) -> dict[str, Any]:
    shape, n = ROWS[row]
    config, metadata, backend = engine(shape, url, client, n)
    full = metadata.get_shapes()[0]
    tag = f"{layout_of(client)}-{row.rstrip('0123456789')}{n}"
    keys = [key(i, tag) for i in range(n)]
    expected = [tensor(i, full) for i in range(n)]
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def call(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(600)

    scheme = "plugin://kvcache" if client.startswith("kvcache") else f"{client}://{url.split('://')[1]}"
    name = "kvcache" if client.startswith("kvcache") else None

    async def make() -> Any:
        # Made on the loop's thread, as LMCache makes them (a connector may register with the running loop).
        return CreateConnector(scheme, loop, backend, config, metadata, plugin_name=name)

    conn = call(make())

    def get_all(ks: list[Any]) -> list[Any]:
        if conn.support_batched_get():
            return list(call(conn.batched_get(ks)))

        async def each() -> list[Any]:
            return list(await asyncio.gather(*(conn.get(k) for k in ks)))

        return call(each())

    def put_all(ks: list[Any], objs: list[Any]) -> None:
        if conn.support_batched_put():
            call(conn.batched_put(ks, objs))
            return

        async def each() -> None:
            await asyncio.gather(*(conn.put(k, o) for k, o in zip(ks, objs, strict=True)))

        call(each())

    def objs() -> list[Any]:
        out = []
        for t in expected:
            o = backend.allocate([full], [torch.bfloat16], None)
            o.tensor.copy_(t)
            out.append(o)
        return out

    secs: list[float] = []
    cpus: list[float] = []
    checked = 0
    if not row.startswith("put"):
        # The chunks to read, written first by the same client, in its own layout (not timed).
        put_all(keys, objs())
    for rep in range(reps + 1):
        if row.startswith("put"):
            sources = objs()
            c0, t0 = time.process_time(), time.perf_counter()
            put_all(keys, sources)
            t1, c1 = time.perf_counter(), time.process_time()
        elif row.startswith("contains"):
            c0, t0 = time.process_time(), time.perf_counter()
            hits = call(conn.batched_async_contains("bench", keys))
            t1, c1 = time.perf_counter(), time.process_time()
            assert hits == n, f"{hits} of {n} present"
        else:
            c0, t0 = time.process_time(), time.perf_counter()
            got = get_all(keys)
            t1, c1 = time.perf_counter(), time.process_time()
            for g, e in zip(got, expected, strict=True):
                assert g is not None and torch.equal(g.tensor, e), "a chunk came back wrong"
                g.ref_count_down()
                checked += 1
        if row.startswith("put"):
            # Every chunk written is read back and compared (not timed).
            back = get_all(keys)
            for g, e in zip(back, expected, strict=True):
                assert g is not None and torch.equal(g.tensor, e), "a chunk was stored wrong"
                g.ref_count_down()
                checked += 1
        if rep:
            secs.append(t1 - t0)
            cpus.append(c1 - c0)

    chunk_bytes = expected[0].numel() * 2
    return {"secs": secs, "cpu": cpus, "bytes": n * chunk_bytes, "ops": n, "checked": checked}


if __name__ == "__main__":
    client, row, url, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    try:
        out = run(client, row, url, reps)
    except Exception as e:  # noqa: BLE001 (reported as the row's result)
        out = {"error": repr(e)[:300]}
    print(json.dumps({"client": client, "row": row, **out}), flush=True)
    os._exit(0)
