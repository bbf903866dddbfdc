"""Webhooks on PostgreSQL: two replicas' deliverers post each notification once.

A throwaway cluster (or EVEN_TEST_DATABASE_URL), migrated by the owner role; each "replica"
is its own engine on the app role, so the outbox grants are exercised too. The receiver is a
real HTTP server on loopback that verifies every signature and counts webhook-ids.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from audit import store as audit_store
from audit.chain import AuditEvent
from even.clock import SystemClock
from even.notify.outbox import entries_for_record
from even.notify.settings import NotificationSettings
from even.service.notify_deliverer import Deliverer, DelivererThread, delivery_counts
from even.store import outbox_tables as outbox
from even.store.db import make_engine, read_only, transaction
from even.store.schema import upgrade
from harness.postgres import PostgresCluster
from tests.even.webhook_receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
SECRET = base64.b64encode(os.urandom(32)).decode()
ROWS = 40


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(secret=SECRET).start()
    yield receiver
    receiver.stop()


def test_two_replicas_deliver_each_notification_once(
    postgres: PostgresCluster, receiver: Receiver
) -> None:
    database = postgres.create_database("even_notify")
    owner = make_engine(database.owner_url, for_migrations=True)
    upgrade(owner, app_role=database.app_role)
    owner.dispose()
    subs = [
        NotificationSettings(
            name="security",
            url=receiver.url,
            events=["access.granted", "access.emergency"],
            secret_file="unused-here",
        )
    ]
    engines = [make_engine(database.app_url) for _ in range(2)]
    try:
        with transaction(engines[0]) as conn:
            for i in range(ROWS // 2):
                event = AuditEvent(
                    type="access.granted",
                    username="alice",
                    login="alice",
                    hostname=f"db-{i}.prod.even.test",
                    request_id=f"req-{i}",
                    reason="INC-1 disk",
                    details={"emergency": True},
                )
                record = audit_store.append(conn, event, datetime.now(UTC))
                outbox.insert_entries(conn, entries_for_record(subs, record), datetime.now(UTC))
        threads = [
            DelivererThread(
                Deliverer(
                    engine=engine,
                    subscriptions=subs,
                    secrets={"security": base64.b64decode(SECRET)},
                    clock=SystemClock(),
                ),
                idle_seconds=0.01,
            )
            for engine in engines
        ]
        for thread in threads:
            thread.start()
        done = threading.Event()
        for _ in range(1500):
            if delivery_counts(engines[1])["delivered"] == ROWS:
                done.set()
                break
            done.wait(0.02)
        for thread in threads:
            thread.stop()
        assert done.is_set(), delivery_counts(engines[1])
        ids = receiver.ids()
        assert len(ids) == ROWS
        assert set(ids.values()) == {1}
        assert all(r.verified for r in receiver.received)
        with read_only(engines[0]) as conn:
            attempts = conn.execute(select(func.sum(outbox.notification_outbox.c.attempts)))
            assert attempts.scalar_one() == ROWS
    finally:
        for engine in engines:
            engine.dispose()


def test_the_outbox_row_rolls_back_with_its_audit_record(postgres: PostgresCluster) -> None:
    database = postgres.create_database("even_notify_atomic")
    owner = make_engine(database.owner_url, for_migrations=True)
    upgrade(owner, app_role=database.app_role)
    owner.dispose()
    engine = make_engine(database.app_url)
    subs = [
        NotificationSettings(
            name="chat", url="https://chat.example/x", events=["keys.updated"], format="slack"
        )
    ]
    try:
        with pytest.raises(RuntimeError), transaction(engine) as conn:
            event = AuditEvent(type="keys.updated", username="alice", details={})
            record = audit_store.append(conn, event, datetime.now(UTC))
            assert outbox.insert_entries(conn, entries_for_record(subs, record), datetime.now(UTC))
            raise RuntimeError("the grant failed after both writes")
        with read_only(engine) as conn:
            assert audit_store.head(conn)[0] == 0
            assert outbox.outbox_counts(conn, outbox.STATUSES) == {
                "pending": 0,
                "delivered": 0,
                "failed": 0,
            }
    finally:
        engine.dispose()
