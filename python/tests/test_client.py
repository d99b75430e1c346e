"""Every call of the client against real Redis 7 and Valkey 9 servers, standalone and as a 3+3 Cluster."""

from __future__ import annotations

import pytest

import kvcache_redis
from kvcache_redis import Client, Priority

from .conftest import Deployment, value_of


def test_single_key_calls(client: Client, prefix: str) -> None:
    key = prefix + "a"
    assert client.get(key) is None
    assert client.exists(key) is False
    client.put(key, b"hello")
    assert client.get(key) == b"hello"
    assert client.exists(key) is True
    client.put(key, bytearray(b"again"))
    assert client.get(key) == b"again"
    assert client.remove(key) is True
    assert client.remove(key) is False
    assert client.get(key) is None
    # Binary keys (not UTF-8, CR/LF inside), a str key with non-ASCII text, an empty value.
    binary = prefix.encode() + b"\xff\x00\r\n\xfe"
    client.put(binary, b"")
    assert client.get(binary) == b""
    assert client.get(memoryview(binary)) == b""
    text = prefix + "clé-日本"
    client.put(text, b"utf8")
    assert client.get(text.encode()) == b"utf8"
    client.ping()


def test_batched_get_is_positional(client: Client, prefix: str) -> None:
    keys = [f"{prefix}{i}" for i in range(40)]
    values = [value_of(prefix, i, 100 + i) for i in range(40)]
    client.batched_put(keys, values)
    missing = prefix + "missing"
    ask = [keys[3], missing, keys[0], keys[3], missing, keys[39]]
    assert client.batched_get(ask) == [values[3], None, values[0], values[3], None, values[39]]
    assert client.batched_get(keys) == values
    assert client.batched_get(iter(keys[:2])) == values[:2]
    assert client.batched_remove(ask[:3]) == [True, False, True]
    assert client.batched_get([keys[3], keys[0], keys[1]]) == [None, None, values[1]]
    assert client.batched_get([]) == []
    assert client.batched_remove([]) == []
    assert client.batched_contains([]) == 0


def test_prefix_calls_stop_at_the_first_miss(client: Client, prefix: str) -> None:
    keys = [f"{prefix}{i}" for i in range(6)]
    client.batched_put(keys[:2] + keys[3:], [b"v0", b"v1", b"v3", b"v4", b"v5"])
    assert client.batched_contains(keys) == 2
    assert client.batched_contains(keys[3:]) == 3
    assert client.batched_contains(keys[2:]) == 0
    pending = client.batched_get_non_blocking(keys)
    assert pending.wait(timeout=5) == [b"v0", b"v1"]
    assert pending.done() and pending.poll() == [b"v0", b"v1"]
    assert pending.wait() == [b"v0", b"v1"], "answers the same once resolved"
    assert client.batched_get_non_blocking(keys[2:]).wait() == []
    assert client.batched_get_non_blocking(keys[3:]).wait() == [b"v3", b"v4", b"v5"]


def test_non_blocking_get_returns_at_once_and_polls(own_standalone: Deployment, prefix: str) -> None:
    """`batched_get_non_blocking` returns while the server is paused; `poll`/`done` report nothing yet and `wait`
    with a short timeout raises `TimeoutError` without spoiling the handle."""
    import os
    import signal
    import time

    with own_standalone.client(timeout=10.0) as client:
        client.put(prefix + "k", b"value")
        os.kill(own_standalone.nodes[0].pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            pending = client.batched_get_non_blocking([prefix + "k"])
            assert time.monotonic() - started < 0.5
            assert pending.poll() is None and pending.done() is False
            with pytest.raises(kvcache_redis.TimeoutError, match="not ready"):
                pending.wait(timeout=0.2)
        finally:
            os.kill(own_standalone.nodes[0].pid, signal.SIGCONT)
        assert pending.wait(timeout=5) == [b"value"]


def test_large_values_round_trip(client: Client, prefix: str) -> None:
    sizes = [0, 1, 16 << 10, (64 << 10) - 1, 64 << 10, 1 << 20, 8 << 20]
    keys = [f"{prefix}{n}" for n in sizes]
    values = [value_of(prefix, i, n) for i, n in enumerate(sizes)]
    client.batched_put(keys, values)
    assert client.batched_get(keys) == values
    for k, v in zip(keys, values, strict=True):
        assert client.get(k) == v


def test_writes_take_any_buffer(client: Client, prefix: str) -> None:
    np = pytest.importorskip("numpy")
    big = np.arange(300_000, dtype=np.uint32)  # 1.2 MB: lent to the workers, not copied
    small = np.arange(10, dtype=np.int64)
    slab = bytearray(value_of(prefix, 0, 200_000))
    sources: list[object] = [big, small, memoryview(slab)[1000:150_000], slab, b"bytes", bytearray(b"ba")]
    keys = [f"{prefix}{i}" for i in range(len(sources))]
    client.batched_put(keys, sources)  # type: ignore[arg-type]
    expect = [big.tobytes(), small.tobytes(), bytes(slab[1000:150_000]), bytes(slab), b"bytes", b"ba"]
    assert client.batched_get(keys) == expect
    client.put(prefix + "one", big[::1])
    assert client.get(prefix + "one") == big.tobytes()


def test_priorities_and_timeouts_by_every_spelling(client: Client, prefix: str) -> None:
    key = prefix + "p"
    client.put(key, b"v", priority=Priority.PUT, timeout=2.5)
    for p in [Priority.PEEK, Priority.GET, 1, 2, 3, 4, "peek", "PREFETCH", "get", "put", None]:
        assert client.get(key, priority=p, timeout=1) == b"v"  # type: ignore[arg-type]
    assert client.batched_contains([key], priority="peek") == 1
    stats = client.stats()
    assert stats["requests"]["peek"] >= 3 and stats["requests"]["put"] >= 2
    with pytest.raises(ValueError, match="bad priority"):
        client.get(key, priority=7)
    with pytest.raises(ValueError, match="bad priority"):
        client.get(key, priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="priority"):
        client.get(key, priority=1.5)  # type: ignore[arg-type]
    for bad in [0, -1, float("nan"), float("inf")]:
        with pytest.raises(ValueError, match="timeout"):
            client.get(key, timeout=bad)
    with pytest.raises(TypeError, match="timeout"):
        client.get(key, timeout="1")  # type: ignore[arg-type]


def test_ttl_per_call_and_per_client(deployment: Deployment, prefix: str) -> None:
    redis = pytest.importorskip("redis")
    with deployment.client(ttl_secs=300) as client:
        client.put(prefix + "a", b"v")
        client.put(prefix + "b", b"v", ttl_secs=40)
        client.batched_put([prefix + "c"], [b"v"], ttl_secs=20)
    admin = (redis.RedisCluster if deployment.topology == "cluster" else redis.Redis).from_url(deployment.url)
    ttls = [admin.ttl(prefix + k) for k in "abc"]
    admin.close()
    assert 290 <= ttls[0] <= 300 and 30 <= ttls[1] <= 40 and 10 <= ttls[2] <= 20, ttls


def test_stats_and_topology(client: Client, deployment: Deployment, prefix: str) -> None:
    client.batched_put([prefix + "x"], [b"12345"])
    client.batched_get([prefix + "x", prefix + "y"])
    s = client.stats()
    assert s["hits"] >= 1 and s["misses"] >= 1
    assert s["bytes_written"] >= 5 and s["bytes_read"] >= 5
    assert s["round_trips"] >= 2 and s["nodes"] and {"node", "round_trips", "commands", "keys"} <= set(s["nodes"][0])
    assert s["latency"]["get"]["count"] >= 1 and s["latency"]["get"]["max_us"] >= s["latency"]["get"]["p50_us"]
    assert s["nodes_down"] == []
    assert client.is_cluster == (deployment.topology == "cluster")
    assert len(client.primaries()) == (3 if deployment.topology == "cluster" else 1)
    assert client.sentinels() is None


def test_repr_and_context_manager(standalone: Deployment) -> None:
    url = standalone.url.replace("redis://", "redis://bob:s3cret@")
    with pytest.raises(kvcache_redis.Error) as err:
        Client(url, connect_timeout=2.0)
    assert "s3cret" not in str(err.value)
    with Client(standalone.url) as c:
        shown = repr(c)
        assert standalone.url in shown and "standalone" in shown
    with pytest.raises(kvcache_redis.ClosedError):
        c.get("k")
    c.close()  # idempotent


def test_every_option_by_keyword(standalone: Deployment, prefix: str) -> None:
    options = dict(
        mode="standalone",
        workers=2,
        timeout=2.0,
        connect_timeout=1.5,
        stall_threshold=0.01,
        silence_timeout=0.4,
        drain_timeout=0.5,
        max_redirects=3,
        max_retries=4,
        batch_max_keys=64,
        batch_max_bytes=1 << 20,
        value_size_hint=4096,
        ttl_secs=600,
        write_bytes_in_flight=4 << 20,
        buffer_pool_bytes=0,
        max_key_bytes=1024,
        max_value_bytes=1 << 20,
        max_queued_parts=100,
        max_queued_bytes=64 << 20,
        fail_fast_when_full=True,
        read_from="primary",
        db=0,
    )
    with Client(standalone.url, **options) as c:  # type: ignore[arg-type]
        c.put(prefix + "k", b"v")
        assert c.get(prefix + "k") == b"v"
        with pytest.raises(kvcache_redis.InvalidInputError, match="max_value_bytes"):
            c.put(prefix + "big", bytes(2 << 20))
        with pytest.raises(kvcache_redis.InvalidInputError, match="max_key_bytes"):
            c.get("k" * 2000)
    # The URL's millisecond spellings work too, but not both spellings of one option.
    with Client(standalone.url, timeout_ms=1500, silence_timeout_ms=400) as c:
        assert c.get(prefix + "k") == b"v"
    with pytest.raises(TypeError, match="given twice"):
        Client(standalone.url, timeout=1.0, timeout_ms=1000)


def test_databases_are_apart(standalone: Deployment, prefix: str) -> None:
    with Client(standalone.url, db=1) as one, Client(standalone.url + "/2") as two:
        one.put(prefix + "k", b"db1")
        two.put(prefix + "k", b"db2")
        assert one.get(prefix + "k") == b"db1"
        assert two.get(prefix + "k") == b"db2"
    with Client(standalone.url) as zero:
        assert zero.get(prefix + "k") is None


def test_the_readme_example_runs_as_written(standalone: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## From Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    monkeypatch.setenv("KVCACHE_URL", standalone.url)
    exec(compile(code.group(1), "README.md", "exec"), {})
