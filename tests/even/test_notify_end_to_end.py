"""Notifications end to end in one process: real grants and denials through the API, the
deliverer the app's lifespan starts, and a real loopback receiver that verifies signatures.

The deliverer runs on the app's injected clock; a retry becomes due when the test moves that
clock, never by sleeping for a backoff. Waiting for a delivery polls the receiver.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from even.api.app import create_app
from even.clock import FixedClock
from even.config import load_settings
from even.store import outbox_tables as outbox
from even.store.db import read_only
from even.wiring import Components, build_components
from harness.waiting import wait_for
from tests.conftest import APPROVAL_POLICY
from tests.even.conftest import auth
from tests.even.notify_setup import new_secret, subscribe
from tests.even.webhook_receiver import Receiver

GRANT = {"hostname": "db-1.prod.even.test", "reason": "debug INC-123 now"}
EVIL_REASON = "<!channel> <https://evil|click here> INC-7"


class App:
    def __init__(self, client: TestClient, components: Components, clock: FixedClock) -> None:
        self.client, self.components, self.clock = client, components, clock

    def grant(self, user_key: str, **extra: Any) -> dict[str, Any]:
        body = {**GRANT, "public_key": user_key, **extra}
        r = self.client.post(
            "/v1/access-requests", headers=auth(self.components, self.clock), json=body
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    def deny(self, user_key: str) -> None:
        body = {**GRANT, "hostname": "db-1.staging.even.test", "public_key": user_key}
        r = self.client.post(
            "/v1/access-requests", headers=auth(self.components, self.clock), json=body
        )
        assert r.status_code == 403, r.text

    def export_lines(self) -> dict[int, bytes]:
        headers = auth(self.components, self.clock, "audrey", ["audit"])
        r = self.client.get("/v1/audit/export", headers=headers)
        assert r.status_code == 200
        lines = [line for line in r.content.split(b"\n") if line]
        return {
            orjson.loads(line)["seq"]: line
            for line in lines
            if orjson.loads(line).get("type") != "checkpoint"
        }


@pytest.fixture
def start_app(even_config: Path, clock: FixedClock) -> Iterator[Callable[..., App]]:
    clients: list[TestClient] = []

    def start(subscriptions: list[dict[str, Any]], secret: str, policy: str | None = None) -> App:
        if policy is not None:
            (even_config.parent / "policy.yaml").write_text(policy, encoding="utf-8")
        subscribe(even_config, subscriptions, secret)
        settings = load_settings(even_config)
        components = build_components(settings, clock)
        client = TestClient(create_app(settings, components=components))
        client.__enter__()
        clients.append(client)
        return App(client, components, clock)

    yield start
    for client in clients:
        client.__exit__(None, None, None)  # the lifespan stops the deliverer


def test_grant_and_denial_arrive_once_per_subscribed_type_signed_with_the_export_bytes(
    start_app: Callable[..., App], user_key: str
) -> None:
    secret = new_secret()
    receiver = Receiver(secret=secret).start()
    try:
        events = ["access.requested", "access.granted", "access.denied"]
        app = start_app(
            [
                {"name": "security", "url": receiver.url, "events": events},
                {"name": "siem", "url": receiver.url, "events": ["access.granted"]},
            ],
            secret,
        )
        app.grant(user_key)
        app.deny(user_key)
        # requested+granted (security), granted (siem); requested+denied (security)
        wait_for(lambda: len(receiver.accepted()) >= 5)
        lines = app.export_lines()
        time.sleep(0.5)  # a duplicate would be a bug; give one the chance to show up
        received = receiver.received
        assert all(r.verified for r in received)
        assert len(received) == 5
        assert all(count == 1 for count in receiver.ids().values())
        seen = []
        for r in received:
            body = orjson.loads(r.body)
            data = r.body[r.body.index(b',"data":') + len(b',"data":') : -1]
            assert data == lines[body["data"]["seq"]]  # byte for byte the export line
            assert body["timestamp"] == body["data"]["time"]
            seen.append((body["type"], body["data"]["type"]))
        assert sorted(seen) == sorted(
            [
                ("access.requested", "access.requested"),
                ("access.requested", "access.requested"),
                ("access.granted", "access.granted"),
                ("access.granted", "access.granted"),
                ("access.denied", "access.denied"),
            ]
        )
    finally:
        receiver.stop()


def test_pending_approval_and_break_glass_arrive_once_per_subscribed_type(
    start_app: Callable[..., App], user_key: str, clock: FixedClock
) -> None:
    secret = new_secret()
    receiver = Receiver(secret=secret).start()
    try:
        events = ["access.pending", "access.approved", "access.granted", "access.emergency"]
        app = start_app(
            [
                {"name": "security", "url": receiver.url, "events": events},
                {"name": "pager", "url": receiver.url, "events": ["access.emergency"]},
            ],
            secret,
            APPROVAL_POLICY,
        )
        alice = auth(app.components, clock, "alice", ["sre"])
        body = {"hostname": "db-1.approve.even.test", "reason": "migrate INC-42"}
        waiting = app.client.post(
            "/v1/access-requests", headers=alice, json={**body, "public_key": user_key}
        )
        assert waiting.status_code == 202, waiting.text
        approve = f"/v1/access-requests/{waiting.json()['id']}/approve"
        carol = app.client.post(approve, headers=auth(app.components, clock, "carol"), json={})
        assert carol.status_code == 200, carol.text
        glass = app.client.post(
            "/v1/access-requests",
            headers=alice,
            json={**body, "public_key": user_key, "emergency": True},
        )
        assert glass.status_code == 201, glass.text
        # security: pending, approved, granted ×2 (approved and break-glass), emergency;
        # pager: emergency.
        wait_for(lambda: len(receiver.accepted()) >= 6)
        lines = app.export_lines()
        assert len(receiver.received) == 6 and set(receiver.ids().values()) == {1}
        assert all(r.verified for r in receiver.received)
        seen = []
        for r in receiver.received:
            sent = orjson.loads(r.body)
            data = r.body[r.body.index(b',"data":') + len(b',"data":') : -1]
            assert data == lines[sent["data"]["seq"]]
            seen.append((sent["type"], sent["data"]["request_id"]))
        pending_id, glass_id = waiting.json()["id"], glass.json()["id"]
        assert sorted(seen) == sorted(
            [
                ("access.pending", pending_id),
                ("access.approved", pending_id),
                ("access.granted", pending_id),
                ("access.granted", glass_id),
                ("access.emergency", glass_id),
                ("access.emergency", glass_id),
            ]
        )
    finally:
        receiver.stop()


def retry_recorded(app: App, attempts: int) -> bool:
    """The deliverer has recorded the outcome of try `attempts` (no longer leased)."""
    with read_only(app.components.engine) as conn:
        items, _ = outbox.list_deliveries(conn)
    soon = outbox.stamp(app.clock.now() + timedelta(seconds=10))
    return [(i["attempts"], i["next_attempt_at"] <= soon) for i in items] == [(attempts, True)]


def test_a_receiver_failing_twice_gets_the_same_webhook_id_three_times(
    start_app: Callable[..., App], user_key: str, clock: FixedClock
) -> None:
    secret = new_secret()
    receiver = Receiver(secret=secret, fail_first=2, fail_status=503).start()
    try:
        app = start_app(
            [{"name": "security", "url": receiver.url, "events": ["access.granted"]}], secret
        )
        app.grant(user_key)
        for tries in (1, 2):
            wait_for(lambda tries=tries: retry_recorded(app, tries))
            # The retry is due ≈1 s, then ≈2 s later on the deliverer's (injected) clock.
            clock.moment += timedelta(seconds=5)
        wait_for(lambda: len(receiver.accepted()) == 1)
        assert [r.answered for r in receiver.received] == [503, 503, 204]
        assert len(set(receiver.ids())) == 1 and list(receiver.ids().values()) == [3]
        assert all(r.verified for r in receiver.received)
        admin = auth(app.components, clock, "sam", ["security"])
        listed = app.client.get("/v1/notifications/deliveries", headers=admin).json()["items"]
        assert [(i["status"], i["attempts"]) for i in listed] == [("delivered", 3)]
    finally:
        receiver.stop()


def test_a_hanging_receiver_does_not_hold_up_grants(
    start_app: Callable[..., App], user_key: str
) -> None:
    secret = new_secret()
    receiver = Receiver(secret=secret, hang_first=1000, hang_seconds=30).start()
    try:
        app = start_app(
            [{"name": "security", "url": receiver.url, "events": ["access.granted"]}], secret
        )
        app.grant(user_key)
        wait_for(lambda: len(receiver.received) >= 1)  # the deliverer is stuck in a POST now
        answers = [app.grant(user_key) for _ in range(5)]  # still answered, one by one
        assert len({a["id"] for a in answers}) == 5
        metrics = app.client.get("/metrics").text
        assert 'even_notification_deliveries{status="pending"} 6.0' in metrics
        assert 'even_notification_deliveries{status="failed"} 0.0' in metrics
    finally:
        receiver.stop()


def test_a_hostile_reason_arrives_inert_in_slack_format(
    start_app: Callable[..., App], user_key: str
) -> None:
    receiver = Receiver(secret=None).start()
    try:
        app = start_app(
            [
                {
                    "name": "chat",
                    "url": receiver.url,
                    "events": ["access.granted"],
                    "format": "slack",
                }
            ],
            new_secret(),
        )
        app.grant(user_key, reason=EVIL_REASON)
        wait_for(lambda: len(receiver.accepted()) == 1)
        text = orjson.loads(receiver.received[0].body)["text"]
        assert "reason: &lt;!channel&gt; &lt;https://evil|click here&gt; INC-7" in text
        assert "<!" not in text and "<http" not in text and "<" not in text
        assert "webhook-signature" not in receiver.received[0].headers  # no secret_file
    finally:
        receiver.stop()
