"""Live policy reload: SIGHUP re-reads `policy.yaml` in this process (SPEC §10).

Owns the reload of one worker: read and validate the file, put the new policy on record, and
only then let it decide. Invariants:

- Fail closed: a policy decides nothing before a `policy.loaded` record with its sha256 is
  committed. If the file is invalid, or the record cannot be written, the old policy stays in
  force and the log says why; the server keeps serving.
- Each distinct new policy is recorded once however many workers reload it: inside the write
  transaction (the global writer order), the last `policy.loaded` in the chain is read and a
  record with the same sha256 is not written again.
- The swap is one attribute assignment (atomic under the GIL): a request decides with the old
  policy or the new one, never a mix of files.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Connection

from audit import store as audit_store
from audit.chain import AuditEvent
from even.errors import ConfigError, StoreUnavailable
from even.policy import Policy
from even.store.db import read_only, transaction
from even.store.unit_of_work import append_record
from even.wiring import Components, load_settings_policy

log = logging.getLogger("even.reload")
POLICY_LOADED = "policy.loaded"
RELOAD_SIGNAL = signal.SIGHUP

_RECORDS = audit_store.audit_records


@dataclass(frozen=True)
class ReloadResult:
    """What one reload did: `changed` (a new policy is in force), `recorded` (this process
    wrote its policy.loaded), `error` (why the old policy stayed), and the hash in force."""

    sha256: str
    changed: bool
    recorded: bool
    error: str | None = None

    @property
    def outcome(self) -> str:
        """For the metrics: reloaded, unchanged or failed."""
        return "failed" if self.error else ("reloaded" if self.changed else "unchanged")


def last_recorded(conn: Connection, *, from_seq: int = 0) -> tuple[int, str | None] | None:
    """(seq, sha256) of the last `policy.loaded` record at or after `from_seq`, if any."""
    query = (
        select(_RECORDS.c.seq, _RECORDS.c.details)
        .where(_RECORDS.c.type == POLICY_LOADED, _RECORDS.c.seq >= from_seq)
        .order_by(_RECORDS.c.seq.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    if row is None:
        return None
    details: dict[str, Any] = orjson.loads(row.details)
    value = details.get("sha256")
    return int(row.seq), value if isinstance(value, str) else None


def last_recorded_sha256(conn: Connection) -> str | None:
    """The sha256 of the last `policy.loaded` record in the chain, if any."""
    found = last_recorded(conn)
    return None if found is None else found[1]


def record_if_new(components: Components, policy: Policy, source: str) -> bool:
    """Commit `policy.loaded` for `policy` unless it is already the last one on record;
    True when this call wrote it. Raises StoreUnavailable.

    The last one may lie millions of records back: it is found first without the writer
    lock, so that under the lock only the records appended since are searched, and grants
    are not held up by a long scan.
    """
    with read_only(components.engine) as conn:
        seen = last_recorded(conn)
    with transaction(components.engine) as conn:
        latest = last_recorded(conn, from_seq=seen[0] if seen else 0) or seen
        if latest is not None and latest[1] == policy.sha256:
            return False
        event = AuditEvent(
            type=POLICY_LOADED,
            details={
                "sha256": policy.sha256,
                "source": source,
                "rules": len(policy.document.rules),
            },
        )
        append_record(conn, event, components.clock.now())
        return True


def reload_policy(components: Components) -> ReloadResult:
    """Re-read the policy file; on success it decides from now on (see the module invariants)."""
    access = components.access
    current: Policy = access.policy
    try:
        candidate = load_settings_policy(components.settings)
    except ConfigError as exc:
        source = components.settings.path(components.settings.policy_file)
        log.error(
            "policy reload failed, keeping sha256 %s: %s: %s",
            current.sha256[:12],
            source,
            exc.message,
        )
        return ReloadResult(current.sha256, changed=False, recorded=False, error=exc.message)
    if candidate.sha256 == current.sha256:
        log.info("policy reload: unchanged (sha256 %s)", current.sha256[:12])
        return ReloadResult(current.sha256, changed=False, recorded=False)
    try:
        recorded = record_if_new(components, candidate, "reload")
    except StoreUnavailable:
        reason = "the audit store is unavailable; send SIGHUP again"
        log.error("policy reload failed, keeping sha256 %s: %s", current.sha256[:12], reason)
        return ReloadResult(current.sha256, changed=False, recorded=False, error=reason)
    access.replace_policy(candidate)
    log.info(
        "policy reloaded: sha256 %s (%d rules)%s",
        candidate.sha256[:12],
        len(candidate.document.rules),
        "" if recorded else ", already on record",
    )
    return ReloadResult(candidate.sha256, changed=True, recorded=recorded)


def install_sighup(
    components: Components, on_result: Callable[[ReloadResult], None] | None = None
) -> Callable[[], None]:
    """Reload on SIGHUP in this process's running event loop; returns the uninstaller.

    Only the main thread may own signals: elsewhere (an app under a test client) this does
    nothing. Reloads run one at a time on a worker thread, so the loop keeps serving.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    busy = asyncio.Lock()
    running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    async def reload_once() -> None:
        async with busy:
            result = await asyncio.to_thread(reload_policy, components)
        if on_result is not None:
            on_result(result)

    def on_signal() -> None:
        task = loop.create_task(reload_once())
        running.add(task)
        task.add_done_callback(running.discard)

    try:
        loop.add_signal_handler(RELOAD_SIGNAL, on_signal)
    except (NotImplementedError, RuntimeError, ValueError):
        return lambda: None

    def uninstall() -> None:
        loop.remove_signal_handler(RELOAD_SIGNAL)

    return uninstall
