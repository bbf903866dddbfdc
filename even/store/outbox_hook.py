"""Notifications written with their record: the unit of work's record hook for the outbox.

`attach_outbox(engine, settings)` makes every audit record appended through `engine` (every
`Transaction.append`, every `append_record`) also write its outbox rows, one per subscribed
event type, into the same transaction through the same unit of work: in a group commit they
are deferred with the batch's other inserts and commit (or roll back) with their record.

Invariants:
- No subscription, no hook: the grant path does nothing extra.
- A record whose type no subscription can match writes nothing (checked before any encoding).
- The console link is `base_url + /console` only when `console:` is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from even.config import Settings
from even.notify.outbox import entries_for_record
from even.notify.settings import EMERGENCY, NotificationSettings
from even.store.outbox_tables import INSERT_ENTRY, entry_rows
from even.store.unit_of_work import Transaction, set_record_hook


class OutboxHook:
    """`hook(tx, record, now)`: the record's outbox rows, inserted through `tx`."""

    def __init__(
        self, subscriptions: Sequence[NotificationSettings], *, console_url: str | None
    ) -> None:
        self._subscriptions = tuple(subscriptions)
        self._console_url = console_url
        types = {event for s in subscriptions for event in s.events}
        if EMERGENCY in types:
            types.add("access.granted")  # a break-glass grant is one
        self._types = frozenset(types)

    def __call__(self, tx: Transaction, record: dict[str, Any], now: datetime) -> None:
        if record["type"] not in self._types:
            return
        entries = entries_for_record(self._subscriptions, record, console_url=self._console_url)
        for row in entry_rows(entries, now):
            tx.insert(INSERT_ENTRY, row)


def console_url(settings: Settings) -> str | None:
    if settings.console is None:
        return None
    return settings.base_url.rstrip("/") + "/console"


def attach_outbox(engine: Engine, settings: Settings) -> None:
    """Write notifications with every record appended through `engine` (none configured: none)."""
    if not settings.notifications:
        set_record_hook(engine, None)
        return
    hook = OutboxHook(settings.notifications, console_url=console_url(settings))
    set_record_hook(engine, hook)
