"""even.push.hops.HopPool: when a kept hop session may carry a command, and when it is closed.

Pure logic with stand-ins for paramiko's client and transports (the real hop is exercised in
tests/integration/test_push_hops_netns.py); time is an injected clock, never a sleep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from even.push.hops import HopPool

KEY = ("bastion.example", 22, "db-1.example", 22)
PINNED = b"pinned-key"


@dataclass
class FakeKey:
    blob: bytes

    def asbytes(self) -> bytes:
        return self.blob


@dataclass
class FakeTransport:
    active: bool = True
    key: bytes = PINNED

    def is_active(self) -> bool:
        return self.active

    def get_remote_server_key(self) -> FakeKey:
        return FakeKey(self.key)


@dataclass
class FakeClient:
    transport: FakeTransport = field(default_factory=FakeTransport)
    closed: bool = False

    def get_transport(self) -> FakeTransport:
        return self.transport

    def close(self) -> None:
        self.closed = True
        self.transport.active = False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pinned(key: Any) -> bool:
    return bool(key.asbytes() == PINNED)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool(clock: Clock) -> Any:
    made = HopPool(idle_seconds=60, max_age_seconds=600, clock=clock)
    yield made
    made.close()


def kept(pool: Any, bastion: FakeTransport) -> FakeClient:
    client = FakeClient()
    assert pool.keep(KEY, client, bastion)
    pool.release(KEY, client.transport)
    return client


def test_a_kept_hop_is_reused_over_the_same_bastion(pool: Any) -> None:
    bastion = FakeTransport()
    client = kept(pool, bastion)
    assert pool.take(KEY, bastion, pinned) is client.transport
    pool.release(KEY, client.transport)
    assert not client.closed and pool.kept() == 1


def test_a_second_hop_for_the_same_host_is_not_kept(pool: Any) -> None:
    bastion = FakeTransport()
    kept(pool, bastion)
    assert not pool.keep(KEY, FakeClient(), bastion)  # the caller closes it after its command
    assert pool.kept() == 1


def test_a_hop_over_another_bastion_connection_is_closed_not_used(pool: Any) -> None:
    client = kept(pool, FakeTransport())
    assert pool.take(KEY, FakeTransport(), pinned) is None  # the bastion was reconnected
    assert client.closed and pool.kept() == 0


@pytest.mark.parametrize("what", ["hop dead", "bastion dead"])
def test_a_dead_hop_or_bastion_is_closed_not_used(pool: Any, what: str) -> None:
    bastion = FakeTransport()
    client = kept(pool, bastion)
    (client.transport if what == "hop dead" else bastion).active = False
    assert pool.take(KEY, bastion, pinned) is None
    assert client.closed


def test_a_hop_whose_key_is_no_longer_pinned_is_closed(pool: Any) -> None:
    bastion = FakeTransport()
    client = kept(pool, bastion)
    assert pool.take(KEY, bastion, lambda key: False) is None
    assert client.closed and pool.kept() == 0


def test_an_unreadable_known_hosts_closes_the_hop(pool: Any) -> None:
    bastion = FakeTransport()
    client = kept(pool, bastion)

    def broken(key: Any) -> bool:
        raise ValueError("line 3: not a known_hosts line")

    assert pool.take(KEY, bastion, broken) is None
    assert client.closed


def test_idle_expiry_closes_the_hop_at_use_and_by_the_reaper(pool: Any, clock: Clock) -> None:
    bastion = FakeTransport()
    client = kept(pool, bastion)
    clock.now += 59.9
    assert pool.reap() == pytest.approx(0.1)
    assert pool.take(KEY, bastion, pinned) is client.transport
    pool.release(KEY, client.transport)  # idle from now again
    clock.now += 60
    assert pool.take(KEY, bastion, pinned) is None and client.closed
    other = kept(pool, bastion)
    clock.now += 60
    assert pool.reap() is None and other.closed and pool.kept() == 0


def test_max_age_ends_reuse_even_when_the_hop_is_never_idle(pool: Any, clock: Clock) -> None:
    bastion = FakeTransport()
    client = kept(pool, bastion)
    for _ in range(12):  # used every 50 s: never idle for 60 s
        clock.now += 50
        transport = pool.take(KEY, bastion, pinned)
        if transport is None:
            break
        pool.release(KEY, transport)
    assert clock.now - 1000.0 == 600 and client.closed


def test_the_reaper_leaves_a_busy_hop_until_its_command_ends(pool: Any, clock: Clock) -> None:
    bastion = FakeTransport()
    client = FakeClient()
    assert pool.keep(KEY, client, bastion)  # busy: its first command is running
    clock.now += 3600
    pool.reap()
    assert not client.closed
    pool.release(KEY, client.transport)
    pool.reap()
    assert client.closed


def test_keeping_off_keeps_nothing(clock: Clock) -> None:
    pool = HopPool(idle_seconds=0, clock=clock)
    assert not pool.keep(KEY, FakeClient(), FakeTransport())
    assert pool.kept() == 0
    pool.close()


def test_close_closes_every_hop_and_ends_the_reaper(pool: Any) -> None:
    client = kept(pool, FakeTransport())
    reaper = pool._reaper
    assert reaper is not None and reaper.is_alive()
    pool.close()
    assert client.closed and pool.kept() == 0
    assert not reaper.is_alive()


@pytest.mark.parametrize("why", ["too old", "unpinned", "dropped as unanswering"])
def test_a_retired_hop_is_closed_only_once_the_commands_on_it_end(
    pool: Any, clock: Clock, why: str
) -> None:
    bastion = FakeTransport()
    client = kept(pool, bastion)
    running = pool.take(KEY, bastion, pinned)  # another thread's command runs on it
    assert running is client.transport
    if why == "too old":
        clock.now += 600
        assert pool.take(KEY, bastion, pinned) is None
    elif why == "unpinned":
        assert pool.take(KEY, bastion, lambda key: False) is None
    else:
        pool.drop(KEY, client.transport)
    assert not client.closed and pool.kept() == 0  # not cut off mid-command, not used again
    assert pool.take(KEY, bastion, pinned) is None
    newer = FakeClient()
    assert pool.keep(KEY, newer, bastion)  # a new hop takes its place meanwhile
    pool.release(KEY, running)
    assert client.closed and not newer.closed
    pool.release(KEY, newer.transport)
    assert pool.take(KEY, bastion, pinned) is newer.transport
