"""Kept hops: Even's SSH sessions to hosts behind a bastion, reused until they go idle.

A host behind a bastion is reached by an SSH session that Even itself runs end to end (paramiko)
inside a `direct-tcpip` channel of its kept bastion connection. Opening one costs the bastion's
TCP connect to the host, a key exchange and authentication (~25 ms on the namespace lab, plus
~40 ms for the first channel before even.push.transport answered sshd's host-keys notice: ~68
of a warm grant's ~120 ms, bench/README.md), so the session is kept here and the next command
to the same host through the same bastion reuses it.

Why not OpenSSH's ControlMaster: Even does not run `ssh`; there is no client on the bastion and
no control socket on any disk that another local user or process could connect to. The kept
session is an object in Even's memory, authenticated with Even's push key after its host key
matched the pin, exactly like a fresh one.

Invariants (checked by `take`, every time, before a kept hop carries a command):
- its transport is active, and the bastion connection it rides on is the one Even keeps now
  (a hop over a replaced or closed bastion connection is never used);
- it has been idle for less than `idle_seconds` and is younger than `max_age_seconds`;
- the host key it verified is still pinned for its name in `push.known_hosts` as the file is
  now (after a pin is removed or changed, the fresh connection meets the new pins);
- otherwise it is retired (never used again; closed at once, or as soon as the commands other
  threads run on it end, never cut off mid-command) and the caller connects afresh, so a stale
  hop fails safe.
A hop found dead when opening a channel (before any command was sent) is replaced once by the
caller. A reaper thread closes hops once idle or too old, even when no push comes; hops that
are running a command are left until it ends. `close()` ends the reaper and every hop.
Revoking Even's push key on a host stops new sessions at once; a kept one ends within
`idle_seconds` of its last use and at most `max_age_seconds` after it opened (or when Even
stops).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

HopKey = tuple[str, int, str, int]  # bastion name, port, host name, port
MAX_AGE_SECONDS = 600.0


@dataclass
class _Hop:
    client: paramiko.SSHClient
    transport: paramiko.Transport
    bastion: paramiko.Transport
    created: float
    last_used: float
    busy: int = 0  # commands running on it now


class HopPool:
    """The kept hop sessions, keyed by (bastion, host); thread-safe."""

    def __init__(
        self,
        *,
        idle_seconds: float,
        max_age_seconds: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._hops: dict[HopKey, _Hop] = {}
        self._retired: list[_Hop] = []  # out of use, closed when their last command ends
        self._closing: list[_Hop] = []  # to close once the lock is released
        self._guard = threading.Condition()
        self._reaper: threading.Thread | None = None
        self._changes = 0  # bumped whenever a hop is kept or released: the reaper looks again

    @property
    def enabled(self) -> bool:
        return self.idle_seconds > 0

    def take(
        self,
        key: HopKey,
        bastion: paramiko.Transport,
        still_pinned: Callable[[paramiko.PKey], bool],
    ) -> paramiko.Transport | None:
        """The kept hop for `key`, marked busy, if every invariant holds; else None, and the
        kept hop is retired (closed now, or when the commands still running on it end).
        Give a returned hop back with `release`."""
        with self._guard:
            hop = self._hops.get(key)
            if hop is None:
                return None
            now = self._clock()
            usable = (
                hop.transport.is_active()
                and hop.bastion is bastion
                and bastion.is_active()
                and (hop.busy > 0 or now - hop.last_used < self.idle_seconds)
                and now - hop.created < self.max_age_seconds
            )
            if usable:
                hop.busy += 1
            else:
                self._retire(key, hop)
        if not usable:
            self._close_pending()
            return None
        # The pin check reads the file (when it changed): outside the lock.
        if _pinned(hop.transport, still_pinned):
            return hop.transport
        self.drop(key, hop.transport)
        self.release(key, hop.transport)
        return None

    def _retire(self, key: HopKey, hop: _Hop) -> None:
        """(Under the lock.) No new command on `hop`: closed at once if idle, else when the
        commands running on it end (closing it would cut them off mid-command)."""
        del self._hops[key]
        if hop.busy == 0:
            self._closing.append(hop)
        else:
            self._retired.append(hop)

    def _close_pending(self) -> None:
        """Close the hops retired while the lock was held (outside it: close may block)."""
        with self._guard:
            closing, self._closing = self._closing, []
        for hop in closing:
            hop.client.close()

    def keep(self, key: HopKey, client: paramiko.SSHClient, bastion: paramiko.Transport) -> bool:
        """Keep a new hop (marked busy: `release` it after its command); False when it is not
        kept (keeping is off, or another thread kept one first), and the caller closes it
        after use."""
        transport = client.get_transport()
        if transport is None or not self.enabled:
            return False
        with self._guard:
            if key in self._hops:
                return False
            now = self._clock()
            self._hops[key] = _Hop(client, transport, bastion, created=now, last_used=now, busy=1)
            if self._reaper is None:
                self._reaper = threading.Thread(
                    target=self._reap_loop, name="even-push-hops", daemon=True
                )
                self._reaper.start()
            self._changes += 1
            self._guard.notify_all()
        return True

    def release(self, key: HopKey, transport: paramiko.Transport) -> None:
        """A command on a kept hop ended: it is idle from now (a retired one is closed once
        its last command ended)."""
        with self._guard:
            hop = self._hops.get(key)
            if hop is not None and hop.transport is transport:
                hop.busy = max(0, hop.busy - 1)
                hop.last_used = self._clock()
                self._changes += 1
                self._guard.notify_all()
            for retired in self._retired:
                if retired.transport is transport:
                    retired.busy -= 1
                    if retired.busy <= 0:
                        self._retired.remove(retired)
                        self._closing.append(retired)
                    break
        self._close_pending()

    def drop(self, key: HopKey, transport: paramiko.Transport) -> None:
        """Retire the kept hop for `key` if it is still `transport` (found dead, or not
        answering): closed at once, or when the commands still running on it end."""
        with self._guard:
            hop = self._hops.get(key)
            if hop is None or hop.transport is not transport:
                return  # already replaced or gone
            self._retire(key, hop)
        self._close_pending()

    def reap(self) -> float | None:
        """Close every idle hop past its idle or age limit; seconds until the next may be due
        (None: no hop kept)."""
        expired: list[_Hop] = []
        next_due: float | None = None
        with self._guard:
            now = self._clock()
            for key, hop in list(self._hops.items()):
                due = min(hop.last_used + self.idle_seconds, hop.created + self.max_age_seconds)
                if hop.busy == 0 and (due <= now or not hop.transport.is_active()):
                    expired.append(self._hops.pop(key))
                elif hop.busy == 0:
                    next_due = due - now if next_due is None else min(next_due, due - now)
                else:  # busy: look again after it is released (release notifies)
                    next_due = self.idle_seconds if next_due is None else next_due
        for hop in expired:
            hop.client.close()
        return next_due

    def kept(self) -> int:
        with self._guard:
            return len(self._hops)

    def close_hops(self) -> None:
        """Close every kept hop, retired ones too (the reaper keeps running)."""
        with self._guard:
            hops = [*self._hops.values(), *self._retired, *self._closing]
            self._hops, self._retired, self._closing = {}, [], []
        for hop in hops:
            hop.client.close()

    def close(self) -> None:
        """Close every kept hop and end the reaper (a later `keep` starts a new one)."""
        with self._guard:
            reaper, self._reaper = self._reaper, None
            self._guard.notify_all()
        if reaper is not None and reaper is not threading.current_thread():
            reaper.join(timeout=5)
        self.close_hops()

    def _reap_loop(self) -> None:
        me = threading.current_thread()
        while True:
            with self._guard:
                seen = self._changes
            wait = self.reap()
            with self._guard:
                if self._reaper is not me:
                    return
                if self._changes == seen:
                    self._guard.wait(timeout=wait)
                if self._reaper is not me:
                    return


def _pinned(transport: paramiko.Transport, still_pinned: Callable[[paramiko.PKey], bool]) -> bool:
    try:
        key = transport.get_remote_server_key()
    except paramiko.SSHException:
        return False
    try:
        return still_pinned(key)
    except Exception:  # an unusable known_hosts: never reuse; the fresh connect reports it
        return False
