"""Enumerations shared with LMCache: call priorities and chunk memory formats."""

from __future__ import annotations

import enum


class Priority(enum.IntEnum):
    """Scheduling priority of a call, numbered as LMCache numbers them (lower runs first). Workers always take
    the highest queued level first; a level passed over 8 times in a row goes first once, so writes are never
    starved. Every call takes ``priority=`` (a member, its number, or its name) to override its default."""

    PEEK = 1
    """``exists``, ``batched_contains``: answers that decide whether to load at all."""
    PREFETCH = 2
    """``batched_get_non_blocking``: loads started ahead of need."""
    GET = 3
    """``get``, ``batched_get``, ``batched_get_into``."""
    PUT = 4
    """``put``, ``batched_put``, ``remove``, ``batched_remove``."""


class MemoryFormat(enum.IntEnum):
    """LMCache's memory formats, with the codes its chunk metadata stores."""

    UNDEFINED = 0
    KV_2LTD = 1
    KV_T2D = 2
    KV_2TD = 3
    BINARY = 4
    BINARY_BUFFER = 5
    KV_MLA_FMT = 6
    EC_TD = 7
    HS_TD = 8


#: LMCache's dtype names, as chunk keys spell them.
DTYPES = (
    "half",
    "bfloat16",
    "float",
    "double",
    "int8",
    "uint8",
    "int16",
    "int32",
    "int64",
    "bool",
    "fp8_e4m3fn",
    "fp8_e4m3fnuz",
    "fp8_e5m2",
    "fp8_e5m2fnuz",
)
