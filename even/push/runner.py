"""A push plan carried out over a `Pusher`: all-or-nothing grants, idempotent revokes.

- `grant` writes every line of the plan, the hosts in parallel (each host's lines in order).
  If any host fails, every host is revoked again (a failed host too: its command may have run
  before the answer was lost) before `GrantFailed` is raised, naming any host left unclean.
  The user cannot use the target's line without the bastion's, and neither outlives a failure.
- `revoke` removes the grant's lines from each host, in parallel; a host that fails is
  reported, the others are still cleaned. odd's revoke is idempotent (removing
  nothing is success), so revoking again after a partial or unknown outcome is always safe.
- A command's answer must be odd's (`granted …` / `revoked …`, exit 0): anything else is a
  failure, so a host that is not running odd never counts as done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from even.config import parse_address
from even.push.errors import CommandFailed, HostUnreachable, PushError, PushTimeout
from even.push.plan import HostStep, PushKey, PushPlan
from even.push.pusher import Destination, Pusher

MAX_MESSAGE = 200
log = logging.getLogger("even.push")


class GrantFailed(Exception):
    """A grant could not be pushed everywhere; `leftovers` are hosts that may keep a line."""

    def __init__(self, cause: PushError, leftovers: list[str]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.leftovers = leftovers


class PushRunner:
    def __init__(self, pusher: Pusher, *, bastion_addresses: Mapping[str, str]) -> None:
        self._pusher = pusher
        self._bastions = dict(bastion_addresses)

    def close(self) -> None:
        self._pusher.close()

    def grant(
        self, plan: PushPlan, keys: Sequence[PushKey], expires: datetime, *, timeout: float
    ) -> None:
        """Write every line of the plan, the hosts in parallel; all or nothing."""
        deadline = time.monotonic() + timeout
        commands: dict[HostStep, list[str]] = {}
        for step, _grant_id, command in plan.grant_commands(keys, expires):
            commands.setdefault(step, []).append(command)
        outcomes = self._on_each(
            list(commands), lambda step: self._run_all(step, commands[step], "granted", deadline)
        )
        for step, error in outcomes.items():  # in plan order: the first failure is reported
            if error is not None:
                # Every host was attempted, so every host is revoked again.
                raise GrantFailed(_as_push_error(step, error), self.revoke(plan, timeout=timeout))

    def revoke(
        self,
        plan: PushPlan,
        steps: Sequence[HostStep] | None = None,
        *,
        timeout: float,
        end_sessions: bool = False,
    ) -> list[str]:
        """Remove the plan's lines from `steps` (default: all), in parallel; the hosts that
        failed (each host has its own time budget)."""
        wanted = list(plan.steps if steps is None else steps)

        def revoke_on(step: HostStep) -> None:
            lines = [c for _, c in plan.revoke_commands([step], end_sessions=end_sessions)]
            self._run_all(step, lines, "revoked", time.monotonic() + timeout)

        failed = []
        for step, error in self._on_each(wanted, revoke_on).items():
            if error is not None:  # any failure leaves this host unclean
                log.warning("push: revoke on %s failed: %s", step.host, error)
                failed.append(step.host)
        return failed

    def _run_all(self, step: HostStep, commands: list[str], answer: str, deadline: float) -> None:
        for command in commands:
            self._expect(step, command, answer, deadline)

    def _on_each(
        self, steps: list[HostStep], action: Callable[[HostStep], None]
    ) -> dict[HostStep, Exception | None]:
        """Run `action` for every step at once (odd's start-up dominates a push, and the
        hosts are independent); wait for all. A BaseException that is not an Exception (the
        process is going down) is re-raised as it is."""
        with ThreadPoolExecutor(max_workers=max(1, len(steps))) as pool:
            futures = {step: pool.submit(action, step) for step in steps}
        outcomes: dict[HostStep, Exception | None] = {}
        for step, future in futures.items():
            error = future.exception()
            if error is not None and not isinstance(error, Exception):
                raise error
            outcomes[step] = error
        return outcomes

    def destination(self, step: HostStep) -> Destination:
        if step.role == "bastion":
            return self._bastion(step.host)
        via = None if step.via is None else self._bastion(step.via)
        return Destination(step.host, 22, via)

    def _bastion(self, name: str) -> Destination:
        address = self._bastions.get(name)
        if address is None:
            raise HostUnreachable(name, "no bastion of this name is configured")
        host, port = parse_address(address)
        return Destination(host, port)

    def _expect(self, step: HostStep, command: str, answer: str, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PushTimeout(step.host, "the push's time budget is used up")
        result = self._pusher.run(self.destination(step), command, timeout=left)
        if result.exit_status != 0:
            reason = _first_line(result.stderr) or "no message"
            raise CommandFailed(
                step.host, f"odd exited with {result.exit_status}: {reason}", result.exit_status
            )
        if not result.stdout.startswith(f"{answer} "):
            raise CommandFailed(step.host, "the answer was not odd's", result.exit_status)


def _as_push_error(step: HostStep, exc: Exception) -> PushError:
    if isinstance(exc, PushError):
        return exc
    return HostUnreachable(step.host, f"unexpected {type(exc).__name__} while pushing")


def _first_line(text: str) -> str:
    line = text.strip().split("\n", 1)[0]
    return "".join(c if c.isprintable() else "?" for c in line)[:MAX_MESSAGE]
