"""Ctrl-C and os.fork(): a KeyboardInterrupt reaches a thread blocked in a call within about 100 ms and leaves the
client usable; a client inherited across a fork raises ForkedError in the child instead of deadlocking."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

import kvcache_redis
from kvcache_redis import Client

from .conftest import Deployment


def interrupted_after(delay: float, call: Callable[[], object]) -> float:
    """Runs `call` on the main thread, sends this process SIGINT after `delay`; how long after the signal the
    KeyboardInterrupt arrived."""
    sent: list[float] = []

    def ctrl_c() -> None:
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(delay, ctrl_c)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
        return time.monotonic() - sent[0]
    finally:
        timer.cancel()


def test_ctrl_c_interrupts_a_blocked_call_and_the_client_stays_usable(own_standalone: Deployment, prefix: str) -> None:
    assert threading.current_thread() is threading.main_thread()
    pid = own_standalone.nodes[0].pid
    np = pytest.importorskip("numpy")
    with own_standalone.client(timeout=30.0) as client:
        client.batched_put([prefix + "a", prefix + "b"], [b"x" * 100, b"y" * 200_000])
        os.kill(pid, signal.SIGSTOP)
        try:
            buffers = [np.zeros(100, dtype=np.uint8), np.zeros(200_000, dtype=np.uint8)]
            calls: list[Callable[[], object]] = [
                lambda: client.get(prefix + "a"),
                lambda: client.batched_get([prefix + "a", prefix + "b"]),
                lambda: client.batched_get_into([prefix + "a", prefix + "b"], buffers),
                lambda: client.batched_put([prefix + "c"], [bytes(1 << 20)]),
                lambda: client.batched_contains([prefix + "a"]),
                lambda: client.batched_get_non_blocking([prefix + "a"]).wait(),
                lambda: kvcache_redis.ChunkStore(client).get("m@1@0@ab@bfloat16"),
            ]
            for call in calls:
                late = interrupted_after(0.3, call)
                assert late < 0.2, f"KeyboardInterrupt arrived {late:.3f} s after the signal"
            assert not buffers[0].any() and not buffers[1].any(), "nothing written after the interrupt"
        finally:
            os.kill(pid, signal.SIGCONT)
        assert client.get(prefix + "a", timeout=5) == b"x" * 100
        assert client.batched_get_into([prefix + "a", prefix + "b"], buffers) == [100, 200_000]
        assert buffers[1].tobytes() == b"y" * 200_000


def test_a_buffer_of_an_interrupted_write_stays_exported_until_the_client_lets_go(
    own_standalone: Deployment, prefix: str
) -> None:
    """Ctrl-C during a write whose value is still queued: the call ends at once, and the bytearray it lent stays
    exported (it cannot be resized or freed under the worker) until the write is done; then it is released."""
    pid = own_standalone.nodes[0].pid
    data = bytearray(b"z" * (1 << 20))
    with own_standalone.client(timeout=30.0) as client:
        client.put(prefix + "warm", b"w")
        os.kill(pid, signal.SIGSTOP)
        try:
            late = interrupted_after(0.3, lambda: client.put(prefix + "big", data))
            assert late < 0.2, late
            with pytest.raises(BufferError):
                data.extend(b"!")
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while True:
            client.get(prefix + "warm", timeout=5)  # each call releases what came back since
            try:
                data.extend(b"!")
                break
            except BufferError:
                assert time.monotonic() < deadline, "the buffer was never released"
                time.sleep(0.05)
        assert client.get(prefix + "big") in (None, b"z" * (1 << 20)), "the write landed whole or not at all"


def test_ctrl_c_interrupts_opening(kind: str) -> None:
    """A client opening against a silent seed (a listener that never answers) is interruptible too."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        late = interrupted_after(0.3, lambda: Client(f"redis://127.0.0.1:{port}", connect_timeout=30.0))
        assert late < 0.2, late
    finally:
        silent.close()


def run_in_child(body: Callable[[], int]) -> int:
    """Forks; the child runs `body` and exits with its code (or 99 on an exception, 98 on a hang past 20 s)."""
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        try:
            code = body()
        except BaseException as e:
            os.write(2, f"child: {e!r}\n".encode())
            code = 99
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 98 if os.WTERMSIG(status) == signal.SIGALRM else 200 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def test_a_client_used_after_fork_raises_and_a_new_one_works(standalone: Deployment, prefix: str) -> None:
    """The supported pattern: fork while no call is in flight (as inference servers start their workers), then
    open a client in the child; what the child inherited raises ForkedError and is dropped without waiting."""
    parent = standalone.client()
    store = kvcache_redis.ChunkStore(parent, namespace=prefix)
    parent.put(prefix + "k", b"from parent")
    pending = parent.batched_get_non_blocking([prefix + "k"])
    assert pending.wait(timeout=5) == [b"from parent"]
    time.sleep(0.05)  # the workers back asleep

    def child() -> int:
        calls: list[Callable[[], object]] = [
            lambda: parent.get(prefix + "k"),
            lambda: parent.batched_put([prefix + "x"], [b"x"]),
            lambda: store.batched_contains(["m@1@0@ab@bfloat16"]),
            lambda: pending.wait(timeout=1),
        ]
        for call in calls:
            try:
                call()
                return 1
            except kvcache_redis.ForkedError as e:
                if "os.fork()" not in str(e) or not isinstance(e, RuntimeError):
                    return 2
        parent.close()  # a no-op in the child
        with Client(standalone.url) as fresh:
            if fresh.get(prefix + "k") != b"from parent":
                return 3
            fresh.put(prefix + "child", b"from child")
        return 0  # exiting drops the inherited objects: they must not wait for threads the child lacks

    assert run_in_child(child) == 0
    assert parent.get(prefix + "child") == b"from child"
    assert pending.wait(timeout=5) == [b"from parent"], "answers the same once resolved"
    assert store.batched_contains(["m@1@0@ab@bfloat16"]) == 0
    parent.close()


def test_a_client_inherited_mid_call_raises_in_the_child_and_never_hangs(standalone: Deployment, prefix: str) -> None:
    """Forked while other threads' calls are in flight: the child's inherited client raises ForkedError at once,
    touching none of the locks the parent's threads may have held, and the child exits without waiting."""
    parent = standalone.client()
    parent.put(prefix + "k", b"v")
    busy = True

    def load() -> None:
        while busy:
            parent.batched_get([prefix + "k"] * 8)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for th in threads:
        th.start()
    try:
        for _ in range(5):

            def child() -> int:
                try:
                    parent.get(prefix + "k")
                    return 1
                except kvcache_redis.ForkedError:
                    return 0

            assert run_in_child(child) == 0
    finally:
        busy = False
        for th in threads:
            th.join()
    assert parent.get(prefix + "k") == b"v"
    parent.close()


def test_a_child_that_only_drops_an_inherited_client_exits_at_once(standalone: Deployment) -> None:
    parent = standalone.client()

    def child() -> int:
        nonlocal parent
        del parent
        import gc

        gc.collect()
        return 0

    started = time.monotonic()
    assert run_in_child(child) == 0
    assert time.monotonic() - started < 5
    parent.close()
