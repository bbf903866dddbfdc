"""even.randomness: the kernel's bytes, each handed out once, never across a fork."""

from __future__ import annotations

import os
import threading

import pytest

from even import randomness


class CountingUrandom:
    """A stand-in for os.urandom whose bytes say where they came from (block, position)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, count: int) -> bytes:
        self.calls.append(count)
        block = len(self.calls)
        return bytes((block * 7 + i) % 256 for i in range(count))


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingUrandom:
    fake = CountingUrandom()
    monkeypatch.setattr(randomness.os, "urandom", fake)
    pool = randomness._Pool()
    monkeypatch.setattr(randomness, "random_bytes", pool.take)
    return fake


def test_bytes_are_handed_out_in_order_once_and_blocks_are_not_reused(
    counting: CountingUrandom,
) -> None:
    take = randomness.random_bytes
    drawn = [take(10) for _ in range(409)]  # 4,090 bytes: the first block
    assert counting.calls == [randomness.BLOCK_BYTES]
    assert b"".join(drawn) == CountingUrandom.__call__(CountingUrandom(), 4096)[:4090]
    tail = take(32)  # does not fit in the 6 bytes left: a new block, the rest dropped
    assert counting.calls == [4096, 4096]
    assert tail == bytes((2 * 7 + i) % 256 for i in range(32))
    big = take(10_000)  # larger than a block: a block of its own size
    assert counting.calls[-1] == 10_000 and len(big) == 10_000
    assert take(0) == b""
    with pytest.raises(ValueError):
        take(-1)


def test_threads_never_get_the_same_bytes() -> None:
    seen: list[bytes] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [randomness.random_bytes(16) for _ in range(2000)]
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == len(seen) == 8000


def test_a_forked_child_does_not_hand_out_its_parents_bytes() -> None:
    randomness.random_bytes(8)  # the parent holds a block now
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write, randomness.random_bytes(64))
        finally:
            os._exit(0)
    os.close(write)
    from_child = os.read(read, 64)
    os.close(read)
    os.waitpid(child, 0)
    from_parent = randomness.random_bytes(64)
    assert len(from_child) == 64
    assert from_child != from_parent  # the child drew its own block, not the parent's next bytes
