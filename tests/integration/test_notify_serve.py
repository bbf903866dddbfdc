"""Notifications from a real `even serve`: `kill -9` after the commit, before the delivery.

The receiver is down when the grant commits, so the deliverer can only record failed tries;
Even is then killed with SIGKILL (by PID). With the receiver up and Even restarted, the
committed notification is delivered, once, with the `webhook-id` it was written with.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from even.config import load_settings
from even.store import outbox_tables as outbox
from even.store.db import make_engine, read_only
from harness.even_server import EvenServer, start_even
from harness.ports import free_port
from harness.waiting import wait_for
from tests.conftest import make_live_even_dir
from tests.even.notify_setup import new_secret, subscribe
from tests.even.webhook_receiver import Receiver
from tests.integration.notify_serve import bearer, export_lines, grant, user_key

pytestmark = [pytest.mark.even_server]


def _rows(engine: Engine) -> list[Any]:
    with read_only(engine) as conn:
        return list(conn.execute(select(outbox.notification_outbox)).all())


def test_kill_9_after_commit_delivers_on_restart_once_with_the_same_id(tmp_path: Path) -> None:
    port, hook_port = free_port(), free_port()
    config = make_live_even_dir(tmp_path / "even", port)
    secret = new_secret()
    url = f"http://127.0.0.1:{hook_port}/hook"
    subscribe(config, [{"name": "security", "url": url, "events": ["access.granted"]}], secret)
    engine = make_engine(load_settings(config).resolved_database_url)
    alice, audrey = bearer(config, "alice"), bearer(config, "audrey", "audit")
    public_key = user_key(tmp_path)
    receiver: Receiver | None = None
    server: EvenServer = start_even(config, log_path=tmp_path / "even-1.log", port=port)
    try:
        request_id = grant(server.url, alice, public_key)
        # Committed, and the deliverer has tried and failed (nothing listens yet).
        wait_for(
            lambda: any(r.attempts >= 1 and r.last_error for r in _rows(engine)),
            what="a failed delivery attempt",
        )
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        [row] = _rows(engine)
        assert (row.status, row.delivered_at) == ("pending", None)
        webhook_id = row.webhook_id

        receiver = Receiver(secret=secret, port=hook_port).start()
        server = start_even(config, log_path=tmp_path / "even-2.log", port=port)
        wait_for(lambda: len(receiver.accepted()) == 1, what="the delivery after restart")
        wait_for(
            lambda: [r.status for r in _rows(engine)] == ["delivered"],
            what="the delivery recorded",
        )
        # A later grant is delivered too, under its own id: nothing twice, nothing lost.
        grant(server.url, alice, public_key)
        wait_for(lambda: len(receiver.accepted()) == 2, what="the second delivery")
        ids = receiver.ids()
        assert ids[webhook_id] == 1 and len(ids) == 2 and set(ids.values()) == {1}
        first = orjson.loads(receiver.accepted()[0].body)
        assert first["data"]["request_id"] == request_id
        assert all(r.verified for r in receiver.received)
        lines = [(orjson.loads(line), line) for line in export_lines(server.url, audrey)]
        by_seq = {record["seq"]: line for record, line in lines if record["type"] != "checkpoint"}
        for received in receiver.accepted():
            body = received.body
            assert (
                body[body.index(b',"data":') + 8 : -1] == by_seq[orjson.loads(body)["data"]["seq"]]
            )
    finally:
        server.stop()
        if receiver is not None:
            receiver.stop()
        engine.dispose()
