"""Keep an LLM inference service's KV cache in Redis or Valkey (standalone, Cluster or Sentinel-managed).

The Rust client behind a Python face: calls block the calling thread (with the GIL released, so other threads
run and many threads' calls share pipelines), batch by slot and node, run by priority, and never wait past their
deadline. Values are read straight into caller buffers (``batched_get_into``) and written from them without a copy.

>>> import kvcache_redis
>>> with kvcache_redis.Client("redis://127.0.0.1:6379") as client:  # doctest: +SKIP
...     client.batched_put(["a", "b"], [b"1" * 1024, b"2" * 1024])
...     client.batched_get(["a", "missing", "b"])  # positional: bytes or None
"""

from __future__ import annotations

from ._enums import DTYPES, MemoryFormat, Priority
from ._native import (
    Chunk,
    ChunkKey,
    ChunkMeta,
    ChunkStore,
    Client,
    PendingGet,
    __version__,
)
from ._types import Latency, NodeStats, SentinelAnswer, SentinelReplica, Stats
from .errors import (
    AuthenticationError,
    BatchError,
    ClosedError,
    ConfigError,
    ConnectionError,
    Error,
    ForkedError,
    InvalidInputError,
    NotReplicatedError,
    OverloadedError,
    ProtocolError,
    RedirectError,
    ServerError,
    TimeoutError,
    TlsError,
    TopologyError,
    WorkerLostError,
)

__all__ = [
    "DTYPES",
    "AuthenticationError",
    "BatchError",
    "Chunk",
    "ChunkKey",
    "ChunkMeta",
    "ChunkStore",
    "Client",
    "ClosedError",
    "ConfigError",
    "ConnectionError",
    "Error",
    "ForkedError",
    "InvalidInputError",
    "Latency",
    "MemoryFormat",
    "NodeStats",
    "NotReplicatedError",
    "OverloadedError",
    "PendingGet",
    "Priority",
    "ProtocolError",
    "RedirectError",
    "SentinelAnswer",
    "SentinelReplica",
    "ServerError",
    "Stats",
    "TimeoutError",
    "TlsError",
    "TopologyError",
    "WorkerLostError",
    "__version__",
]
