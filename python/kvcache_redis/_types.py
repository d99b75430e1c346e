"""The shapes of what the client reports: ``Client.stats()`` and ``Client.sentinels()`` (plain dicts)."""

from __future__ import annotations

from typing import TypedDict


class Latency(TypedDict):
    count: int
    p50_us: int
    p99_us: int
    p999_us: int
    max_us: int


class PerPriority(TypedDict):
    peek: int
    prefetch: int
    get: int
    put: int


class PerPriorityLatency(TypedDict):
    peek: Latency
    prefetch: Latency
    get: Latency
    put: Latency


class NodeStats(TypedDict):
    node: str
    round_trips: int
    commands: int
    keys: int


class Stats(TypedDict):
    requests: PerPriority
    parts: int
    keys: int
    direct_keys: int
    hits: int
    misses: int
    key_errors: int
    corrupt: int
    prefix_failures: int
    moved: int
    asked: int
    retries: int
    io_retries: int
    connects: int
    timeouts: int
    round_trips: int
    overloads: int
    marked_down: int
    silences: int
    rerouted: int
    refreshes: int
    queued: int
    in_flight_bytes: int
    bytes_read: int
    bytes_written: int
    nodes_down: list[str]
    nodes: list[NodeStats]
    latency: PerPriorityLatency


class SentinelReplica(TypedDict):
    addr: str
    flags: str
    link_ok: bool
    usable: bool


class SentinelAnswer(TypedDict, total=False):
    sentinel: str
    service: str
    primary: str
    epoch: int
    flags: str
    replicas: list[SentinelReplica]
    error: str | None
