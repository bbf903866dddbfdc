"""Issue 6, must-show 1, 3, 4 and 5: three `even serve` replicas on one PostgreSQL.

The replicas share one config directory (same CA, audit key and dev issuer) and serve with
the app role (`EVEN_DATABASE_URL`); the schema comes from `even db upgrade` with the owner
role. Every test ends with the whole exported log verifying: one gapless chain across
replicas, whatever happened to the replicas or the database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from audit.checkpoint import load_public_keys, parse_receipt
from audit.verify import Valid, verify_jsonl
from harness.even_server import EvenServer, EvenStartError, run_even, start_even
from harness.ports import free_port
from harness.postgres import PostgresCluster
from tests.conftest import make_live_even_dir, requires_real_component

pytestmark = [pytest.mark.postgres]

REPLICAS = 3
GRANTS = 300
GRANT_PATH = "/v1/access-requests"


@dataclass
class Fleet:
    """Replicas of one Even deployment; `revive()` restarts any that died."""

    config: Path
    directory: Path
    env: dict[str, str]
    ports: list[int]
    servers: list[EvenServer | None] = field(default_factory=list)
    public_key: str = ""
    user_headers: dict[str, str] = field(default_factory=dict)
    auditor_headers: dict[str, str] = field(default_factory=dict)

    def start(self, index: int) -> EvenServer:
        for attempt in range(2):
            log = self.directory / f"even-{index}-{time.monotonic_ns()}.log"
            try:
                return start_even(self.config, log_path=log, port=self.ports[index], env=self.env)
            except EvenStartError:
                # The free port may have been taken meanwhile (other tests share loopback);
                # base_url is only a name here, so another port serves just as well.
                if attempt:
                    raise
                self.ports[index] = free_port()
        raise AssertionError("unreachable")

    def revive(self) -> None:
        for index, server in enumerate(self.servers):
            if server is None or server.process.poll() is not None:
                self.servers[index] = self.start(index)

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index % REPLICAS]}"

    def stop(self) -> None:
        for server in self.servers:
            if server is not None:
                server.stop()

    def body(self, **overrides: Any) -> dict[str, Any]:
        return {
            "hostname": "db-1.prod.even.test",
            "reason": "load INC-600 replicas",
            "public_key": self.public_key,
            **overrides,
        }


@pytest.fixture(scope="module")
def fleet(postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    directory = tmp_path_factory.mktemp("fleet")
    ports = [free_port() for _ in range(REPLICAS)]
    # base_url (dev issuer, audit origin) is one name for the whole deployment.
    config = make_live_even_dir(directory / "even", ports[0], generous_limits=True)
    database = postgres.database
    env = {"EVEN_DATABASE_URL": database.app_url}
    run_even(
        config,
        "db",
        "upgrade",
        "--app-role",
        database.app_role,
        env={**env, "EVEN_DATABASE_ADMIN_URL": database.owner_url},
    )
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "k")], check=True
    )
    fleet = Fleet(config, directory, env, ports, [None] * REPLICAS)
    fleet.public_key = (directory / "k.pub").read_text().strip()
    token = run_even(config, "dev-token", "--user", "alice")
    fleet.user_headers = {"Authorization": f"Bearer {token}"}
    auditor = run_even(config, "dev-token", "--user", "audrey", "--groups", "audit")
    fleet.auditor_headers = {"Authorization": f"Bearer {auditor}"}
    try:
        with ThreadPoolExecutor(REPLICAS) as pool:
            fleet.servers = list(pool.map(fleet.start, range(REPLICAS)))
        yield fleet
    finally:
        fleet.stop()


@dataclass(frozen=True)
class Export:
    records: list[dict[str, Any]]
    raw: bytes

    def granted(self) -> dict[str, dict[str, Any]]:
        """request_id → its access.granted record (asserting there is at most one each)."""
        found: dict[str, dict[str, Any]] = {}
        for record in self.records:
            if record["type"] == "access.granted":
                assert record["request_id"] not in found, record["request_id"]
                found[record["request_id"]] = record
        return found


def _export_and_verify(fleet: Fleet, receipts: Sequence[dict[str, Any]] = ()) -> Export:
    """Export through one replica; the whole log must verify (gapless, untampered)."""
    with httpx.Client(base_url=fleet.url(2), timeout=60, trust_env=False) as client:
        export = client.get("/v1/audit/export", headers=fleet.auditor_headers)
        keys = load_public_keys(client.get("/v1/audit/public-key").content)
    assert export.status_code == 200, export.text
    verdict = verify_jsonl([export.content], keys, receipts=[parse_receipt(r) for r in receipts])
    assert isinstance(verdict, Valid), verdict
    lines = [orjson.loads(line) for line in export.content.split(b"\n") if line]
    records = [line for line in lines if line.get("type") != "checkpoint"]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    return Export(records, export.content)


def test_300_concurrent_grants_across_three_replicas_make_one_chain(fleet: Fleet) -> None:
    clients = [
        httpx.Client(
            base_url=fleet.url(i),
            timeout=60,
            trust_env=False,
            limits=httpx.Limits(max_connections=GRANTS),
        )
        for i in range(REPLICAS)
    ]

    def one(i: int) -> httpx.Response:
        return clients[i % REPLICAS].post(GRANT_PATH, json=fleet.body(), headers=fleet.user_headers)

    try:
        with ThreadPoolExecutor(max_workers=GRANTS) as pool:
            answers = list(pool.map(one, range(GRANTS)))
    finally:
        for client in clients:
            client.close()
    assert [a.status_code for a in answers] == [201] * GRANTS, {a.text for a in answers}
    views = [a.json() for a in answers]
    assert len({v["serial"] for v in views}) == GRANTS
    assert len({v["receipt"]["seq"] for v in views}) == GRANTS
    export = _export_and_verify(fleet, [v["receipt"] for v in views])
    granted = export.granted()
    for view in views:
        assert granted[view["id"]]["details"]["serial"] == view["serial"]
    assert sum(1 for r in export.records if r["type"] == "policy.loaded") >= REPLICAS


@dataclass
class Load:
    """Grant requests from `threads` threads round-robin over the replicas until stopped."""

    fleet: Fleet
    threads: int
    max_requests: int
    results: list[tuple[int, httpx.Response | Exception]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, n: int) -> None:
        clients = [
            httpx.Client(base_url=self.fleet.url(i), timeout=30, trust_env=False)
            for i in range(REPLICAS)
        ]
        i = n
        try:
            while not self._stop.is_set():
                with self._lock:
                    if len(self.results) >= self.max_requests:
                        return
                replica = i % REPLICAS
                i += 1
                answer: httpx.Response | Exception
                try:
                    answer = clients[replica].post(
                        GRANT_PATH, json=self.fleet.body(), headers=self.fleet.user_headers
                    )
                except httpx.TransportError as exc:
                    answer = exc
                with self._lock:
                    self.results.append((replica, answer))
                if not isinstance(answer, httpx.Response) or answer.status_code != 201:
                    time.sleep(0.02)  # a down replica or store: don't spin
        finally:
            for client in clients:
                client.close()

    def count(self, predicate: Callable[[int, httpx.Response | Exception], bool]) -> int:
        with self._lock:
            return sum(1 for replica, answer in self.results if predicate(replica, answer))

    def wait_for(
        self,
        predicate: Callable[[int, httpx.Response | Exception], bool],
        at_least: int,
        timeout: float = 30,
    ) -> None:
        deadline = time.monotonic() + timeout
        while self.count(predicate) < at_least:
            assert time.monotonic() < deadline, f"timed out; {self.summary()}"
            time.sleep(0.05)

    def stop(self) -> list[tuple[int, httpx.Response | Exception]]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)
        return list(self.results)

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._lock:
            for _, answer in self.results:
                key = (
                    str(answer.status_code)
                    if isinstance(answer, httpx.Response)
                    else type(answer).__name__
                )
                out[key] = out.get(key, 0) + 1
        return out


def _status(code: int) -> Callable[[int, httpx.Response | Exception], bool]:
    return lambda _, answer: isinstance(answer, httpx.Response) and answer.status_code == code


def _certificates(results: list[tuple[int, httpx.Response | Exception]]) -> dict[str, int]:
    """request id → serial of every certificate a client received."""
    return {
        a.json()["id"]: a.json()["serial"]
        for _, a in results
        if isinstance(a, httpx.Response) and a.status_code == 201
    }


def test_kill_9_of_a_replica_loses_no_granted_record(fleet: Fleet) -> None:
    fleet.revive()
    victim = 1
    server = fleet.servers[victim]
    assert server is not None
    load = Load(fleet, threads=12, max_requests=600).start()
    try:
        load.wait_for(_status(201), at_least=60)
        os.kill(server.process.pid, signal.SIGKILL)  # by PID; mid-transaction, likely
        server.process.wait(timeout=10)
        load.wait_for(lambda r, a: r != victim and _status(201)(r, a), at_least=200)
    finally:
        results = load.stop()
        fleet.revive()
    survivors = [a for r, a in results if r != victim]
    assert all(isinstance(a, httpx.Response) and a.status_code == 201 for a in survivors), (
        load.summary()
    )
    # The victim answered 201 (before the kill) or nothing at all: never an error page.
    assert all(
        isinstance(a, httpx.TransportError) or a.status_code == 201
        for r, a in results
        if r == victim
    )
    received = _certificates(results)
    granted = _export_and_verify(fleet).granted()
    missing = {
        rid: s
        for rid, s in received.items()
        if granted.get(rid, {}).get("details", {}).get("serial") != s
    }
    assert missing == {}


def test_postgres_outage_is_503_then_recovers_without_restarting_even(
    fleet: Fleet, postgres: PostgresCluster
) -> None:
    if postgres.external:
        requires_real_component("the outage test stops the server; it needs the local cluster")
    fleet.revive()
    pids = [s.process.pid for s in fleet.servers if s is not None]
    load = Load(fleet, threads=6, max_requests=100_000).start()
    try:
        load.wait_for(_status(201), at_least=30)
        postgres.stop()
        load.wait_for(_status(503), at_least=30)
        for index in range(REPLICAS):
            ready = httpx.get(fleet.url(index) + "/readyz", timeout=10, trust_env=False)
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"] is False
            assert ready.headers["Retry-After"]
        granted_before = load.count(_status(201))
        postgres.start()
        # Back without restarting Even: every replica grants again.
        for index in range(REPLICAS):
            load.wait_for(
                lambda r, a, i=index: r == i and _status(201)(r, a),
                at_least=load.count(lambda r, a, i=index: r == i and _status(201)(r, a)) + 5,
            )
        assert load.count(_status(201)) > granted_before
    finally:
        results = load.stop()
    assert [s.process.pid for s in fleet.servers if s is not None] == pids  # no restarts
    for index in range(REPLICAS):
        assert (
            httpx.get(fleet.url(index) + "/readyz", timeout=10, trust_env=False).status_code == 200
        )
    statuses = {a.status_code for _, a in results if isinstance(a, httpx.Response)}
    assert statuses <= {201, 503}, load.summary()  # never a 500
    assert all(isinstance(a, httpx.Response) for _, a in results), load.summary()
    for _, answer in results:
        if isinstance(answer, httpx.Response) and answer.status_code == 503:
            assert answer.headers["Retry-After"]
            assert "certificate" not in answer.json()
            assert answer.json()["code"] == "store_unavailable"
    received = _certificates(results)
    granted = _export_and_verify(fleet).granted()
    assert {rid for rid in received if rid not in granted} == set()


def test_idempotent_retries_across_replicas_grant_once(fleet: Fleet) -> None:
    fleet.revive()
    key = str(uuid.uuid4())
    headers = {**fleet.user_headers, "Idempotency-Key": key}
    body = fleet.body(reason="retry INC-605 idempotency")

    def until_done(i: int) -> httpx.Response:
        # Like a client: retry while the first request is in flight (409 + Retry-After).
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=fleet.url(i), timeout=30, trust_env=False) as client:
            while True:
                answer = client.post(GRANT_PATH, json=body, headers=headers)
                if answer.status_code != 409 or time.monotonic() > deadline:
                    return answer
                time.sleep(0.05)

    with ThreadPoolExecutor(max_workers=12) as pool:
        concurrent = list(pool.map(until_done, range(12)))
    again = [until_done(i) for i in range(6)]
    answers = concurrent + again
    assert [a.status_code for a in answers] == [201] * len(answers), {a.text for a in answers}
    views = [a.json() for a in answers]
    assert len({(v["id"], v["serial"], v["certificate"]) for v in views}) == 1
    other = httpx.post(
        fleet.url(1) + GRANT_PATH,
        headers=headers,
        trust_env=False,
        timeout=30,
        json=fleet.body(reason="another INC-606 body"),
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    export = _export_and_verify(fleet)
    request_id = views[0]["id"]
    mine = [r["type"] for r in export.records if r["request_id"] == request_id]
    assert mine == ["access.requested", "access.granted"]
