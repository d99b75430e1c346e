"""Chunks: LMCache's keys and metadata, every layout on standalone and Cluster, and the same bytes as the Rust
crate writes, in both directions."""

from __future__ import annotations

import subprocess

import pytest

import kvcache_redis
from kvcache_redis import ChunkKey, ChunkMeta, ChunkStore, Client, MemoryFormat

from .conftest import Deployment, example

np = pytest.importorskip("numpy")

LAYOUTS = ["framed", "raw", "split:plain", "split:hash_tagged", "split:colon"]


def payload(i: int, size: int) -> bytes:
    """The bytes `examples/chunk_roundtrip.rs` writes for chunk `i`: byte j = (31 j + 7 i + (j >> 10)) mod 251."""
    j = np.arange(size, dtype=np.uint64)
    return bytes(((31 * j + 7 * i + (j >> 10)) % 251).astype(np.uint8).tobytes())


def store_for(client: Client, spec: str, namespace: str, size: int) -> ChunkStore:
    if spec == "raw":
        return ChunkStore(client, "raw", size=size, namespace=namespace)
    if spec.startswith("split:"):
        return ChunkStore(client, "split", naming=spec.split(":")[1], namespace=namespace)  # type: ignore[arg-type]
    return ChunkStore(client, "framed", namespace=namespace)


def test_chunk_keys_are_lmcaches() -> None:
    text = "meta-llama/Llama-3.1-8B-Instruct@1@0@1a2b3c@bfloat16"
    key = ChunkKey.parse(text)
    assert (key.model, key.world_size, key.worker_id, key.chunk_hash, key.dtype) == (
        "meta-llama/Llama-3.1-8B-Instruct",
        1,
        0,
        "1a2b3c",
        "bfloat16",
    )
    assert str(key) == text and key == ChunkKey("meta-llama/Llama-3.1-8B-Instruct", 1, 0, "1a2b3c", "bfloat16")
    assert len({key, ChunkKey.parse(text)}) == 1
    layered = ChunkKey("m", 8, 3, ChunkKey.hash_of_int(-255), "half", layer=5, tags=[("user", "alice")])
    assert str(layered) == "m@8@3@-ff@half@5@user%alice"
    assert ChunkKey.parse(str(layered)) == layered and layered.tags == [("user", "alice")]
    assert ChunkKey.hash_of_bytes(b"\x00\xab") == "00ab"
    for bad in ["no-ats", "m@x@0@ab@bfloat16", "m@1@0@ab@float8"]:
        with pytest.raises(ValueError):
            ChunkKey.parse(bad)
    with pytest.raises(ValueError, match="dtype"):
        ChunkKey("m", 1, 0, "ab", "float128")


def test_chunk_meta_is_lmcaches() -> None:
    meta = ChunkMeta(MemoryFormat.KV_2LTD, "bfloat16", [2, 32, 256, 1024])
    assert meta.fmt is MemoryFormat.KV_2LTD and meta.dtype == "bfloat16" and meta.dtype_code == 3
    assert meta.shape == (2, 32, 256, 1024)
    assert meta == ChunkMeta("KV_2LTD", "bfloat16", (2, 32, 256, 1024)) == ChunkMeta(1, "bfloat16", [2, 32, 256, 1024])
    assert ChunkMeta(MemoryFormat.HS_TD, "half", [7]).shape == (7,)
    with pytest.raises(ValueError, match="no code for dtype"):
        ChunkMeta(MemoryFormat.KV_2LTD, "int8", [1])
    with pytest.raises(ValueError, match="at most 4"):
        ChunkMeta(MemoryFormat.KV_2LTD, "half", [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="unknown memory format"):
        ChunkMeta("KV_9", "half", [1])


@pytest.mark.parametrize("spec", LAYOUTS)
def test_every_layout_round_trips(client: Client, prefix: str, spec: str) -> None:
    size = 1 << 16
    store = store_for(client, spec, prefix, size)
    keys = [ChunkKey("m/x", 1, 0, f"{i:x}", "bfloat16") for i in range(5)]
    meta = None if spec == "raw" else ChunkMeta(MemoryFormat.KV_2LTD, "bfloat16", [2, 1, size // 4, 1])
    store.batched_put(keys[:3] + keys[4:], [payload(i, size) for i in (0, 1, 2, 4)], meta)
    assert store.batched_contains(keys) == 3
    got = store.batched_get([*keys, str(keys[0])])
    assert [c.payload if c else None for c in got] == [
        payload(0, size),
        payload(1, size),
        payload(2, size),
        None,
        payload(4, size),
        payload(0, size),
    ]
    assert all(c is None or c.meta == meta for c in got)
    prefix_chunks = store.batched_get_non_blocking(keys).wait(timeout=5)
    assert [c.payload for c in prefix_chunks] == [payload(i, size) for i in range(3)]
    one = store.get(keys[1])
    assert one is not None and one.payload == payload(1, size)
    assert store.get(keys[3]) is None
    store.put(keys[3], payload(3, size), meta, priority="put", timeout=5)
    assert store.batched_contains(keys) == 5
    assert store.layout == spec.split(":")[0]
    if spec == "raw":
        with pytest.raises(kvcache_redis.InvalidInputError, match="raw-layout chunk must be"):
            store.put(keys[0], b"short")


def test_store_keys_and_bad_layouts(client: Client) -> None:
    key = "m@1@0@ab@bfloat16"
    assert ChunkStore(client, namespace="ns:").store_key(key) == "ns:" + key
    split = ChunkStore(client, "split", naming="hash_tagged")
    assert split.split_keys(key) == ("{" + key + "}:kv_bytes", "{" + key + "}:metadata")
    assert split.split_keys(key, "plain") == (key + "kv_bytes", key + "metadata")
    assert split.split_keys(key, "colon") == (key + ":kv_bytes", key + ":metadata")
    with pytest.raises(ValueError, match="needs size"):
        ChunkStore(client, "raw")
    with pytest.raises(ValueError, match="bad layout"):
        ChunkStore(client, "zip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad naming"):
        ChunkStore(client, "split", naming="dashed")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ChunkKey or an LMCache key string"):
        ChunkStore(client).get(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", LAYOUTS)
def test_rust_and_python_write_the_same_bytes(deployment: Deployment, prefix: str, spec: str) -> None:
    """Chunks the Rust crate wrote are read from Python, chunks Python wrote are read by Rust, and the stored
    values are identical byte for byte."""
    redis = pytest.importorskip("redis")
    count, size = 6, (1 << 20) + 4
    tool = str(example("chunk_roundtrip"))
    from_rust, from_python = prefix + "rust:", prefix + "python:"
    subprocess.run([tool, "write", deployment.url, spec, from_rust, str(count), str(size)], check=True)
    with deployment.client() as client:
        rust_store = store_for(client, spec, from_rust, size)
        python_store = store_for(client, spec, from_python, size)
        keys = [ChunkKey("interop/model", 1, 0, f"{i:x}", "bfloat16") for i in range(count)]
        meta = None if spec == "raw" else ChunkMeta(MemoryFormat.KV_2LTD, "bfloat16", [2, 1, size // 4, 1])
        for i, c in enumerate(rust_store.batched_get(keys)):
            assert c is not None and c.payload == payload(i, size) and c.meta == meta, f"chunk {i}"
        python_store.batched_put(keys, [np.frombuffer(payload(i, size), dtype=np.uint8) for i in range(count)], meta)
        names = [
            list(python_store.split_keys(k)) if spec.startswith("split") else [python_store.store_key(k)] for k in keys
        ]
    checked = subprocess.run([tool, "verify", deployment.url, spec, from_python, str(count), str(size)])
    assert checked.returncode == 0, "Rust read back what Python wrote"
    admin = (redis.RedisCluster if deployment.topology == "cluster" else redis.Redis).from_url(deployment.url)
    try:
        for stored in names:
            for name in stored:
                ours, theirs = admin.get(name), admin.get(name.replace(from_python, from_rust))
                assert ours is not None and ours == theirs, name
    finally:
        admin.close()
