"""Real servers for the tests: deployments started by the crate's own fixtures (the `local_deployment` example),
shared per test session and stopped when it ends, plus fresh ones for tests that break them."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import kvcache_redis

ROOT = Path(__file__).resolve().parents[2]


def example(name: str) -> Path:
    """One of the crate's examples: from `$KVCACHE_EXAMPLES_DIR` (scripts/test-python.sh builds them there), else
    built here."""
    built = os.environ.get("KVCACHE_EXAMPLES_DIR")
    if built:
        return Path(built) / name
    subprocess.run(["cargo", "build", "--quiet", "--example", name], cwd=ROOT, check=True)
    return ROOT / "target" / "debug" / "examples" / name


@dataclass
class Node:
    addr: str
    pid: int
    role: str


@dataclass
class Deployment:
    """A running deployment: its URL, its processes (by PID, for faults), and TLS files where it has them."""

    url: str
    kind: str
    topology: str
    nodes: list[Node]
    sentinels: list[Node]
    ca: str | None
    unix_socket: str | None
    process: subprocess.Popen[bytes] = field(repr=False)

    def stop(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def client(self, **options: Any) -> kvcache_redis.Client:
        return kvcache_redis.Client(self.url, **options)


def start(kind: str, topology: str, *extra: str) -> Deployment:
    process = subprocess.Popen(
        [str(example("local_deployment")), f"--{kind}", topology, *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=30)
        raise RuntimeError(f"local_deployment {kind} {topology} did not start (exit {process.returncode})")
    d = json.loads(line)
    return Deployment(
        url=d["url"],
        kind=d["kind"],
        topology=d["topology"],
        nodes=[Node(**n) for n in d["nodes"]],
        sentinels=[Node(**n) for n in d["sentinels"]],
        ca=d["ca"],
        unix_socket=d["unix_socket"],
        process=process,
    )


class Deployments:
    """Deployments shared by the session, started on first use."""

    def __init__(self) -> None:
        self.running: dict[tuple[str, str], Deployment] = {}

    def get(self, kind: str, topology: str) -> Deployment:
        key = (kind, topology)
        if key not in self.running:
            self.running[key] = start(kind, topology)
        return self.running[key]

    def stop_all(self) -> None:
        for d in self.running.values():
            d.stop()


@pytest.fixture(scope="session")
def deployments() -> Iterator[Deployments]:
    shared = Deployments()
    yield shared
    shared.stop_all()


@pytest.fixture(params=["redis", "valkey"])
def kind(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture(params=["standalone", "cluster"])
def topology(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def deployment(deployments: Deployments, kind: str, topology: str) -> Deployment:
    """Each server kind in each topology (standalone, a 3+3 Cluster), shared across tests."""
    return deployments.get(kind, topology)


@pytest.fixture
def client(deployment: Deployment) -> Iterator[kvcache_redis.Client]:
    with deployment.client() as c:
        yield c


@pytest.fixture
def standalone(deployments: Deployments, kind: str) -> Deployment:
    return deployments.get(kind, "standalone")


@pytest.fixture
def own_standalone(kind: str) -> Iterator[Deployment]:
    """A server of this test's own, for tests that freeze, kill or reconfigure it."""
    d = start(kind, "standalone")
    yield d
    for n in d.nodes:
        try:
            os.kill(n.pid, 18)  # SIGCONT: a frozen server must be able to stop.
        except ProcessLookupError:
            pass
    d.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"pytest:{uuid.uuid4().hex[:12]}:"


def value_of(seed: str, i: int, size: int) -> bytes:
    """Deterministic bytes that identify their key and size."""
    head = f"{seed}|{i}|{size}|".encode()
    body = (head * (size // max(len(head), 1) + 1))[:size]
    return bytes(body)


@pytest.fixture
def make_value() -> Callable[[str, int, int], bytes]:
    return value_of
