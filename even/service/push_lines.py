"""Taking pushed lines back off the hosts (SPEC §5): for the grant flow, revoke and the jobs.

The plan a push follows is the one its `access.push_started` record carries, so whatever
dies in between, the lines can be found again from the audit log alone. Removal is
idempotent on the host (odd's revoke), so doing it twice is harmless; the answer is the list
of hosts that could not be cleaned (empty: every host is clean).
"""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine

from audit import store as audit_store
from even.push.plan import PushPlan, plan_from_json
from even.push.runner import PushRunner
from even.store.db import read_only

log = logging.getLogger("even.push")


class PushLines:
    def __init__(self, *, engine: Engine, runner: PushRunner, timeout_seconds: float) -> None:
        self._engine = engine
        self._runner = runner
        self.timeout_seconds = timeout_seconds

    def undo(self, plan: PushPlan, request_id: str) -> list[str]:
        """Remove `plan`'s lines; the hosts left unclean (logged: they hold a working line)."""
        leftovers = self._runner.revoke(plan, timeout=self.timeout_seconds)
        if leftovers:
            log.error("push %s: lines may remain on %s until removed", request_id, leftovers)
        return leftovers

    def pushed_plan(self, request_id: str) -> PushPlan | None:
        """The plan recorded in the request's `access.push_started`, if it has one."""
        with read_only(self._engine) as conn:
            records = audit_store.records_for_request(conn, request_id)
        for record in records:
            if record["type"] == "access.push_started":
                try:
                    return plan_from_json(record["details"].get("push"))
                except ValueError:
                    log.error("push %s: push_started has no usable plan", request_id)
                    return None
        return None

    def revoke_lines(self, request_id: str, *, end_sessions: bool = False) -> list[str]:
        """Remove the request's pushed lines from every host; the hosts that stayed unclean."""
        plan = self.pushed_plan(request_id)
        if plan is None:
            return []  # nothing was ever pushed for it
        return self._runner.revoke(plan, timeout=self.timeout_seconds, end_sessions=end_sessions)
