"""Type stubs of the native module (kept in step with python/src/ by mypy's stubtest, which CI runs)."""

from collections.abc import Iterable, Sequence
from os import PathLike
from types import TracebackType
from typing import Any, Literal, TypeAlias, final

from typing_extensions import Buffer, Self

from ._enums import MemoryFormat, Priority
from ._types import SentinelAnswer, Stats

__all__ = ["Chunk", "ChunkKey", "ChunkMeta", "ChunkStore", "Client", "PendingGet", "__version__"]
__version__: str

#: A key: ``str`` (stored as UTF-8) or bytes (``bytes``, ``bytearray``, ``memoryview``, any buffer).
_Key: TypeAlias = str | Buffer
#: A priority: a :class:`Priority`, its number (1-4) or its name (``"peek"``, ``"prefetch"``, ``"get"``, ``"put"``).
_PriorityLike: TypeAlias = Priority | int | Literal["peek", "prefetch", "get", "put"]
#: A chunk key: a :class:`ChunkKey` or LMCache's key string.
_ChunkKeyLike: TypeAlias = ChunkKey | str

@final
class Client:
    """A blocking, batching client for a standalone server, a Cluster or a Sentinel-managed primary.

    ``url`` is any URL the Rust library takes (``redis://``, ``valkey://``, ``rediss://``, ``redis-cluster://``,
    ``redis+sentinel://host,host/SERVICE``, ``unix:///path``...). Options are the URL's, as keyword arguments with
    the same names and defaults; durations in seconds (``timeout``, ``connect_timeout``, ``stall_threshold``,
    ``silence_timeout``, ``drain_timeout``, ``wait_timeout``; the URL's ``*_ms`` names take milliseconds), plus
    ``username``, ``password`` and ``tls``.
    """

    def __new__(
        cls,
        url: str,
        *,
        mode: Literal["auto", "standalone", "cluster"] = ...,
        workers: int = ...,
        timeout: float = ...,
        request_timeout: float = ...,
        connect_timeout: float = ...,
        stall_threshold: float = ...,
        silence_timeout: float = ...,
        drain_timeout: float = ...,
        timeout_ms: int = ...,
        connect_timeout_ms: int = ...,
        stall_threshold_ms: int = ...,
        silence_timeout_ms: int = ...,
        drain_timeout_ms: int = ...,
        max_redirects: int = ...,
        max_retries: int = ...,
        wait_replicas: int = ...,
        wait_timeout: float = ...,
        wait_timeout_ms: int = ...,
        batch_max_keys: int = ...,
        batch_max_bytes: int = ...,
        value_size_hint: int = ...,
        ttl_secs: int = ...,
        write_bytes_in_flight: int = ...,
        buffer_pool_bytes: int = ...,
        max_key_bytes: int = ...,
        max_value_bytes: int = ...,
        max_queued_parts: int = ...,
        max_queued_bytes: int = ...,
        fail_fast_when_full: bool = ...,
        db: int = ...,
        tls: bool = ...,
        tls_ca: str | PathLike[str] = ...,
        tls_cert: str | PathLike[str] = ...,
        tls_key: str | PathLike[str] = ...,
        tls_server_name: str = ...,
        tls_insecure_skip_verify: bool = ...,
        read_from: Literal["primary", "replica", "spread", "az_affinity", "az_affinity_replicas_and_primary"] = ...,
        client_az: str = ...,
        client_name: str = ...,
        sentinel_user: str = ...,
        sentinel_password: str = ...,
        username: str = ...,
        password: str = ...,
    ) -> Self: ...
    @staticmethod
    def from_lmcache_yaml(path: str | PathLike[str], **options: Any) -> Client:
        """A client from an LMCache configuration file (YAML); unknown and unapplied keys are reported as warnings."""
    @staticmethod
    def from_lmcache_config(text: str, **options: Any) -> Client:
        """Like ``from_lmcache_yaml``, from the configuration's text (YAML or JSON)."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    @property
    def is_cluster(self) -> bool: ...
    def primaries(self) -> list[str]: ...
    def get(self, key: _Key, *, priority: _PriorityLike | None = None, timeout: float | None = None) -> bytes | None:
        """The value, or ``None`` when missing. Priority GET."""
    def put(
        self,
        key: _Key,
        value: Buffer,
        *,
        priority: _PriorityLike | None = None,
        timeout: float | None = None,
        ttl_secs: int | None = None,
    ) -> None:
        """Stores ``value`` (any buffer; 64 KiB and larger ones are written without a copy). Priority PUT."""
    def exists(self, key: _Key, *, priority: _PriorityLike | None = None, timeout: float | None = None) -> bool:
        """Whether ``key`` exists. Priority PEEK."""
    def remove(self, key: _Key, *, priority: _PriorityLike | None = None, timeout: float | None = None) -> bool:
        """Deletes ``key``; whether it existed. Priority PUT."""
    def batched_get(
        self, keys: Iterable[_Key], *, priority: _PriorityLike | None = None, timeout: float | None = None
    ) -> list[bytes | None]:
        """One value or ``None`` per key, in order. Raises ``BatchError`` (with every key's result) if any key
        failed."""
    def batched_get_into(
        self,
        keys: Iterable[_Key],
        buffers: Iterable[Buffer],
        *,
        priority: _PriorityLike | None = None,
        timeout: float | None = None,
    ) -> list[int | None]:
        """Reads each value straight into ``buffers[i]`` (writable, C-contiguous, disjoint, at least the value's
        size); one length or ``None`` (missing) per key. A value larger than its buffer is that key's
        ``InvalidInputError`` (inside ``BatchError``) and nothing is written into the buffer."""
    def batched_put(
        self,
        keys: Iterable[_Key],
        values: Iterable[Buffer],
        *,
        priority: _PriorityLike | None = None,
        timeout: float | None = None,
        ttl_secs: int | None = None,
    ) -> None:
        """Pipelined, non-transactional writes. Raises ``BatchError`` if any key failed."""
    def batched_remove(
        self, keys: Iterable[_Key], *, priority: _PriorityLike | None = None, timeout: float | None = None
    ) -> list[bool]:
        """Deletes every key; one ``bool`` per key (did it exist)."""
    def batched_contains(
        self, keys: Iterable[_Key], *, priority: _PriorityLike | None = None, timeout: float | None = None
    ) -> int:
        """The number of consecutive keys, from the first, that exist. Priority PEEK."""
    def batched_get_non_blocking(
        self, keys: Iterable[_Key], *, priority: _PriorityLike | None = None, timeout: float | None = None
    ) -> PendingGet:
        """Starts a batched get and returns at once. Priority PREFETCH."""
    def ping(self, *, timeout: float | None = None) -> None:
        """Checks that every primary answers."""
    def stats(self) -> Stats: ...
    def sentinels(self) -> list[SentinelAnswer] | None: ...
    def close(self) -> None: ...

@final
class PendingGet:
    """The handle of a non-blocking get."""

    def wait(self, timeout: float | None = None) -> list[Any]:
        """The consecutive prefix of hits (``bytes``, or ``Chunk`` from a ``ChunkStore``); ``TimeoutError`` if not
        in within ``timeout`` seconds (the handle stays usable)."""
    def poll(self) -> list[Any] | None: ...
    def done(self) -> bool: ...

@final
class ChunkKey:
    """LMCache's chunk key: ``model@world_size@worker_id@chunk_hash@dtype[@layer][@tag%value...]``."""

    def __new__(
        cls,
        model: str,
        world_size: int,
        worker_id: int,
        chunk_hash: str,
        dtype: str,
        layer: int | None = None,
        tags: Sequence[tuple[str, str]] | None = None,
    ) -> Self: ...
    @staticmethod
    def parse(text: str) -> ChunkKey: ...
    @staticmethod
    def hash_of_int(h: int) -> str: ...
    @staticmethod
    def hash_of_bytes(h: bytes) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def world_size(self) -> int: ...
    @property
    def worker_id(self) -> int: ...
    @property
    def chunk_hash(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def layer(self) -> int | None: ...
    @property
    def tags(self) -> list[tuple[str, str]]: ...
    def __hash__(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class ChunkMeta:
    """LMCache's chunk metadata: memory format, dtype, shape (up to 4 dimensions)."""

    def __new__(cls, fmt: MemoryFormat | int | str, dtype: str, shape: Sequence[int]) -> Self: ...
    @property
    def fmt(self) -> MemoryFormat | int: ...
    @property
    def dtype(self) -> str | None: ...
    @property
    def dtype_code(self) -> int: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class Chunk:
    """A chunk read back."""

    @property
    def payload(self) -> bytes: ...
    @property
    def meta(self) -> ChunkMeta | None: ...

@final
class ChunkStore:
    """KV-cache chunks over a client, in a layout: ``"framed"`` (default), ``"raw"`` (``size=``) or ``"split"``
    (``naming=`` ``"plain"``, ``"hash_tagged"`` or ``"colon"``)."""

    def __new__(
        cls,
        client: Client,
        layout: Literal["framed", "raw", "split"] = "framed",
        *,
        size: int | None = None,
        naming: Literal["plain", "hash_tagged", "colon"] | None = None,
        namespace: str = "",
        ttl_secs: int | None = None,
    ) -> Self: ...
    @property
    def client(self) -> Client: ...
    @property
    def layout(self) -> Literal["framed", "raw", "split"]: ...
    def store_key(self, key: _ChunkKeyLike) -> str: ...
    def split_keys(
        self, key: _ChunkKeyLike, naming: Literal["plain", "hash_tagged", "colon"] | None = None
    ) -> tuple[str, str]: ...
    def put(
        self,
        key: _ChunkKeyLike,
        payload: Buffer,
        meta: ChunkMeta | None = None,
        *,
        priority: _PriorityLike | None = None,
        timeout: float | None = None,
    ) -> None: ...
    def batched_put(
        self,
        keys: Iterable[_ChunkKeyLike],
        payloads: Iterable[Buffer],
        meta: ChunkMeta | None = None,
        *,
        priority: _PriorityLike | None = None,
        timeout: float | None = None,
    ) -> None: ...
    def get(
        self, key: _ChunkKeyLike, *, priority: _PriorityLike | None = None, timeout: float | None = None
    ) -> Chunk | None: ...
    def batched_get(
        self, keys: Iterable[_ChunkKeyLike], *, priority: _PriorityLike | None = None, timeout: float | None = None
    ) -> list[Chunk | None]: ...
    def batched_contains(
        self, keys: Iterable[_ChunkKeyLike], *, priority: _PriorityLike | None = None, timeout: float | None = None
    ) -> int: ...
    def batched_get_non_blocking(
        self, keys: Iterable[_ChunkKeyLike], *, priority: _PriorityLike | None = None, timeout: float | None = None
    ) -> PendingGet: ...
    def batched_get_into(
        self,
        keys: Iterable[_ChunkKeyLike],
        buffers: Iterable[Buffer],
        *,
        priority: _PriorityLike | None = None,
        timeout: float | None = None,
    ) -> list[int | None]: ...
