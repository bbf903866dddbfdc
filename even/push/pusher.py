"""Running odd on bastions and hosts over SSH: the `Pusher` interface and its paramiko version.

Security invariants (SPEC §5):
- Every host key is pinned from `push.known_hosts` under the exact name Even uses; with
  `RejectPolicy`, an unknown key ends the connection before Even authenticates, and a
  different key raises `BadHostKeyException`. No system known_hosts is read, nothing is ever
  added to the pins.
- Only Even's push key authenticates: no agent, no key files found by looking around, and
  never agent forwarding. A host behind a bastion is reached through a `direct-tcpip`
  channel over the bastion's connection, and its own host key is checked like any other.
- Every wait is bounded: TCP connect, handshake, authentication, channel opening and the
  command itself share the caller's time budget; a watchdog closes a channel whose command
  outlives it, since paramiko's exec request itself waits without a timeout.

Performance: one connection per directly reached host (a bastion) is kept and shared by all
threads (paramiko multiplexes channels over one transport), opened with TCP_NODELAY; an exec
on a warm connection costs a round trip or two. A kept connection found dead when opening a
channel (before any command was sent) is replaced once. The session to a host behind a
bastion (the hop) is kept too, until idle for `hop_idle_seconds` (0: never kept), with the
checks of `even.push.hops`: every reuse re-checks its host key against the current pins and
falls back to a new session when anything is off.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

import paramiko

from even.push.errors import (
    AuthenticationFailed,
    CommandFailed,
    HostKeyRejected,
    HostUnreachable,
    PushConfigError,
    PushTimeout,
)
from even.push.hops import HopPool
from even.push.known_hosts import KnownHostsError, KnownHostsFile, lookup_name
from even.push.transport import acking_transport

log = logging.getLogger("even.push")

MAX_OUTPUT = 64 * 1024  # odd prints a line or a short list; more is cut, never buffered
KEEPALIVE_SECONDS = 30  # notices a kept connection that died while idle
_DRAIN_TIMEOUT = 1.0
# A kept connection answers a channel open in a round trip; one that does not within this is
# treated as dead (nothing was sent yet) and replaced by a new connection.
_REUSED_OPEN_TIMEOUT = 3.0
HOP_IDLE_SECONDS = 60.0


@dataclass(frozen=True)
class Destination:
    """A host to run a command on: `name` is pinned in known_hosts and, behind a bastion,
    sent in the direct-tcpip request (so the bastion's `permitopen` sees exactly it)."""

    name: str
    port: int = 22
    via: Destination | None = None


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


class Pusher(Protocol):
    def run(self, destination: Destination, command: str, *, timeout: float) -> CommandResult:
        """Run `command` (odd's forced command sees it) and return its outcome.

        Raises a `PushError` when the host cannot be reached, authenticated or trusted, or
        does not answer within `timeout` seconds; a non-zero exit is a result, not an error.
        """
        ...

    def close(self) -> None: ...


class _Stale(Exception):
    """A kept connection turned out dead (or, `alive`, refused a channel) before the command
    was sent: safe to retry on another connection."""

    def __init__(self, *, alive: bool = False) -> None:
        super().__init__()
        self.alive = alive


class _Unpinned(Exception):
    def __init__(self, name: str, fingerprint: str) -> None:
        super().__init__(name)
        self.name, self.fingerprint = name, fingerprint


class _RejectUnpinned(paramiko.RejectPolicy):
    """RejectPolicy that says which key the host offered, for the operator's error message."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> NoReturn:
        raise _Unpinned(hostname, key.fingerprint)


class ParamikoPusher:
    def __init__(
        self,
        *,
        user: str,
        private_key: Path,
        known_hosts: Path,
        host_addresses: Mapping[str, tuple[str, int]] | None = None,
        connect_timeout: float = 5.0,
        hop_idle_seconds: float = HOP_IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._user = user
        self._key = _load_private_key(private_key)
        self._known = KnownHostsFile(known_hosts)
        self._addresses = dict(host_addresses or {})
        self._connect_timeout = connect_timeout
        self._guard = threading.Lock()
        self._clients: dict[tuple[str, int], paramiko.SSHClient] = {}
        self._connecting: dict[tuple[str, int], threading.Lock] = {}
        self._hops = HopPool(idle_seconds=hop_idle_seconds, clock=clock)

    def run(self, destination: Destination, command: str, *, timeout: float) -> CommandResult:
        deadline = time.monotonic() + timeout
        first = destination.via or destination
        for attempt in (1, 2):
            transport, reused = self._transport(first, deadline, fresh=attempt == 2)
            try:
                if destination.via is None:
                    return _exec(transport, destination.name, command, deadline)
                return self._hop(transport, destination, command, deadline)
            except _Stale as exc:
                self._drop((first.name, first.port), transport)
                if not reused:
                    raise HostUnreachable(first.name, "the connection closed") from exc
                log.info("push: kept connection to %s was closed; reconnecting", first.name)
        raise AssertionError("unreachable")  # the second attempt never raises _Stale out

    def close(self) -> None:
        """Close every kept connection (hops first, then the bastions they ride on)."""
        self._hops.close()
        with self._guard:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- connections ----------------------------------------------------------------------

    def _transport(
        self, destination: Destination, deadline: float, *, fresh: bool
    ) -> tuple[paramiko.Transport, bool]:
        """The kept connection to `destination` (reused=True), or a new one."""
        key = (destination.name, destination.port)
        with self._guard:
            lock = self._connecting.setdefault(key, threading.Lock())
        # One connection attempt per host at a time: concurrent grants share its result.
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise PushTimeout(destination.name, "timed out waiting for the connection")
        try:
            with self._guard:
                client = self._clients.get(key)
            transport = client.get_transport() if client is not None else None
            if not fresh and transport is not None and transport.is_active():
                return transport, True
            if client is not None:
                self._drop(key, transport)
            client = self._connect_direct(destination, deadline)
            with self._guard:
                self._clients[key] = client
            transport = client.get_transport()
            assert transport is not None  # connect() succeeded
            transport.set_keepalive(KEEPALIVE_SECONDS)
            return transport, False
        finally:
            lock.release()

    def _drop(self, key: tuple[str, int], transport: paramiko.Transport | None) -> None:
        with self._guard:
            client = self._clients.get(key)
            if client is None or client.get_transport() is not transport:
                return  # another thread already replaced it
            del self._clients[key]
        client.close()

    def _connect_direct(self, destination: Destination, deadline: float) -> paramiko.SSHClient:
        host, port = self._addresses.get(destination.name, (destination.name, destination.port))
        wait = min(self._connect_timeout, _remaining(destination.name, deadline))
        try:
            sock = socket.create_connection((host, port), timeout=wait)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            message = f"cannot connect to {host}:{port}: {reason}"
            raise HostUnreachable(destination.name, message) from exc
        # paramiko leaves Nagle on; without it every small SSH packet waits for an ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            return self._client(destination, sock, deadline)
        except BaseException:
            sock.close()
            raise

    def _hop(
        self, bastion: paramiko.Transport, destination: Destination, command: str, deadline: float
    ) -> CommandResult:
        """Run `command` on a host behind a bastion: on the kept hop session if there is a
        usable one (even.push.hops), else on a new one, which is then kept."""
        via = destination.via
        assert via is not None
        key = (via.name, via.port, destination.name, destination.port)
        transport = self._hops.take(key, bastion, lambda k: self._still_pinned(destination, k))
        if transport is not None:
            try:
                return _exec(transport, destination.name, command, deadline, reused=True)
            except _Stale as exc:  # nothing was sent: a new session is as safe as the first try
                if not exc.alive:  # a live one carries other threads' commands: leave it
                    self._hops.drop(key, transport)
                log.info("push: kept hop to %s unusable; opening a new one", destination.name)
            finally:
                self._hops.release(key, transport)
        client = self._open_hop(bastion, destination, deadline)
        transport = client.get_transport()
        assert transport is not None  # connect() succeeded
        kept = self._hops.keep(key, client, bastion)
        if kept:
            transport.set_keepalive(KEEPALIVE_SECONDS)
        try:
            return _exec(transport, destination.name, command, deadline)
        except _Stale as exc:  # the target's own connection, not the bastion's
            self._hops.drop(key, transport)
            raise HostUnreachable(destination.name, "the connection closed") from exc
        finally:
            if kept:
                self._hops.release(key, transport)
            else:
                client.close()

    def _open_hop(
        self, bastion: paramiko.Transport, destination: Destination, deadline: float
    ) -> paramiko.SSHClient:
        via = destination.via
        assert via is not None
        wait = min(self._connect_timeout, _remaining(destination.name, deadline))
        try:
            channel = bastion.open_channel(
                "direct-tcpip", (destination.name, destination.port), ("127.0.0.1", 0), timeout=wait
            )
        except paramiko.ChannelException as exc:
            raise HostUnreachable(
                destination.name, f"bastion {via.name} did not open a connection to it: {exc.text}"
            ) from exc
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if not bastion.is_active():
                raise _Stale from exc
            message = f"hop through {via.name} failed: {exc}"
            raise HostUnreachable(destination.name, message) from exc
        return self._client(destination, channel, deadline)

    def _still_pinned(self, destination: Destination, key: paramiko.PKey) -> bool:
        """Whether `key` (what a kept session verified) is pinned for `destination` now."""
        pins = self._known.current().keys_for(lookup_name(destination.name, destination.port))
        return any(pin.blob == key.asbytes() for pin in pins)

    def _client(self, destination: Destination, sock: Any, deadline: float) -> paramiko.SSHClient:
        """An SSH session over `sock`, authenticated only after the host key matched its pin."""
        name = destination.name
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_RejectUnpinned())
        pinned_name = lookup_name(name, destination.port)
        try:
            pins = self._known.current().keys_for(pinned_name)
        except (KnownHostsError, OSError) as exc:
            raise PushConfigError(name, f"push.known_hosts is unusable: {exc}") from exc
        for pin in pins:
            key = paramiko.PKey.from_type_string(pin.key_type, pin.blob)
            client.get_host_keys().add(pinned_name, pin.key_type, key)
        wait = _remaining(name, deadline)
        try:
            client.connect(
                name,
                port=destination.port,
                username=self._user,
                pkey=self._key,
                sock=sock,
                timeout=wait,
                banner_timeout=wait,
                auth_timeout=wait,
                channel_timeout=wait,
                allow_agent=False,
                look_for_keys=False,
                # Answers sshd's host-keys notice so the first channel opens without waiting
                # ~40 ms for a delayed ACK (even.push.transport).
                transport_factory=acking_transport,
            )
        except BaseException as exc:
            client.close()
            raise _connect_error(name, exc) from exc
        return client


def _connect_error(name: str, exc: BaseException) -> BaseException:
    if isinstance(exc, _Unpinned):
        return HostKeyRejected(
            name,
            f"no host key pinned for {exc.name!r} in push.known_hosts; refused the offered "
            f"key {exc.fingerprint}",
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyRejected(
            name,
            f"host key {exc.key.fingerprint} does not match the key pinned in push.known_hosts",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthenticationFailed(name, "Even's push key was not accepted")
    if isinstance(exc, socket.timeout | TimeoutError):
        return PushTimeout(name, "no SSH handshake within the time budget")
    if isinstance(exc, paramiko.SSHException | EOFError | OSError):
        return HostUnreachable(name, f"SSH handshake failed: {exc or type(exc).__name__}")
    return exc


def _exec(
    transport: paramiko.Transport | None,
    name: str,
    command: str,
    deadline: float,
    *,
    reused: bool = False,
) -> CommandResult:
    """Run `command` in a new session channel. `_Stale` (nothing was sent) when the
    connection is dead, or, on a `reused` one, when the channel does not open at all within
    `_REUSED_OPEN_TIMEOUT`: a connection that is kept may have died unnoticed."""
    if transport is None or not transport.is_active():
        raise _Stale
    wait = _remaining(name, deadline)
    if reused:
        wait = min(wait, _REUSED_OPEN_TIMEOUT)
    try:
        channel = transport.open_session(timeout=wait)
    except paramiko.ChannelException as exc:  # refused (e.g. MaxSessions): alive, but not now
        if reused:
            raise _Stale(alive=True) from exc
        raise HostUnreachable(name, f"cannot open a session: {exc}") from exc
    except (paramiko.SSHException, EOFError, OSError) as exc:
        if reused or not transport.is_active():
            raise _Stale from exc
        raise HostUnreachable(name, f"cannot open a session: {exc}") from exc
    # paramiko waits for the exec reply without a timeout; closing the channel ends any wait.
    watchdog = threading.Timer(_remaining(name, deadline), channel.close)
    watchdog.daemon = True
    watchdog.start()
    try:
        try:
            channel.exec_command(command)
            channel.shutdown_write()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise HostUnreachable(name, f"the command could not be started: {exc}") from exc
        channel.status_event.wait(_remaining(name, deadline))
        status = channel.exit_status  # -1 until an exit status arrives
        if status < 0:
            if time.monotonic() >= deadline:
                raise PushTimeout(name, "odd did not finish within the time budget")
            raise CommandFailed(name, "the connection closed before odd finished", -1)
        channel.settimeout(_DRAIN_TIMEOUT)
        stdout, stderr = _drain(channel.recv), _drain(channel.recv_stderr)
    finally:
        watchdog.cancel()
        channel.close()
    return CommandResult(status, stdout, stderr)


def _drain(read: Any) -> str:
    """What the command printed (already buffered once it exited), up to MAX_OUTPUT bytes."""
    data = bytearray()
    try:
        while len(data) < MAX_OUTPUT:
            chunk: bytes = read(MAX_OUTPUT - len(data))
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass  # no EOF yet: what came is what there is
    return data.decode("utf-8", errors="replace")


def _remaining(name: str, deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise PushTimeout(name, "the push's time budget is used up")
    return left


def _load_private_key(path: Path) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(path)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise PushConfigError("push.private_key", f"cannot load {path}: {exc}") from exc
