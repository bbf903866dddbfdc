"""Two `even serve` replicas on one PostgreSQL cluster deliver each notification once.

Both replicas run a deliverer (started by the app); the job lock and the row leases elect one
per round. Grants go to both replicas concurrently; the receiver (real, loopback, verifying
signatures) must see every notification exactly once by `webhook-id`, with `data` equal to
the exported line of its record.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from harness.even_server import EvenServer, start_even
from harness.ports import free_port
from harness.postgres import PostgresCluster
from harness.waiting import wait_for
from tests.conftest import make_even_dir
from tests.even.notify_setup import new_secret, subscribe
from tests.even.webhook_receiver import Receiver
from tests.integration.notify_serve import bearer, export_lines, grant, run_even, user_key

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.even_server]
GRANTS = 30
EVENTS = ["access.requested", "access.granted"]


def delivered(url: str, headers: dict[str, str]) -> int:
    answer = httpx.get(
        url + "/v1/notifications/deliveries?status=delivered&limit=500",
        headers=headers, timeout=10, trust_env=False,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return len(answer.json()["items"])


def test_two_replicas_deliver_each_notification_once(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    database = postgres.create_database("even_notify_serve")
    env = {"EVEN_DATABASE_URL": database.app_url}
    ports = [free_port(), free_port()]
    config = make_even_dir(tmp_path / "even")
    config.write_text(
        config.read_text().replace("http://127.0.0.1:8080", f"http://127.0.0.1:{ports[0]}")
    )
    secret = new_secret()
    receiver = Receiver(secret=secret).start()
    subscribe(config, [{"name": "security", "url": receiver.url, "events": EVENTS}], secret)
    run_even(
        config, "db", "upgrade", "--app-role", database.app_role,
        env={**env, "EVEN_DATABASE_ADMIN_URL": database.owner_url},
    )  # fmt: skip
    alice = bearer(config, "alice", env=env)
    audrey = bearer(config, "audrey", "audit", env=env)
    admin = bearer(config, "sam", "security", env=env)
    public_key = user_key(tmp_path)
    servers: list[EvenServer] = []
    try:
        for index, port in enumerate(ports):
            log = tmp_path / f"even-{index}.log"
            servers.append(start_even(config, log_path=log, port=port, env=env))
        with ThreadPoolExecutor(8) as pool:
            ids = list(
                pool.map(lambda i: grant(servers[i % 2].url, alice, public_key), range(GRANTS))
            )
        assert len(set(ids)) == GRANTS
        expected = 2 * GRANTS  # access.requested and access.granted of each
        wait_for(lambda: len(receiver.accepted()) >= expected, 60, "every delivery")
        wait_for(lambda: delivered(servers[0].url, admin) == expected, 30, "outcomes recorded")
        assert len(receiver.received) == expected  # no POST twice, not even a retry
        counts = receiver.ids()
        assert len(counts) == expected and set(counts.values()) == {1}
        assert all(r.verified for r in receiver.received)
        lines = [(orjson.loads(line), line) for line in export_lines(servers[1].url, audrey)]
        by_seq = {r["seq"]: line for r, line in lines if r["type"] != "checkpoint"}
        notified = set()
        for received in receiver.received:
            body = received.body
            seq = orjson.loads(body)["data"]["seq"]
            assert body[body.index(b',"data":') + 8 : -1] == by_seq[seq]
            notified.add(seq)
        subscribed = {r["seq"] for r, _ in lines if r["type"] in EVENTS}
        assert notified == subscribed
        granted = {r["request_id"] for r, _ in lines if r["type"] == "access.granted"}
        assert granted == set(ids)
    finally:
        for server in servers:
            server.stop()
        receiver.stop()
