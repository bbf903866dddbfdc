"""Where a grant's server CPU goes, by phase: `cpu_per_grant.py --phases`.

Wraps the grant path's functions (by name, in the modules that call them, so it works on an
older tree too) with per-thread CPU timers (`time.thread_time_ns`): only this thread's CPU is
counted, so waiting for the GIL, a lock or the disk is not, and the phases of the event loop
and of the group-commit writer thread can be told apart. Functions that await are timed only
where they do not suspend (a cached token); a phase missing from a tree is reported as such.
Per grant = total CPU in the phase / grants answered. Not a profiler: a few timers, ~1 µs each.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

_totals: dict[str, int] = defaultdict(int)
_missing: list[str] = []

_GRANTS = "even.service.certificate_access"
# (label, module, attribute path): on the event loop thread, in the order a grant meets them.
LOOP_PHASES = (
    ("authenticate (cached token, rate limits)", "even.api.grant_lane", "authenticate"),
    ("read and validate the JSON body", "even.api.grant_lane", "read_json"),
    ("check names and the public key", _GRANTS, "CertificateGrants.validate"),
    ("draft: decide, sign, build records (all)", _GRANTS, "CertificateGrants.draft"),
    ("  of which: request id", _GRANTS, "new_request_id"),
    ("  of which: sign the certificate", _GRANTS, "sign"),
    ("  of which: access.granted event and rows", _GRANTS, "grant_records"),
    ("  of which: access.requested event", _GRANTS, "requested_event"),
    ("after the commit: receipt and view", _GRANTS, "CertificateGrants.answer"),
    ("answer document (JSON-ready)", "even.api.routes.access", "grant_document"),
    ("answer document (JSON-ready)", "even.api.routes.access", "AccessGrantAnswer.from_view"),
    ("answer document (JSON-ready)", "even.api.routes.access", "AccessGrantAnswer.model_dump"),
)  # fmt: skip
WRITER_PHASES = (
    ("writer: one grant's records and rows", _GRANTS, "CertificateGrants.record"),
    ("writer: deferred INSERTs", "even.store.unit_of_work", "Transaction.flush"),
    ("writer: whole batch under the lock", "even.store.writer", "GroupCommitWriter._run_together"),
    ("writer: thread total (batch + answers)", "even.store.writer", "GroupCommitWriter._commit"),
)  # fmt: skip


def install() -> None:
    """Wrap every phase found (call once the application is built)."""
    for label, module_name, path in LOOP_PHASES + WRITER_PHASES:
        owner: Any = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent, None)
        original = getattr(owner, name, None) if owner is not None else None
        if original is None:
            _missing.append(f"{label} ({module_name}.{path})")
            continue
        setattr(owner, name, _timed(label, original))


def _timed(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time_ns()
            try:
                return await function(*args, **kwargs)
            finally:
                _totals[label] += time.thread_time_ns() - started

        return timed_async

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time_ns()
        try:
            return function(*args, **kwargs)
        finally:
            _totals[label] += time.thread_time_ns() - started

    return timed


def report(grants: int, process_cpu_us_per_grant: float) -> str:
    """The table: µs of CPU per grant for each phase found, and what the rest was."""
    per = {label: total / 1000 / max(grants, 1) for label, total in _totals.items()}
    lines = ["| phase | µs per grant |", "|---|---:|"]
    seen: set[str] = set()
    for label, _module, _path in LOOP_PHASES + WRITER_PHASES:
        if label in per and label not in seen:
            seen.add(label)
            lines.append(f"| {label} | {per[label]:.1f} |")
    writer = per.get("writer: thread total (batch + answers)", 0.0)
    top_level = [label for label, _m, _p in LOOP_PHASES if not label.startswith("  ")]
    loop_measured = sum(per.get(label, 0.0) for label in dict.fromkeys(top_level))
    rest = process_cpu_us_per_grant - writer - loop_measured
    lines.append(f"| event loop, rest (ASGI layers, middleware, metrics, awaits) | {rest:.1f} |")
    lines.append(f"| **process total** | **{process_cpu_us_per_grant:.1f}** |")
    if _missing:
        lines.append("")
        lines.append("not in this tree: " + "; ".join(_missing))
    return "\n".join(lines)
