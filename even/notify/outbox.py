"""From one committed-to-be audit record to the outbox entries that report it (pure: no SQL,
no clock, no network).

Invariants:
- Events matched by a record: its own `type`, and also `access.emergency` when it is an
  `access.granted` with `details.emergency` true. A subscription to both gets both, each its
  own entry (its own `webhook-id`).
- `standard-webhooks` body: `{"type", "timestamp", "data"}` where the `data` bytes are exactly
  the record's canonical JSON, i.e. the record's JSONL export line without its newline, so a
  receiver can re-hash it against the chain. `timestamp` is the record's own `time`.
- `slack` body: `{"text": …}` built only from record fields, every one of them escaped for
  Slack (`&`, `<`, `>`; control and bidi characters shown escaped), so user text can neither
  mention `@channel`/`@here` nor forge a link. The only link is the one built here, to the
  request in the console, when a console URL is given.
- `webhook-id` is `msg_<uuid7>`, chosen once here and kept across every retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from audit.chain import canonical
from audit.show import escape_text
from even.ids import new_request_id
from even.notify.settings import EMERGENCY, NotificationSettings


@dataclass(frozen=True)
class OutboxEntry:
    """One notification to deliver: what the outbox table stores for it."""

    webhook_id: str
    subscription: str
    event_type: str
    audit_seq: int
    body: bytes


def new_webhook_id() -> str:
    return "msg_" + new_request_id().replace("-", "")


def matched_events(record: Mapping[str, Any]) -> list[str]:
    """The event types one record stands for (its type; plus access.emergency for break-glass)."""
    events = [str(record["type"])]
    details = record.get("details")
    if (
        record["type"] == "access.granted"
        and isinstance(details, Mapping)
        and details.get("emergency") is True
    ):
        events.append(EMERGENCY)
    return events


def entries_for_record(
    subscriptions: Iterable[NotificationSettings],
    record: Mapping[str, Any],
    *,
    console_url: str | None = None,
    new_id: Callable[[], str] = new_webhook_id,
) -> list[OutboxEntry]:
    """The outbox entries to write with `record` (the sealed record, as exported)."""
    events = matched_events(record)
    entries: list[OutboxEntry] = []
    for subscription in subscriptions:
        for event in events:
            if event not in subscription.events:
                continue
            if subscription.format == "slack":
                body = slack_body(event, record, console_url=console_url)
            else:
                body = standard_body(event, record)
            entries.append(
                OutboxEntry(
                    webhook_id=new_id(),
                    subscription=subscription.name,
                    event_type=event,
                    audit_seq=int(record["seq"]),
                    body=body,
                )
            )
    return entries


def standard_body(event_type: str, record: Mapping[str, Any]) -> bytes:
    """`{"type", "timestamp", "data"}`, with `data` spliced in as the record's canonical bytes
    (not re-encoded), so it is byte-for-byte the export line."""
    return b"".join(
        (
            b'{"type":',
            orjson.dumps(event_type),
            b',"timestamp":',
            orjson.dumps(str(record["time"])),
            b',"data":',
            canonical(dict(record)),
            b"}",
        )
    )


_HEADLINES = {
    EMERGENCY: "BREAK-GLASS access granted",
    "access.pending": "Access request waiting for approval",
    "access.granted": "Access granted",
    "access.denied": "Access denied",
    "access.approved": "Access request approved",
    "access.review_overdue": "Break-glass review overdue",
}


def slack_body(
    event_type: str, record: Mapping[str, Any], *, console_url: str | None = None
) -> bytes:
    """`{"text": …}` for a Slack incoming webhook; every record value escaped."""
    headline = _HEADLINES.get(event_type, event_type)
    lines = [f"*{slack_escape(headline)}* ({slack_escape(event_type)})"]
    who, login, host = record.get("username"), record.get("login"), record.get("hostname")
    if who is not None:
        lines.append(f"user: {slack_escape(who)}")
    if host is not None:
        target = f"{login}@{host}" if login is not None else str(host)
        lines.append(f"target: {slack_escape(target)}")
    details = record.get("details")
    if isinstance(details, Mapping):
        for key in ("rule", "mode", "lifetime_minutes", "valid_before", "error"):
            if details.get(key) is not None:
                lines.append(f"{key}: {slack_escape(str(details[key]))}")
    if record.get("reason") is not None:
        lines.append(f"reason: {slack_escape(record['reason'])}")
    request_id = record.get("request_id")
    if console_url and request_id:
        link = f"{console_url.rstrip('/')}/requests/{request_id}"
        lines.append(f"<{_link_safe(link)}|open in the console>")
    lines.append(f"audit seq {int(record['seq'])}")
    return orjson.dumps({"text": "\n".join(lines)})


def slack_escape(value: object) -> str:
    """Slack's three control characters escaped (after control/bidi characters), so `<!channel>`
    or `<https://evil|click>` arrive as text."""
    text = escape_text(str(value))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link_safe(url: str) -> str:
    # Our own URL (config + a UUID), but `|` or `>` in it would still end the link early.
    return slack_escape(url).replace("|", "%7C")
