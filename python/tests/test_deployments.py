"""Every URL form: Sentinel (with replica reads), TLS, a Unix socket, and LMCache's configuration files."""

from __future__ import annotations

from pathlib import Path

import pytest

import kvcache_redis
from kvcache_redis import Client

from .conftest import Deployment, Deployments, value_of


@pytest.fixture
def sentinel(deployments: Deployments, kind: str) -> Deployment:
    return deployments.get(kind, "sentinel")


@pytest.fixture
def tls(deployments: Deployments) -> Deployment:
    return deployments.get("redis", "tls")


def test_sentinel_calls_and_view(sentinel: Deployment, prefix: str) -> None:
    with Client(sentinel.url) as client:
        keys = [f"{prefix}{i}" for i in range(20)]
        values = [value_of(prefix, i, 3000) for i in range(20)]
        client.batched_put(keys, values)
        assert client.batched_get(keys) == values
        assert client.is_cluster is False
        primary = next(n.addr for n in sentinel.nodes if n.role == "primary")
        assert client.primaries() == [primary]
        answers = client.sentinels()
        assert answers is not None and len(answers) == 3
        for a in answers:
            assert a["service"] == "kvcache-svc" and a["error"] is None and a["primary"] == primary
            assert {r["addr"] for r in a["replicas"]} == {n.addr for n in sentinel.nodes if n.role == "replica"}
            assert all(r["usable"] for r in a["replicas"])


def test_sentinel_replica_reads(sentinel: Deployment, prefix: str) -> None:
    with Client(sentinel.url, read_from="replica") as client:
        client.put(prefix + "k", b"replicated")
        import time

        deadline = time.monotonic() + 5
        while client.get(prefix + "k") != b"replicated":
            assert time.monotonic() < deadline, "the replicas never had the value"
            time.sleep(0.02)
        served = {n["node"] for n in client.stats()["nodes"] if n["keys"] and n["node"] != client.primaries()[0]}
        assert served, "reads went to a replica"


def test_tls_by_url_and_by_keyword(tls: Deployment, prefix: str) -> None:
    assert tls.ca is not None
    with Client(tls.url) as client:
        client.put(prefix + "k", value_of(prefix, 0, 1 << 20))
        assert client.get(prefix + "k") == value_of(prefix, 0, 1 << 20)
    base = tls.url.split("?")[0]
    with Client(base, tls_ca=Path(tls.ca)) as client:
        assert client.exists(prefix + "k")
    with Client(base.replace("rediss://", "redis://"), tls=True, tls_ca=tls.ca) as client:
        assert client.exists(prefix + "k")
    with pytest.raises(kvcache_redis.TlsError) as raised:
        Client(base, connect_timeout=2.0)  # the test CA is not trusted without tls_ca
    assert isinstance(raised.value, ConnectionError)
    with pytest.raises(kvcache_redis.TlsError):
        Client(base.replace("localhost", "127.0.0.1"), tls_ca=tls.ca, tls_server_name="elsewhere", connect_timeout=2.0)


def test_unix_socket(standalone: Deployment, prefix: str) -> None:
    assert standalone.unix_socket is not None
    with Client(f"unix://{standalone.unix_socket}?db=3") as client:
        client.put(prefix + "k", b"over a socket")
        assert client.get(prefix + "k") == b"over a socket"
    with Client(standalone.url, db=3) as tcp:
        assert tcp.get(prefix + "k") == b"over a socket"


def test_from_lmcache_yaml(standalone: Deployment, tmp_path: Path, prefix: str) -> None:
    host_port = standalone.url.split("://")[1]
    config = tmp_path / "lmcache.yaml"
    config.write_text(
        f"chunk_size: 256\n"
        f"remote_url: valkey://{host_port}\n"
        f"remote_serde: naive\n"
        f"extra_config:\n"
        f"  valkey_num_workers: 3\n"
        f"  request_timeout: 2.5\n"
        f"  valkey_database: 4\n"
        f"  colour: blue\n"
    )
    with pytest.warns(UserWarning, match="colour"):
        client = Client.from_lmcache_yaml(config, ttl_secs=60)
    with client, Client(standalone.url, db=4) as same_db:
        client.put(prefix + "k", b"from yaml")
        assert same_db.get(prefix + "k") == b"from yaml"
        assert "lmcache" in repr(client)
    config.write_text("remote_url: not a url\n")
    with pytest.raises(kvcache_redis.ConfigError, match="no scheme"):
        Client.from_lmcache_yaml(config)
    config.write_text("chunk_size: 256\n")
    with pytest.raises(kvcache_redis.ConfigError, match="no remote_url"):
        Client.from_lmcache_yaml(config)
    with pytest.raises(FileNotFoundError):
        Client.from_lmcache_yaml(tmp_path / "missing.yaml")
