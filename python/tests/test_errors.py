"""Bad input and failing servers: typed exceptions that say what was wrong, never a hang, and a client that stays
usable."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

import kvcache_redis
from kvcache_redis import Client

from .conftest import Deployment, start


def test_exceptions_derive_from_the_built_ins() -> None:
    e = kvcache_redis
    assert issubclass(e.TimeoutError, TimeoutError) and issubclass(e.TimeoutError, e.Error)
    assert issubclass(e.ConnectionError, ConnectionError) and issubclass(e.TlsError, e.ConnectionError)
    assert issubclass(e.InvalidInputError, ValueError) and issubclass(e.ConfigError, ValueError)
    assert issubclass(e.AuthenticationError, PermissionError) and issubclass(e.AuthenticationError, e.ServerError)
    assert issubclass(e.ForkedError, RuntimeError)
    for name in ["ClosedError", "ProtocolError", "TopologyError", "OverloadedError", "BatchError", "RedirectError"]:
        assert issubclass(getattr(e, name), e.Error)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("127.0.0.1:6379", "no scheme"),
        ("http://h:1", "unknown scheme"),
        ("redis://h:99999", "bad host"),
        ("redis://h/abc", "bad database"),
        ("redis://h?colour=blue", "unknown option"),
        ("redis://h?workers=0", "workers must be at least 1"),
        ("redis://h?client_name=a%20b", "no spaces"),
        ("redis://h?read_from=az_affinity", "set client_az too"),
        ("unix://host/tmp/r.sock", "unix:///absolute/path"),
        ("redis+sentinel://h:26379", "names the service"),
        ("redis-sentinel://h:1,h:2", "LMCache's spelling"),
    ],
)
def test_bad_urls_are_config_errors(url: str, why: str) -> None:
    with pytest.raises(kvcache_redis.ConfigError, match=why):
        Client(url)


def test_bad_options_say_which(standalone: Deployment) -> None:
    with pytest.raises(kvcache_redis.ConfigError, match="unknown option"):
        Client(standalone.url, colour="blue")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="workers must be an int"):
        Client(standalone.url, workers=[4])  # type: ignore[arg-type]
    with pytest.raises(kvcache_redis.ConfigError, match="bad number"):
        Client(standalone.url, workers="four")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be negative"):
        Client(standalone.url, workers=-1)
    with pytest.raises(ValueError, match="positive number of seconds"):
        Client(standalone.url, timeout=-1.0)
    with pytest.raises(TypeError, match="duration in seconds"):
        Client(standalone.url, connect_timeout="5")  # type: ignore[arg-type]
    with pytest.raises(kvcache_redis.ConfigError, match="bad read_from"):
        Client(standalone.url, read_from="nearest")  # type: ignore[arg-type]
    with pytest.raises(kvcache_redis.ConfigError, match="is for Sentinel"):
        Client(standalone.url, sentinel_password="x")
    with pytest.raises(kvcache_redis.ConfigError):
        Client(standalone.url, read_from="replica")  # no replicas known on a plain standalone server
    with pytest.raises(ValueError, match="needs a password"):
        Client(standalone.url, username="bob")


def test_bad_keys(client: Client, deployment: Deployment, prefix: str) -> None:
    with pytest.raises(TypeError, match="the key must be str or bytes, not int"):
        client.get(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key 1 must be str or bytes, not NoneType"):
        client.batched_get([prefix, None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a single str"):
        client.batched_get(prefix + "abc")
    with pytest.raises(TypeError):
        client.batched_get(42)  # type: ignore[arg-type]
    with Client(deployment.url, max_key_bytes=100) as small:
        with pytest.raises(kvcache_redis.InvalidInputError, match="max_key_bytes"):
            small.put("k" * 101, b"v")
    # The empty key is a key.
    client.put(b"", b"empty")
    assert client.get("") == b"empty"
    assert client.remove("") is True


def test_a_closed_client_raises_and_a_handle_still_resolves(standalone: Deployment, prefix: str) -> None:
    c = Client(standalone.url)
    c.put(prefix + "k", b"v")
    pending = c.batched_get_non_blocking([prefix + "k"])
    c.close()
    assert pending.wait(timeout=5) in ([b"v"], [])
    calls: list[Callable[[], object]] = [
        lambda: c.get("k"),
        lambda: c.batched_put(["k"], [b"v"]),
        lambda: c.batched_contains(["k"]),
    ]
    for call in calls:
        with pytest.raises(kvcache_redis.ClosedError):
            call()


def test_unreachable_server_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(kvcache_redis.Error) as raised:
        Client("redis://127.0.0.1:1", connect_timeout=1.0)
    assert isinstance(raised.value, (kvcache_redis.ConnectionError, kvcache_redis.TopologyError))
    assert time.monotonic() - started < 5


def test_a_frozen_server_times_out_at_the_deadline_and_recovers(own_standalone: Deployment, prefix: str) -> None:
    pid = own_standalone.nodes[0].pid
    with own_standalone.client(timeout=0.5) as client:
        client.put(prefix + "k", b"v")
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(kvcache_redis.TimeoutError) as raised:
                client.get(prefix + "k")
            took = time.monotonic() - started
            assert isinstance(raised.value, TimeoutError)
            assert 0.45 <= took < 2.0, took
            with pytest.raises(kvcache_redis.Error):
                client.batched_get([prefix + "k"] * 3, timeout=0.3)
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while True:
            try:
                assert client.get(prefix + "k") == b"v"
                break
            except kvcache_redis.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def test_a_server_killed_mid_call_raises_by_the_deadline(kind: str, prefix: str) -> None:
    d = start(kind, "standalone")
    try:
        with d.client(timeout=2.0) as client:
            client.batched_put([f"{prefix}{i}" for i in range(8)], [bytes(4 << 20)] * 8)
            os.kill(d.nodes[0].pid, signal.SIGSTOP)
            killer = threading.Timer(0.2, lambda: os.kill(d.nodes[0].pid, signal.SIGKILL))
            killer.start()
            started = time.monotonic()
            with pytest.raises(kvcache_redis.Error) as raised:
                client.batched_get([f"{prefix}{i}" for i in range(8)])
            took = time.monotonic() - started
            killer.join()
            assert isinstance(raised.value, (kvcache_redis.ConnectionError, kvcache_redis.TimeoutError)), raised.value
            assert took < 2.5, took
            with pytest.raises(kvcache_redis.Error):
                client.get(prefix + "0", timeout=0.5)
    finally:
        d.stop()


def test_credentials_and_per_key_permissions(kind: str, prefix: str) -> None:
    redis = pytest.importorskip("redis")
    d = start(kind, "standalone", "--password", "s3cret")
    try:
        host_port = d.nodes[0].addr
        admin = redis.Redis.from_url(f"redis://:s3cret@{host_port}")
        admin.acl_setuser("limited", enabled=True, passwords=["+pw2"], keys=["allowed:*"], commands=["+@all"])
        admin.close()
        with pytest.raises(kvcache_redis.AuthenticationError) as raised:
            Client(f"redis://:wrong@{host_port}")
        assert raised.value.code == "WRONGPASS" and "wrong" not in str(raised.value)
        with Client(f"redis://{host_port}", username="limited", password="pw2") as c:
            c.put("allowed:a", b"1")
            with pytest.raises(kvcache_redis.BatchError) as batch:
                c.batched_get(["allowed:a", "denied:b", "allowed:c"])
            err = batch.value
            assert err.results[0] == b"1" and err.results[2] is None
            assert list(err.errors) == [1] and isinstance(err.errors[1], kvcache_redis.AuthenticationError)
            assert err.errors[1].code == "NOPERM" and err.errors[1].node == host_port
            with pytest.raises(kvcache_redis.BatchError) as batch:
                c.batched_put(["allowed:x", "denied:y"], [b"x", b"y"])
            assert batch.value.results[0] is None and list(batch.value.errors) == [1]
            assert c.get("allowed:x") == b"x", "the other key landed"
    finally:
        d.stop()
