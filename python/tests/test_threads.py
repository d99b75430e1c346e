"""Many Python threads on one client: every value checked, calls from different threads sharing round trips, and
the GIL released while a call waits or copies."""

from __future__ import annotations

import threading
import time

import pytest

from kvcache_redis import Client

from .conftest import Deployment, value_of


def test_sixteen_threads_every_value_checked(client: Client, prefix: str) -> None:
    keys = [f"{prefix}{i}" for i in range(256)]
    values = [value_of(prefix, i, 64 + (i * 37) % 5000) for i in range(256)]
    client.batched_put(keys, values)
    errors: list[str] = []
    calls = [0] * 16

    def worker(t: int) -> None:
        for round_ in range(150):
            i = (t * 131 + round_ * 17) % 256
            try:
                if round_ % 10 == 0:
                    got = client.batched_get([keys[i], prefix + "missing", keys[(i + 1) % 256]])
                    if got != [values[i], None, values[(i + 1) % 256]]:
                        errors.append(f"thread {t} batch {i}: wrong values")
                elif round_ % 10 == 1:
                    new = value_of(f"{prefix}t{t}", round_, 100)
                    client.put(f"{prefix}t{t}", new)
                    if client.get(f"{prefix}t{t}") != new:
                        errors.append(f"thread {t}: read its own write wrong")
                elif client.get(keys[i]) != values[i]:
                    errors.append(f"thread {t} key {i}: wrong value")
                calls[t] += 1
            except Exception as e:
                errors.append(f"thread {t}: {e!r}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert errors == []
    assert sum(calls) == 16 * 150


def test_calls_from_many_threads_share_round_trips(standalone: Deployment, prefix: str) -> None:
    """Single gets from 16 threads ride in shared pipelines (fewer round trips than calls), as Rust threads do."""
    with standalone.client(workers=1) as client:
        client.put(prefix + "k", b"v" * 64)
        before = client.stats()
        n = 200

        def worker() -> None:
            for _ in range(n):
                assert client.get(prefix + "k") == b"v" * 64

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        after = client.stats()
        calls = after["requests"]["get"] - before["requests"]["get"]
        trips = after["round_trips"] - before["round_trips"]
        assert calls == 16 * n
        assert trips < calls, f"{calls} calls in {trips} round trips: no call shared one"


def test_the_gil_is_released_while_a_large_read_is_in_flight(standalone: Deployment, prefix: str) -> None:
    np = pytest.importorskip("numpy")
    with standalone.client() as client:
        keys = [f"{prefix}{i}" for i in range(8)]
        payload = np.frombuffer(value_of(prefix, 0, 32 << 20), dtype=np.uint8)
        client.batched_put(keys, [payload] * 8)
        buffers = [np.empty(32 << 20, dtype=np.uint8) for _ in range(8)]
        ticks = 0
        running = True

        def counter() -> None:
            nonlocal ticks
            while running:
                ticks += 1

        for read in ("into", "bytes"):
            th = threading.Thread(target=counter)
            running, ticks = True, 0
            th.start()
            time.sleep(0.05)
            start_ticks, started = ticks, time.monotonic()
            if read == "into":
                assert client.batched_get_into(keys, buffers) == [32 << 20] * 8
            else:
                got = client.batched_get(keys)
                assert all(g is not None and len(g) == 32 << 20 for g in got)
            took = time.monotonic() - started
            during = ticks - start_ticks
            running = False
            th.join()
            assert all(bytes(b[:64]) == payload[:64].tobytes() for b in buffers)
            # A pure-Python loop makes millions of ticks a second when it has the GIL; with the GIL held by the
            # call for its whole duration it would make none.
            assert during > 50_000 * took, f"{read}: {during} ticks in {took:.3f} s"
