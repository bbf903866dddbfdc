"""Which records write outbox rows, and in which transaction (even.store.outbox_hook).

Every audit record, whichever use case appends it (grant, denial, revocation, key upload, CA
rotation, expiry job, export, policy reload), writes its notification in its own transaction;
in a group commit a unit that fails leaves neither its record nor its rows, and the rows of
the others name their own records. Without a subscription nothing is written at all.
"""

from __future__ import annotations

import re
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from audit import store as audit_store
from audit.chain import AuditEvent
from even.api.app import create_app
from even.clock import FixedClock
from even.config import Settings, load_settings
from even.notify.settings import RECORD_TYPES
from even.reload import reload_policy
from even.store import outbox_tables as outbox
from even.store.db import read_only
from even.store.outbox_hook import attach_outbox, console_url
from even.store.unit_of_work import Transaction, append_record, record_hook
from even.store.writer import GroupCommitWriter
from even.wiring import Components, build_components
from tests.conftest import APPROVAL_POLICY, TEST_POLICY
from tests.even.conftest import auth
from tests.even.notify_setup import new_secret, subscribe

GRANT = {"hostname": "db-1.prod.even.test", "reason": "debug INC-123 now"}
EVEN = Path(__file__).resolve().parents[2] / "even"


def _outbox(components: Components) -> list[Any]:
    with read_only(components.engine) as conn:
        return list(conn.execute(select(outbox.notification_outbox)).all())


def _records(components: Components) -> list[dict[str, Any]]:
    with read_only(components.engine) as conn:
        return list(audit_store.iter_records(conn))


@pytest.fixture
def subscribed(even_config: Path) -> Settings:
    # Nothing listens on port 9: deliveries just fail and wait; only the rows matter here.
    events = sorted(RECORD_TYPES)
    subscribe(
        even_config, [{"name": "all", "url": "http://127.0.0.1:9/hook", "events": events}],
        new_secret(),
    )  # fmt: skip
    return load_settings(even_config)


def test_every_kind_of_record_writes_its_notification(
    subscribed: Settings, clock: FixedClock, user_key: str
) -> None:
    components = build_components(subscribed, clock)
    with TestClient(create_app(subscribed, components=components)) as client:
        alice = auth(components, clock)
        grant = client.post(
            "/v1/access-requests", headers=alice, json={**GRANT, "public_key": user_key}
        )
        assert grant.status_code == 201, grant.text
        kept = client.post(
            "/v1/access-requests", headers=alice, json={**GRANT, "public_key": user_key}
        )
        denied = {**GRANT, "hostname": "db-1.staging.even.test", "public_key": user_key}
        assert client.post("/v1/access-requests", headers=alice, json=denied).status_code == 403
        revoke = client.post(f"/v1/access-requests/{grant.json()['id']}/revoke", headers=alice)
        assert revoke.status_code == 200, revoke.text
        assert (
            client.put("/v1/users/me/keys", headers=alice, json={"keys": [user_key]}).status_code
            == 200
        )
        components.ca_registry.rotate(actor="sam")
        (Path(subscribed.config_dir) / "policy.yaml").write_text(TEST_POLICY + "\n# v2\n")
        assert reload_policy(components).outcome == "reloaded"
        clock.moment += timedelta(hours=2)  # the kept grant expires: the jobs record it
        components.jobs.run_once()
        audrey = auth(components, clock, "audrey", ["audit"])
        assert client.get("/v1/audit/export", headers=audrey).status_code == 200
    assert kept.status_code == 201
    records = _records(components)
    kinds = {r["type"] for r in records}
    assert kinds >= {
        "policy.loaded", "access.requested", "access.granted", "access.denied",
        "access.revoked", "keys.updated", "ca.rotated", "access.expired", "audit.exported",
    }  # fmt: skip
    assert [r["type"] for r in records].count("policy.loaded") == 2  # start, then the reload
    rows = _outbox(components)
    assert sorted(r.audit_seq for r in rows) == [r["seq"] for r in records]
    by_seq = {r["seq"]: r for r in records}
    for row in rows:
        body = orjson.loads(row.body)
        assert row.event_type == by_seq[row.audit_seq]["type"] == body["type"]
        assert body["data"] == orjson.loads(orjson.dumps(by_seq[row.audit_seq]))


def test_without_subscriptions_nothing_is_hooked_or_written(
    settings: Settings, components: Components, client: TestClient, clock: FixedClock, user_key: str
) -> None:
    assert not settings.notifications
    assert record_hook(components.engine) is None
    body = {**GRANT, "public_key": user_key}
    assert (
        client.post("/v1/access-requests", headers=auth(components, clock), json=body).status_code
        == 201
    )
    assert _outbox(components) == []


def test_in_a_group_commit_rows_belong_to_the_transaction_of_their_record(
    subscribed: Settings, clock: FixedClock
) -> None:
    components = build_components(subscribed, clock)
    writer = GroupCommitWriter(components.engine)

    class Unit:
        def __init__(self, n: int) -> None:
            self.n = n

        def apply(self, tx: Transaction) -> int:
            # Code holding only the connection appends through the batch's unit of work too.
            append_record(
                tx.conn, AuditEvent(type="access.requested", username=f"u{self.n}"), clock.now()
            )
            record = tx.append(
                AuditEvent(type="access.granted", username=f"u{self.n}"), clock.now()
            )
            if self.n % 3 == 0:
                raise RuntimeError("this unit fails after its records")
            return int(record["seq"])

    futures: list[Future[int]] = [
        writer.submit(lambda conn, n=n: Unit(n).apply(conn.info["even.unit_of_work"]))
        for n in range(1, 13)
    ]
    committed = []
    for n, future in enumerate(futures, start=1):
        if n % 3 == 0:
            with pytest.raises(RuntimeError):
                future.result()
        else:
            committed.append(future.result())
    writer.close()
    records = _records(components)
    assert {r["username"] for r in records if r.get("username")} == {
        f"u{n}" for n in range(1, 13) if n % 3
    }
    # Each unit that committed answered with its own access.granted record's seq.
    assert sorted(committed) == [r["seq"] for r in records if r["type"] == "access.granted"]
    rows = _outbox(components)
    assert sorted(r.audit_seq for r in rows) == [r["seq"] for r in records]
    for row in rows:
        assert orjson.loads(row.body)["data"]["seq"] == row.audit_seq


def test_console_link_only_with_a_console(subscribed: Settings) -> None:
    assert console_url(subscribed) is None
    with_console = subscribed.model_copy(
        update={"base_url": "https://even.example.com/", "console": object()}
    )
    assert console_url(with_console) == "https://even.example.com/console"


def test_attach_outbox_without_subscriptions_unhooks(
    subscribed: Settings, settings: Settings
) -> None:
    components = build_components(subscribed)
    assert record_hook(components.engine) is not None
    attach_outbox(components.engine, settings.model_copy(update={"notifications": []}))
    assert record_hook(components.engine) is None


def test_no_code_appends_a_record_around_the_unit_of_work() -> None:
    """Every append goes through `Transaction.append`/`append_record` (the record hook)."""
    bare = re.compile(r"audit_store\.append\(|from audit\.store import [^\n]*\bappend\b")
    offenders = [
        str(path.relative_to(EVEN.parent))
        for path in EVEN.rglob("*.py")
        if bare.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_every_approval_record_writes_its_notification(
    subscribed: Settings, clock: FixedClock, user_key: str
) -> None:
    (Path(subscribed.config_dir) / "policy.yaml").write_text(APPROVAL_POLICY)
    components = build_components(subscribed, clock)
    path = "/v1/access-requests"
    body = {
        "hostname": "db-1.approve.even.test",
        "reason": "migrate INC-42",
        "public_key": user_key,
    }
    with TestClient(create_app(subscribed, components=components)) as client:
        alice = auth(components, clock, "alice", ["sre"])
        carol = auth(components, clock, "carol")
        ids = [client.post(path, headers=alice, json=body).json()["id"] for _ in range(4)]
        assert client.post(f"{path}/{ids[0]}/approve", headers=carol, json={}).status_code == 200
        deny = client.post(f"{path}/{ids[1]}/deny", headers=carol, json={"comment": "no INC-1"})
        assert deny.status_code == 200, deny.text
        assert client.post(f"{path}/{ids[2]}/cancel", headers=alice).status_code == 200
        reviewed = client.post(path, headers=alice, json={**body, "emergency": True}).json()["id"]
        review = {"verdict": "justified", "comment": "db down, INC-43"}
        answer = client.post(f"{path}/{reviewed}/review", headers=carol, json=review)
        assert answer.status_code == 200, answer.text
        assert client.post(path, headers=alice, json={**body, "emergency": True}).status_code == 201
        clock.moment += timedelta(hours=25)  # ids[3] expires pending; a review is overdue
        assert components.jobs.approvals is not None
        assert components.jobs.approvals.expire_pending_once() == [ids[3]]
        assert len(components.jobs.approvals.review_overdue_once()) == 1
    records = _records(components)
    assert {r["type"] for r in records} >= {
        "access.pending", "access.approved", "access.denied", "access.cancelled",
        "access.granted", "access.reviewed", "access.expired", "access.review_overdue",
    }  # fmt: skip
    rows = _outbox(components)
    glass = [r for r in records if r["type"] == "access.granted" and r["details"].get("emergency")]
    assert len(glass) == 2
    # One row per record (every record type is subscribed; access.emergency is not).
    assert sorted(r.audit_seq for r in rows) == [r["seq"] for r in records]
