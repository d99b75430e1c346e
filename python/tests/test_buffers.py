"""Reads straight into caller buffers, and what a bad buffer gets: a clear error before anything is sent."""

from __future__ import annotations

import array

import pytest

import kvcache_redis
from kvcache_redis import BatchError, Client, InvalidInputError

from .conftest import value_of

np = pytest.importorskip("numpy")


def test_values_land_in_every_kind_of_buffer(client: Client, prefix: str) -> None:
    sizes = [0, 5, 4096, 100_000, 3 << 20]
    keys = [f"{prefix}{i}" for i in range(len(sizes))]
    values = [value_of(prefix, i, n) for i, n in enumerate(sizes)]
    client.batched_put(keys, values)
    slab = bytearray(b"\xaa" * (8 << 20))
    view = memoryview(slab)
    targets: list[object] = [
        bytearray(16),
        np.full(5, 0xAA, dtype=np.uint8),
        view[: 1 << 20],
        np.zeros(100_000 // 4, dtype=np.float32),  # any item type: bytes are bytes
        view[1 << 20 : (1 << 20) + (3 << 20)],
        array.array("b", bytes(8)),
    ]
    got = client.batched_get_into([*keys, prefix + "missing"], targets)  # type: ignore[arg-type]
    assert got == [0, 5, 4096, 100_000, 3 << 20, None]
    assert bytes(targets[1]) == values[1]  # type: ignore[call-overload]
    assert slab[:4096] == values[2] and slab[4096 : 1 << 20] == b"\xaa" * ((1 << 20) - 4096), "nothing past it"
    assert np.asarray(targets[3]).tobytes() == values[3]
    assert slab[1 << 20 : (1 << 20) + (3 << 20)] == values[4]
    assert bytes(targets[5]) == bytes(8), "a miss writes nothing"  # type: ignore[call-overload]


def test_a_buffer_too_small_is_that_keys_error_and_nothing_is_written(client: Client, prefix: str) -> None:
    client.batched_put([prefix + "a", prefix + "b"], [b"x" * 1000, b"y" * 10])
    small, fits = bytearray(b"\x01" * 999), bytearray(10)
    with pytest.raises(BatchError) as raised:
        client.batched_get_into([prefix + "a", prefix + "b"], [small, fits])
    err = raised.value
    assert err.results[1] == 10 and fits == bytearray(b"y" * 10), "the other key is answered"
    assert set(err.errors) == {0}
    assert isinstance(err.errors[0], InvalidInputError) and isinstance(err.errors[0], ValueError)
    assert "1000 bytes" in str(err.errors[0]) and "key 0" in str(err)
    assert small == bytearray(b"\x01" * 999), "nothing written into a buffer too small"
    assert client.get(prefix + "a") == b"x" * 1000, "the client is still usable and the value intact"


def test_bad_buffers_are_refused_before_anything_is_sent(client: Client, prefix: str) -> None:
    client.put(prefix + "k", b"v")
    before = client.stats()["requests"]["get"]
    with pytest.raises(TypeError, match="read-only"):
        client.batched_get_into([prefix + "k"], [b"immutable"])
    with pytest.raises(TypeError, match="read-only"):
        client.batched_get_into([prefix + "k"], [memoryview(bytearray(4)).toreadonly()])
    frozen = np.zeros(4, dtype=np.uint8)
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match="read-only"):
        client.batched_get_into([prefix + "k"], [frozen])
    with pytest.raises(ValueError, match="not C-contiguous"):
        client.batched_get_into([prefix + "k"], [np.zeros((8, 8), dtype=np.uint8)[:, 2]])
    with pytest.raises(ValueError, match="not C-contiguous"):
        client.batched_get_into([prefix + "k"], [memoryview(bytearray(16))[::2]])
    with pytest.raises(TypeError, match="buffer protocol"):
        client.batched_get_into([prefix + "k"], ["a str"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="buffer protocol"):
        client.batched_get_into([prefix + "k"], [None])  # type: ignore[list-item]
    slab = bytearray(100)
    with pytest.raises(ValueError, match="overlap"):
        client.batched_get_into([prefix + "k", prefix + "k"], [memoryview(slab)[:60], memoryview(slab)[50:]])
    with pytest.raises(ValueError, match="one buffer per key"):
        client.batched_get_into([prefix + "k"], [bytearray(1), bytearray(1)])
    assert client.stats()["requests"]["get"] == before, "nothing was sent"
    assert client.batched_get_into([prefix + "k"], [bytearray(1)]) == [1]


def test_writes_refuse_what_is_not_a_buffer(client: Client, prefix: str) -> None:
    with pytest.raises(TypeError, match="value 1 must support the buffer protocol"):
        client.batched_put([prefix + "a", prefix + "b"], [b"ok", "text"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a single bytes"):
        client.batched_put([prefix + "a"], b"abc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not C-contiguous"):
        client.put(prefix + "a", np.zeros((4, 4), dtype=np.uint8)[:, 1])
    with pytest.raises(ValueError, match="one value per key"):
        client.batched_put([prefix + "a", prefix + "b"], [b"1"])
    assert client.batched_get([prefix + "a", prefix + "b"]) == [None, None], "nothing was written"


def test_a_buffer_lent_to_a_write_is_free_again_after_it(client: Client, prefix: str) -> None:
    """A bytearray lent to the workers (64 KiB and up are not copied) is released when the call returns: it can
    be resized again, and later changes to it do not change what was stored."""
    data = bytearray(value_of(prefix, 1, 1 << 20))
    client.put(prefix + "k", data)
    data.extend(b"more")  # a still-exported buffer would raise BufferError here
    data[0:4] = b"XXXX"
    assert client.get(prefix + "k") == value_of(prefix, 1, 1 << 20)


def test_chunk_store_reads_into_buffers_too(client: Client, prefix: str) -> None:
    store = kvcache_redis.ChunkStore(client, "framed", namespace=prefix)
    keys = [kvcache_redis.ChunkKey("m/x", 1, 0, f"{i:x}", "bfloat16") for i in range(3)]
    payloads = [value_of(prefix, i, 1 << 20) for i in range(3)]
    store.batched_put(keys[:2], payloads[:2])
    out = [np.zeros(1 << 20, dtype=np.uint8) for _ in range(3)]
    assert store.batched_get_into(keys, out) == [1 << 20, 1 << 20, None]
    assert out[0].tobytes() == payloads[0] and out[1].tobytes() == payloads[1]
    with pytest.raises(InvalidInputError, match="more than the buffer"):
        store.batched_get_into(keys[:1], [bytearray(10)])  # the only key failed: its own error
    with pytest.raises(BatchError) as raised:
        store.batched_get_into(keys[:2], [bytearray(10), np.zeros(1 << 20, dtype=np.uint8)])
    assert isinstance(raised.value.errors[0], InvalidInputError) and raised.value.results[1] == 1 << 20
