"""The pure part: which events a record stands for, and the bodies built for it."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from audit.chain import AuditEvent, canonical, seal
from even.notify.outbox import entries_for_record, matched_events, slack_body, standard_body
from even.notify.settings import NotificationSettings


def _record(record_type: str = "access.granted", **details: Any) -> dict[str, Any]:
    event = AuditEvent(
        type=record_type,
        username="alice",
        login="root",
        hostname="db-1.prod.example.org",
        request_id="0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee",
        reason="INC-7 disk full — “quoted” ünïcode",
        details=details,
    )
    return seal(event, seq=7, time="2026-01-02T03:04:05.000006Z", prev_hash="0" * 64)


def _sub(name: str, events: list[str], fmt: str = "standard-webhooks") -> NotificationSettings:
    return NotificationSettings.model_validate(
        {"name": name, "url": "https://h.example/x", "events": events, "format": fmt,
         "secret_file": None if fmt == "slack" else "s"}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("record", "events"),
    [
        (_record(), ["access.granted"]),
        (_record(emergency=True), ["access.granted", "access.emergency"]),
        (_record(emergency=False), ["access.granted"]),
        (_record(emergency="yes"), ["access.granted"]),  # only a real true counts
        (_record("access.pending", emergency=True), ["access.pending"]),
    ],
)
def test_matched_events(record: dict[str, Any], events: list[str]) -> None:
    assert matched_events(record) == events


def test_one_entry_per_subscription_and_matched_event_each_with_its_own_id() -> None:
    counter = itertools.count()
    subs = [
        _sub("a", ["access.granted", "access.emergency"]),
        _sub("b", ["access.emergency"], fmt="slack"),
        _sub("c", ["access.pending"]),
    ]
    entries = entries_for_record(
        subs, _record(emergency=True), new_id=lambda: f"msg_{next(counter)}"
    )
    assert [(e.subscription, e.event_type, e.webhook_id) for e in entries] == [
        ("a", "access.granted", "msg_0"),
        ("a", "access.emergency", "msg_1"),
        ("b", "access.emergency", "msg_2"),
    ]
    assert {e.audit_seq for e in entries} == {7}
    assert entries_for_record(subs, _record("keys.updated")) == []


def test_default_webhook_ids_are_unique_and_prefixed() -> None:
    entries = entries_for_record([_sub("a", ["access.granted"])] * 50, _record())
    ids = {e.webhook_id for e in entries}
    assert len(ids) == 50
    assert all(i.startswith("msg_") and len(i) == 36 for i in ids)


def test_the_standard_body_splices_in_the_canonical_record_unchanged() -> None:
    record = _record(emergency=True, principals=["root"], serial=2**53 - 1)
    body = standard_body("access.emergency", record)
    assert body == (
        b'{"type":"access.emergency","timestamp":"2026-01-02T03:04:05.000006Z","data":'
        + canonical(record)
        + b"}"
    )
    assert orjson.loads(body)["data"] == record


def test_slack_text_escapes_every_record_value() -> None:
    record = _record(rule="<!here>", mode="certificate")
    record["reason"] = "<!channel> <https://evil|click here> & \u202eevil\u202c"
    record["username"] = "<@U123>"
    text = orjson.loads(slack_body("access.granted", record))["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt; &lt;https://evil|click here&gt; &amp;" in text
    assert "&lt;@U123&gt;" in text and "&lt;!here&gt;" in text
    assert "\\u202e" in text and "\u202e" not in text


def test_slack_link_to_the_console_only_when_configured() -> None:
    record = _record()
    without = orjson.loads(slack_body("access.granted", record))["text"]
    assert "console" not in without
    linked = orjson.loads(
        slack_body("access.granted", record, console_url="https://even.example/console/")
    )["text"]
    assert (
        "<https://even.example/console/requests/0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"
        "|open in the console>"
    ) in linked
