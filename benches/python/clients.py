"""One client on one workload, in a process of its own; prints one line of JSON (times, CPU, values checked).

    python clients.py CLIENT ROW URL REPS

CLIENT: kvcache (this package), redis-py, redis-py-mget, glide, glide-x8 (LMCache's way: 8 threads, a glide client
each, one key per call, reads into buffers). ROW: read8x32, write8x32, read1000x4k (values as bytes),
read1000x4k_into (into slices of one preallocated slab), threads16x4k. The data the
read rows need is written by run.py beforehand; values are `value(i, size)` below, the same as the Rust runner's.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

MIB = 1 << 20
BIG, SMALL = 32 * MIB, 4096
THREADS, PER_THREAD = 16, 1500


def value(i: int, size: int) -> np.ndarray:
    """Value `i`: byte j = (131 j + 17 i) mod 256 (benches/python/rust_rows.rs writes the same)."""
    j = np.arange(size, dtype=np.uint64)
    return ((131 * j + 17 * i) % 256).astype(np.uint8)


def big_keys(row: str, client: str) -> list[str]:
    return [f"pybench:w:{client}:{i}" if row == "write8x32" else f"pybench:big:{i}" for i in range(8)]


SMALL_KEYS = [f"pybench:small:{i}" for i in range(1000)]


def cpu() -> float:
    """CPU seconds of this process, all threads (CLOCK_PROCESS_CPUTIME_ID, as the Rust runner reads it)."""
    return time.process_time()


class Fail(Exception):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise Fail(what)


# --- the clients: each returns the functions of the rows it runs ------------------------------------------------


def host_port(url: str) -> tuple[str, int]:
    hp = url.split("://", 1)[1].split("/")[0].split("?")[0]
    host, port = hp.rsplit(":", 1)
    return host, int(port)


def kvcache(url: str) -> dict[str, Callable[..., Any]]:
    import kvcache_redis

    c = kvcache_redis.Client(url)
    return {
        "read_into": lambda keys, bufs: c.batched_get_into(keys, bufs),
        "write": lambda keys, vals: c.batched_put(keys, vals),
        "mget": lambda keys: c.batched_get(keys),
        "get": lambda key: c.get(key),
    }


def redis_py(url: str, mget: bool) -> dict[str, Callable[..., Any]]:
    import redis

    r = redis.Redis.from_url(url, max_connections=64)

    def fetch(keys: list[str]) -> list[bytes | None]:
        if mget:
            return r.mget(keys)  # type: ignore[no-any-return]
        p = r.pipeline(transaction=False)
        for k in keys:
            p.get(k)
        return p.execute()  # type: ignore[no-any-return]

    def read_into(keys: list[str], bufs: list[np.ndarray]) -> list[int]:
        got = fetch(keys)
        for b, v in zip(bufs, got, strict=True):
            assert v is not None
            b[: len(v)] = np.frombuffer(v, dtype=np.uint8)
        return [len(v) for v in got if v is not None]

    def write(keys: list[str], vals: list[np.ndarray]) -> None:
        if mget:
            r.mset({k: v.data for k, v in zip(keys, vals, strict=True)})
            return
        p = r.pipeline(transaction=False)
        for k, v in zip(keys, vals, strict=True):
            p.set(k, v.data)
        p.execute()

    return {"read_into": read_into, "write": write, "mget": fetch, "get": lambda key: r.get(key)}


def glide(url: str, threads: int) -> dict[str, Callable[..., Any]]:
    import glide_sync

    host, port = host_port(url)

    def make() -> Any:
        config = glide_sync.GlideClientConfiguration([glide_sync.NodeAddress(host, port)], request_timeout=30_000)
        return glide_sync.GlideClient.create(config)

    shared = make()
    local = threading.local()

    def own() -> Any:
        if not hasattr(local, "client"):
            local.client = make()
        return local.client

    pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def read_into(keys: list[str], bufs: list[np.ndarray]) -> list[int]:
        if pool is None:
            return [int(n) for n in shared.mget(keys, buffers=[memoryview(b) for b in bufs])]
        futures = [pool.submit(lambda k, b: own().get(k, buffer=memoryview(b)), k, b) for k, b in zip(keys, bufs)]
        return [int(f.result()) for f in futures]

    def write(keys: list[str], vals: list[np.ndarray]) -> None:
        if pool is None:
            shared.mset({k: v.data for k, v in zip(keys, vals, strict=True)})
            return
        for f in [pool.submit(lambda k, v: own().set(k, v.data), k, v) for k, v in zip(keys, vals)]:
            f.result()

    def mget(keys: list[str]) -> list[bytes | None]:
        if pool is None:
            return shared.mget(keys)  # type: ignore[no-any-return]
        futures = [pool.submit(lambda k: own().get(k), k) for k in keys]
        return [f.result() for f in futures]

    return {"read_into": read_into, "write": write, "mget": mget, "get": lambda key: shared.get(key)}


CLIENTS: dict[str, Callable[[str], dict[str, Callable[..., Any]]]] = {
    "kvcache": kvcache,
    "redis-py": lambda url: redis_py(url, mget=False),
    "redis-py-mget": lambda url: redis_py(url, mget=True),
    "glide": lambda url: glide(url, threads=1),
    "glide-x8": lambda url: glide(url, threads=8),
}


# --- the rows ----------------------------------------------------------------------------------------------------


def run(client_name: str, row: str, url: str, reps: int) -> dict[str, Any]:
    ops = CLIENTS[client_name](url)
    secs: list[float] = []
    cpus: list[float] = []
    checked = 0
    if row in ("read8x32", "write8x32"):
        keys = big_keys(row, client_name)
        expected = [value(i, BIG) for i in range(8)]
        bufs = [np.zeros(BIG, dtype=np.uint8) for _ in range(8)]
        for rep in range(reps + 1):  # the first is a warm-up
            for b in bufs:
                b.fill(0)
            c0, t0 = cpu(), time.perf_counter()
            if row == "read8x32":
                got = ops["read_into"](keys, bufs)
            else:
                ops["write"](keys, expected)
            t1, c1 = time.perf_counter(), cpu()
            if row == "write8x32":
                got = ops["read_into"](keys, bufs)
            check([int(n) for n in got] == [BIG] * 8, f"lengths {got}")
            for i in range(8):
                check(np.array_equal(bufs[i], expected[i]), f"value {i}")
                checked += 1
            if rep:
                secs.append(t1 - t0)
                cpus.append(c1 - c0)
        return {"secs": secs, "cpu": cpus, "bytes": 8 * BIG, "ops": 8, "checked": checked}
    expected_small = [value(i, SMALL).tobytes() for i in range(1000)]
    if row == "read1000x4k_into":
        slab = np.zeros(1000 * SMALL, dtype=np.uint8)
        views = [slab[i * SMALL : (i + 1) * SMALL] for i in range(1000)]
        whole = np.concatenate([value(i, SMALL) for i in range(1000)])
        for rep in range(reps + 1):
            slab.fill(0)
            c0, t0 = cpu(), time.perf_counter()
            got = ops["read_into"](SMALL_KEYS, views)
            t1, c1 = time.perf_counter(), cpu()
            check([int(n) for n in got] == [SMALL] * 1000, "lengths")
            check(np.array_equal(slab, whole), "values")
            checked += 1000
            if rep:
                secs.append(t1 - t0)
                cpus.append(c1 - c0)
        return {"secs": secs, "cpu": cpus, "bytes": 1000 * SMALL, "ops": 1000, "checked": checked}
    if row == "read1000x4k":
        for rep in range(reps + 1):
            c0, t0 = cpu(), time.perf_counter()
            got = ops["mget"](SMALL_KEYS)
            t1, c1 = time.perf_counter(), cpu()
            check(list(got) == expected_small, "values")
            checked += 1000
            if rep:
                secs.append(t1 - t0)
                cpus.append(c1 - c0)
        return {"secs": secs, "cpu": cpus, "bytes": 1000 * SMALL, "ops": 1000, "checked": checked}
    if row == "threads16x4k":
        get = ops["get"]
        errors: list[str] = []

        def worker(t: int) -> None:
            for k in range(PER_THREAD):
                i = (t * 131 + k * 7) % 1000
                if get(SMALL_KEYS[i]) != expected_small[i]:
                    errors.append(f"thread {t} key {i}")

        for rep in range(reps + 1):
            threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
            c0, t0 = cpu(), time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            t1, c1 = time.perf_counter(), cpu()
            check(not errors, f"{len(errors)} wrong values, first {errors[:1]}")
            checked += THREADS * PER_THREAD
            if rep:
                secs.append(t1 - t0)
                cpus.append(c1 - c0)
        n = THREADS * PER_THREAD
        return {"secs": secs, "cpu": cpus, "bytes": n * SMALL, "ops": n, "checked": checked}
    raise SystemExit(f"unknown row {row!r}")


if __name__ == "__main__":
    client_name, row, url, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    try:
        out = run(client_name, row, url, reps)
    except Fail as e:
        out = {"error": f"wrong value: {e}"}
    except Exception as e:  # noqa: BLE001 (reported as the row's result)
        out = {"error": repr(e)}
    print(json.dumps({"client": client_name, "row": row, **out}), flush=True)
    sys.stdout.flush()
    import os

    os._exit(0)  # skip interpreter teardown of the clients' threads
