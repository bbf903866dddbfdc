"""Webhook delivery against a real HTTP receiver on loopback that verifies signatures.

Outbox rows are written here the way the grant's transaction will write them: the audit
record appended and its entries inserted in one transaction. The deliverer runs on an
injected clock; backoff is checked by reading the schedule, never by sleeping.
"""

from __future__ import annotations

import base64
import itertools
import os
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from audit import store as audit_store
from audit.chain import AuditEvent
from audit.export import jsonl_lines
from even.clock import FixedClock, SystemClock
from even.config import Settings
from even.notify.outbox import entries_for_record
from even.notify.settings import NotificationSettings
from even.service.notify_deliverer import (
    GIVE_UP_AFTER,
    LEASE,
    MAX_DELAY_SECONDS,
    Deliverer,
    DelivererThread,
    delivery_counts,
    start_deliverer,
)
from even.store import outbox_tables as outbox
from even.store.db import make_engine, read_only, transaction
from even.store.schema import upgrade
from tests.even.webhook_receiver import Receiver

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
EVIL_REASON = "<!channel> <https://evil|click here> & more"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'even.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(secret=SECRET).start()
    yield receiver
    receiver.stop()


def _sub(
    url: str, events: list[str], *, name: str = "security", fmt: str = "standard-webhooks"
) -> NotificationSettings:
    return NotificationSettings.model_validate(
        {
            "name": name,
            "url": url,
            "events": events,
            "format": fmt,
            "secret_file": None if fmt == "slack" else "secret",
        }
    )


def _record(
    engine: Engine,
    subs: list[NotificationSettings],
    now: datetime,
    *,
    record_type: str = "access.granted",
    details: dict[str, Any] | None = None,
    reason: str = "INC-1 fix the disk",
    console_url: str | None = None,
) -> dict[str, Any]:
    """Append one audit record and its outbox entries in one transaction (as a grant will)."""
    event = AuditEvent(
        type=record_type,
        username="alice",
        login="alice",
        hostname="db-1.prod.even.test",
        request_id="0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee",
        reason=reason,
        details=details if details is not None else {"mode": "certificate", "rule": "sre-prod"},
    )
    with transaction(engine) as conn:
        record = audit_store.append(conn, event, now)
        outbox.insert_entries(conn, entries_for_record(subs, record, console_url=console_url), now)
    return record


def _deliverer(
    engine: Engine, subs: list[NotificationSettings], clock: FixedClock, **kwargs: Any
) -> Deliverer:
    secrets = {s.name: (None if s.format == "slack" else SECRET_BYTES) for s in subs}
    return Deliverer(
        engine=engine,
        subscriptions=subs,
        secrets=secrets,
        clock=clock,
        rng=random.Random(7),
        **kwargs,
    )


SECRET_BYTES = base64.b64decode(SECRET.removeprefix("whsec_"))


def _rows(engine: Engine) -> list[Any]:
    with read_only(engine) as conn:
        return list(conn.execute(select(outbox.notification_outbox)).all())


def _now() -> FixedClock:
    return FixedClock(datetime.now(UTC))


def test_each_subscribed_event_arrives_once_signed_with_data_equal_to_the_export_line(
    engine: Engine, receiver: Receiver
) -> None:
    clock = _now()
    subs = [
        _sub(receiver.url, ["access.granted", "access.emergency", "access.pending"]),
        _sub(receiver.url, ["access.pending"], name="approvers"),
    ]
    pending = _record(engine, subs, clock.now(), record_type="access.pending", details={})
    granted = _record(engine, subs, clock.now())
    emergency = _record(engine, subs, clock.now(), details={"emergency": True, "mode": "push"})
    deliverer = _deliverer(engine, subs, clock)
    assert deliverer.run_once() == 5
    assert deliverer.run_once() == 0
    got = receiver.accepted()
    assert all(r.verified for r in receiver.received)
    assert sorted(orjson.loads(r.body)["type"] for r in got) == sorted(
        ["access.pending", "access.pending", "access.granted", "access.granted", "access.emergency"]
    )
    assert set(receiver.ids().values()) == {1}
    with read_only(engine) as conn:
        lines = [line.rstrip(b"\n") for line in jsonl_lines(conn, up_to=3)]
    for body in (r.body for r in got):
        parsed = orjson.loads(body)
        record = {pending["seq"]: pending, granted["seq"]: granted, emergency["seq"]: emergency}[
            parsed["data"]["seq"]
        ]
        line = lines[record["seq"] - 1]
        assert body == (
            b'{"type":"' + parsed["type"].encode() + b'","timestamp":"'
            + record["time"].encode() + b'","data":' + line + b"}"
        )  # fmt: skip
    assert {r.status for r in _rows(engine)} == {"delivered"}


def test_a_receiver_failing_twice_gets_the_same_webhook_id_three_times(
    engine: Engine, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    clock = _now()
    subs = [_sub(receiver.url, ["access.granted"])]
    _record(engine, subs, clock.now())
    deliverer = _deliverer(engine, subs, clock)
    delays = []
    for _ in range(2):
        before = clock.now()
        assert deliverer.run_once() == 1
        (row,) = _rows(engine)
        assert row.status == "pending"
        assert row.last_error == "http 500"
        due = outbox.parse_stamp(row.next_attempt_at)
        delays.append((due - before).total_seconds())
        clock.moment = due - timedelta(milliseconds=1)
        assert deliverer.run_once() == 0  # not due yet
        clock.moment = due
    assert 0.75 <= delays[0] <= 1.25
    assert 1.5 <= delays[1] <= 2.5
    assert deliverer.run_once() == 1
    (row,) = _rows(engine)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 3, None)
    assert list(receiver.ids().values()) == [3]
    assert all(r.verified for r in receiver.received)


def test_a_hanging_receiver_times_out_and_is_retried(engine: Engine, receiver: Receiver) -> None:
    receiver.hang_first, receiver.hang_seconds = 1, 30
    clock = _now()
    subs = [_sub(receiver.url, ["access.granted"])]
    _record(engine, subs, clock.now())
    deliverer = _deliverer(engine, subs, clock, timeout_seconds=0.5)
    assert deliverer.run_once() == 1
    (row,) = _rows(engine)
    assert (row.status, row.last_error) == ("pending", "timeout")
    clock.moment = outbox.parse_stamp(row.next_attempt_at)
    assert deliverer.run_once() == 1
    assert _rows(engine)[0].status == "delivered"
    assert list(receiver.ids().values()) == [2]


def test_the_default_client_times_out_at_5_s_and_follows_no_redirects(engine: Engine) -> None:
    deliverer = _deliverer(engine, [], _now())
    client = deliverer._client
    assert client.timeout.read == client.timeout.connect == 5.0
    assert client.follow_redirects is False
    deliverer.close()


def test_a_redirect_is_a_failure_and_is_not_followed(engine: Engine, receiver: Receiver) -> None:
    elsewhere = Receiver(secret=SECRET).start()
    try:
        receiver.redirect_to = elsewhere.url
        clock = _now()
        subs = [_sub(receiver.url, ["access.granted"])]
        _record(engine, subs, clock.now())
        assert _deliverer(engine, subs, clock).run_once() == 1
        (row,) = _rows(engine)
        assert (row.status, row.last_error) == ("pending", "redirect 302 (not followed)")
        assert elsewhere.received == []
    finally:
        elsewhere.stop()


def test_retries_back_off_to_at_most_an_hour_and_give_up_after_24_hours(
    engine: Engine, receiver: Receiver
) -> None:
    receiver.fail_first, receiver.ignore_timestamp_window = 10**6, True
    clock = _now()
    created = clock.now()
    subs = [_sub(receiver.url, ["access.granted"])]
    _record(engine, subs, created)
    deliverer = _deliverer(engine, subs, clock)
    tries: list[datetime] = []
    while True:
        assert deliverer.run_once() == 1
        tries.append(clock.now())
        (row,) = _rows(engine)
        if row.status != "pending":
            break
        clock.moment = outbox.parse_stamp(row.next_attempt_at)
    assert row.status == "failed"
    assert row.last_error == "http 500"
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(tries)]
    assert max(gaps) <= MAX_DELAY_SECONDS
    assert gaps[:3] == sorted(gaps[:3])  # doubling at first
    assert tries[-1] == created + GIVE_UP_AFTER  # the last try lands on the deadline
    assert row.attempts == len(tries) == len(receiver.received)
    assert set(receiver.ids().values()) == {len(tries)}
    assert all(r.verified for r in receiver.received)


def test_slack_format_arrives_inert(engine: Engine) -> None:
    chat = Receiver().start()
    try:
        clock = _now()
        subs = [_sub(chat.url, ["access.granted"], name="chat", fmt="slack")]
        _record(
            engine,
            subs,
            clock.now(),
            reason=EVIL_REASON,
            console_url="https://even.example/console",
        )
        assert _deliverer(engine, subs, clock).run_once() == 1
        (got,) = chat.accepted()
        assert "webhook-signature" not in got.headers  # no secret configured
        text = orjson.loads(got.body)["text"]
        assert "&lt;!channel&gt; &lt;https://evil|click here&gt; &amp; more" in text
        assert "<!" not in text
        # The one link is ours: the request in the console.
        assert text.count("<") == 1
        assert (
            "<https://even.example/console/requests/0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"
            "|open in the console>" in text
        )
    finally:
        chat.stop()


def test_a_removed_subscription_fails_its_rows(engine: Engine, receiver: Receiver) -> None:
    clock = _now()
    subs = [_sub(receiver.url, ["access.granted"])]
    _record(engine, subs, clock.now())
    assert _deliverer(engine, [], clock).run_once() == 1
    (row,) = _rows(engine)
    assert (row.status, row.last_error) == ("failed", "subscription removed from the config")
    assert receiver.received == []


def test_concurrent_deliverers_deliver_each_row_once(engine: Engine, receiver: Receiver) -> None:
    clock = _now()
    subs = [_sub(receiver.url, ["access.granted"])]
    for _ in range(25):
        _record(engine, subs, clock.now())
    workers = [_deliverer(engine, subs, clock) for _ in range(3)]
    threads = [DelivererThread(w, idle_seconds=0.01) for w in workers]
    for thread in threads:
        thread.start()
    done = threading.Event()
    for _ in range(1000):
        if delivery_counts(engine)["delivered"] == 25:
            done.set()
            break
        done.wait(0.02)
    for thread in threads:
        thread.stop()
    with read_only(engine) as conn:
        rows = conn.execute(select(outbox.notification_outbox)).all()
    not_delivered = [(r.status, r.attempts, r.last_error) for r in rows if r.status != "delivered"]
    assert done.is_set(), f"not delivered: {not_delivered}"
    assert len(receiver.ids()) == 25
    assert set(receiver.ids().values()) == {1}
    assert delivery_counts(engine) == {"pending": 0, "delivered": 25, "failed": 0}


def test_start_deliverer_runs_in_its_own_thread_until_stopped(
    tmp_path: Path, engine: Engine, receiver: Receiver
) -> None:
    (tmp_path / "secret").write_text(SECRET)
    sub = _sub(receiver.url, ["access.granted"])
    # The default database_url, sqlite:///even.db, is the `engine` fixture's file.
    settings = Settings(config_dir=str(tmp_path), notifications=[sub])
    assert start_deliverer(Settings(config_dir=str(tmp_path)), SystemClock()) is None
    thread = start_deliverer(settings, SystemClock())
    assert thread is not None
    try:
        _record(engine, [sub], datetime.now(UTC))
        done = threading.Event()
        for _ in range(500):
            if delivery_counts(engine)["delivered"] == 1:
                done.set()
                break
            done.wait(0.02)
    finally:
        thread.stop()
    assert done.is_set()
    assert [r.verified for r in receiver.received] == [True]


def test_rows_of_a_deliverer_that_died_mid_batch_are_sent_again_with_the_same_id(
    engine: Engine, receiver: Receiver
) -> None:
    clock = _now()
    subs = [_sub(receiver.url, ["access.granted"])]
    _record(engine, subs, clock.now())
    (row,) = _rows(engine)
    # A deliverer claimed the row (and perhaps posted it), then was killed before recording.
    with transaction(engine) as conn:
        (claimed,) = outbox.claim_due(
            conn, now=clock.now(), lease_until=clock.now() + LEASE, limit=10
        )
    assert claimed.webhook_id == row.webhook_id
    deliverer = _deliverer(engine, subs, clock)
    assert deliverer.run_once() == 0  # leased: nobody else posts it meanwhile
    clock.moment += LEASE
    assert deliverer.run_once() == 1
    assert receiver.ids() == {row.webhook_id: 1}
    (after,) = _rows(engine)
    assert (after.status, after.attempts) == ("delivered", 2)


def test_one_hanging_receiver_does_not_hold_up_another(engine: Engine, receiver: Receiver) -> None:
    stuck = Receiver(secret=SECRET, hang_first=10**6, hang_seconds=30).start()
    try:
        clock = _now()
        subs = [
            _sub(stuck.url, ["access.granted"], name="stuck"),
            _sub(receiver.url, ["access.granted"]),
        ]
        for _ in range(3):
            _record(engine, subs, clock.now())
        deliverer = _deliverer(engine, subs, clock, timeout_seconds=1.0)
        posted = threading.Thread(target=deliverer.run_once)
        posted.start()
        # The healthy receiver has all three while the stuck one still holds its requests.
        for _ in range(400):
            if len(receiver.accepted()) == 3:
                break
            threading.Event().wait(0.005)
        assert len(receiver.accepted()) == 3
        assert posted.is_alive()
        posted.join(10)
        errors = {r.subscription: r.last_error for r in _rows(engine)}
        assert errors == {"stuck": "timeout", "security": None}
    finally:
        stuck.stop()


def test_the_answer_body_is_not_read(engine: Engine) -> None:
    chatty = Receiver(secret=SECRET, stall_body=True).start()
    try:
        clock = _now()
        subs = [_sub(chatty.url, ["access.granted"])]
        _record(engine, subs, clock.now())
        deliverer = _deliverer(engine, subs, clock, timeout_seconds=1.0)
        assert deliverer.run_once() == 1
        deliverer.close()
        # Reading the announced gigabyte would have ended in a timeout instead.
        assert (_rows(engine)[0].status, _rows(engine)[0].last_error) == ("delivered", None)
    finally:
        chatty.stop()


def test_an_idle_round_takes_no_write_lock(engine: Engine, receiver: Receiver) -> None:
    clock = _now()
    subs = [_sub(receiver.url, ["access.granted"])]
    deliverer = _deliverer(engine, subs, clock)
    # A writer (a grant, say) holds the write lock: an idle round must not queue behind it.
    with transaction(engine):
        assert deliverer.run_once() == 0
    deliverer.close()
