"""`GET /v1/notifications/deliveries`: admins only, filters, pages; no bodies or URLs."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from even.clock import FixedClock
from even.notify.outbox import OutboxEntry
from even.store import outbox_tables as outbox
from even.store.db import read_only, transaction
from even.wiring import Components
from tests.even.conftest import auth


def _fill(components: Components, clock: FixedClock) -> None:
    entries = [
        OutboxEntry(f"msg_{i}", "security", event, i, b'{"secret":"body"}')
        for i, event in enumerate(["access.granted", "access.emergency", "access.pending"] * 2)
    ]
    with transaction(components.engine) as conn:
        outbox.insert_entries(conn, entries, clock.now())
        outbox.mark_delivered(conn, 1, clock.now())
        outbox.mark_failed(conn, 2, "http 500")
        outbox.mark_retry(conn, 3, clock.now() + timedelta(seconds=2), "timeout")


def test_admins_list_deliveries_with_filters_and_pages(
    client: TestClient, components: Components, clock: FixedClock
) -> None:
    _fill(components, clock)
    admin = auth(components, clock, "sam", ["security"])
    answer = client.get("/v1/notifications/deliveries", headers=admin)
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [i["webhook_id"] for i in items] == [f"msg_{i}" for i in range(5, -1, -1)]
    assert answer.json()["next"] is None
    assert all("body" not in i and "url" not in i for i in items)
    assert "secret" not in answer.text
    failed = client.get("/v1/notifications/deliveries?status=failed", headers=admin).json()
    assert [(i["webhook_id"], i["last_error"], i["next_attempt_at"]) for i in failed["items"]] == [
        ("msg_1", "http 500", None)
    ]
    emergencies = client.get(
        "/v1/notifications/deliveries?event=access.emergency&status=pending", headers=admin
    ).json()
    assert [i["webhook_id"] for i in emergencies["items"]] == ["msg_4"]
    page = client.get("/v1/notifications/deliveries?limit=4&offset=0", headers=admin).json()
    assert (len(page["items"]), page["next"]) == (4, 4)
    rest = client.get("/v1/notifications/deliveries?limit=4&offset=4", headers=admin).json()
    assert (len(rest["items"]), rest["next"]) == (2, None)


def test_only_admins_may_list(
    client: TestClient, components: Components, clock: FixedClock
) -> None:
    for groups in ([], ["audit"]):
        answer = client.get(
            "/v1/notifications/deliveries", headers=auth(components, clock, "alice", groups)
        )
        assert answer.status_code == 403
        assert answer.json()["code"] == "admin_role_required"
    assert client.get("/v1/notifications/deliveries").status_code == 401


def test_bad_filters_are_422(client: TestClient, components: Components, clock: FixedClock) -> None:
    admin = auth(components, clock, "sam", ["security"])
    for query in (
        "status=lost",
        "event=access.exploded",
        "event=%00",
        "limit=0",
        "limit=501",
        "offset=-1",
    ):
        answer = client.get(f"/v1/notifications/deliveries?{query}", headers=admin)
        assert answer.status_code == 422, query


def test_outbox_counts_cover_every_status(components: Components, clock: FixedClock) -> None:
    with read_only(components.engine) as conn:
        assert outbox.outbox_counts(conn) == {"pending": 0, "failed": 0}
    _fill(components, clock)
    with read_only(components.engine) as conn:
        assert outbox.outbox_counts(conn) == {"pending": 4, "failed": 1}
        assert outbox.outbox_counts(conn, outbox.STATUSES) == {
            "pending": 4,
            "delivered": 1,
            "failed": 1,
        }
