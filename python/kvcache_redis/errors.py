"""The exceptions of kvcache_redis: one hierarchy rooted at :class:`Error`.

Each class also derives from the built-in exception a caller already catches where one fits (``TimeoutError``,
``ConnectionError``, ``ValueError``, ``PermissionError``, ``RuntimeError``), so ``except TimeoutError`` keeps
working. Messages are the Rust library's, and never contain a password.
"""

from __future__ import annotations

import builtins


class Error(Exception):
    """Anything kvcache_redis raises. ``node`` is the server concerned (``host:port``) when one is known."""

    node: str | None = None


class ClosedError(Error):
    """The client was closed (``close()``, or the end of its ``with`` block); later calls raise this at once."""


class TimeoutError(Error, builtins.TimeoutError):
    """A call's deadline (``timeout=``, else the client's ``timeout``) passed before its answer arrived, or
    ``PendingGet.wait(timeout)`` gave up waiting (the handle stays usable)."""


class ConnectionError(Error, builtins.ConnectionError):
    """Connecting to, writing to or reading from a node failed (refused, reset, marked down)."""


class TlsError(ConnectionError):
    """The TLS handshake with a node failed (certificate not trusted, wrong host name, not a TLS port...)."""


class ServerError(Error):
    """The server answered with an error reply. ``code`` is its first word (``OOM``, ``WRONGPASS``, ``NOPERM``...)."""

    code: str = ""


class AuthenticationError(ServerError, builtins.PermissionError):
    """The server refused the credentials or the user's permissions (``WRONGPASS``, ``NOAUTH``, ``NOPERM``)."""


class RedirectError(Error):
    """A key was redirected (``MOVED``, ``ASK``) or told to retry more often than the client's limits allow."""


class ProtocolError(Error):
    """A node sent bytes that are not a valid reply to what was asked; its connection was dropped."""


class TopologyError(Error):
    """The deployment could not be discovered (no seed answered, an unknown Sentinel service...) or a slot is not
    served."""


class OverloadedError(Error):
    """The client's queue is full and it was opened with ``fail_fast_when_full=True``."""


class InvalidInputError(Error, ValueError):
    """A call's input was invalid (a key or value too large, counts that do not match, a value larger than its
    buffer); nothing was sent for it."""


class ConfigError(Error, ValueError):
    """A URL, an option or an LMCache configuration file is invalid."""


class WorkerLostError(Error):
    """A worker thread stopped without answering (a bug); the call's keys may or may not have been carried out."""


class NotReplicatedError(Error):
    """A put was stored on its primary but fewer replicas than ``wait_replicas`` confirmed it in time."""


class ForkedError(Error, builtins.RuntimeError):
    """The client was opened in another process: its worker threads did not survive ``os.fork()``. Open a new
    client in the child (after the fork)."""


#: What one key of a batched call got: its value or count (``bytes``, ``int``, ``bool``), ``None`` for a miss or
#: a plain success, or the key's own exception.
KeyResult = bytes | int | bool | None | Error


class BatchError(Error):
    """Some keys of a batched call failed while others were answered.

    ``results`` holds one entry per key, in the order of the call: what the key got (as the call would have
    returned it) or its exception; ``errors`` maps the failed keys' positions to their exceptions. A batched call
    whose keys *all* failed raises the first key's own exception instead (``ConnectionError`` for a dead node,
    ``TimeoutError``...), as does a call that fails as a whole (a closed client). Every batched call follows this
    rule; the prefix calls (``batched_contains``, ``PendingGet.wait``) instead stop their prefix at a failed key
    and raise only when it is the first.
    """

    def __init__(self, message: str, results: list[KeyResult]) -> None:
        super().__init__(message)
        self.results: list[KeyResult] = results
        self.errors: dict[int, Error] = {i: r for i, r in enumerate(results) if isinstance(r, Error)}


__all__ = [
    "AuthenticationError",
    "BatchError",
    "ClosedError",
    "ConfigError",
    "ConnectionError",
    "Error",
    "ForkedError",
    "InvalidInputError",
    "KeyResult",
    "NotReplicatedError",
    "OverloadedError",
    "ProtocolError",
    "RedirectError",
    "ServerError",
    "TimeoutError",
    "TlsError",
    "TopologyError",
    "WorkerLostError",
]
