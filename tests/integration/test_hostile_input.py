"""Never a 500 for anything a client sent (SPEC §7), on SQLite and on PostgreSQL: JSON nested
hundreds deep on every JSON route, and NUL or other control characters in path, query and
body fields, against a real `even serve` on each backend."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.even_server import EvenServer, run_even, start_even
from harness.ports import free_port
from harness.postgres import PostgresCluster
from tests.conftest import make_live_even_dir

DEPTHS = (9, 500, 700, 950, 5000)


@dataclass
class Live:
    server: EvenServer
    headers: dict[str, str]
    auditor: dict[str, str]
    public_key: str
    grant_id: str

    @property
    def url(self) -> str:
        return self.server.url


def start_backend(
    backend: str, directory: Path, request: pytest.FixtureRequest
) -> tuple[EvenServer, Path]:
    """A live `even serve` on `backend` ("sqlite" or "postgres"), migrated."""
    port = free_port()
    config = make_live_even_dir(directory / "even", port, generous_limits=True)
    env: dict[str, str] = {}
    if backend == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        database = cluster.create_database(f"even_{directory.name[-12:].replace('-', '_')}")
        env = {"EVEN_DATABASE_URL": database.app_url}
        run_even(
            config,
            "db",
            "upgrade",
            "--app-role",
            database.app_role,
            env={**env, "EVEN_DATABASE_ADMIN_URL": database.owner_url},
        )
    server = start_even(config, log_path=directory / "even.log", port=port, env=env)
    return server, config


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(request, tmp_path_factory) -> Iterator[Live]:
    directory = tmp_path_factory.mktemp(f"hostile-{request.param}")
    server, config = start_backend(request.param, directory, request)
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "k")],
            check=True,
        )
        public_key = (directory / "k.pub").read_text().strip()
        headers = {
            "Authorization": f"Bearer {run_even(config, 'dev-token', '--user', 'alice', env={})}"
        }
        auditor = run_even(config, "dev-token", "--user", "audrey", "--groups", "audit", env={})
        granted = httpx.post(
            server.url + "/v1/access-requests",
            json={
                "hostname": "db-1.prod.even.test",
                "reason": "INC-1 hostile input",
                "public_key": public_key,
            },
            headers=headers,
        )
        assert granted.status_code == 201, granted.text
        yield Live(
            server,
            headers,
            {"Authorization": f"Bearer {auditor}"},
            public_key,
            granted.json()["id"],
        )
        assert "Traceback" not in server.log_text(), server.log_text()[-3000:]
    finally:
        server.stop()


def _nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def _json_routes(live: Live) -> list[tuple[str, str]]:
    return [
        ("POST", "/v1/access-requests"),
        ("POST", f"/v1/access-requests/{live.grant_id}/revoke"),
        ("PUT", "/v1/users/me/keys"),
        ("POST", "/access-requests"),
    ]


@pytest.mark.parametrize("depth", DEPTHS)
def test_deep_json_is_a_4xx_on_every_json_route(live: Live, depth: int) -> None:
    for method, path in _json_routes(live):
        for body in (_nested(depth), b"[" * depth + b"]" * depth):
            answer = httpx.request(
                method,
                live.url + path,
                content=body,
                headers={**live.headers, "Content-Type": "application/json"},
            )
            assert answer.status_code in (400, 422), (method, path, depth, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"


def test_nul_and_controls_in_paths_and_queries_are_422(live: Live) -> None:
    auditor_paths = [
        "/v1/audit/events?username=a%00",
        "/v1/audit/events?hostname=a%01b",
        "/v1/audit/events?type=access.granted%00",
    ]
    user_paths = [
        "/v1/access-requests/x%00y",
        f"/v1/access-requests/{live.grant_id}%00",
        "/v1/access-requests?hostname=a%00b",
        "/v1/access-requests?status=GRANTED%00",
        "/v1/access-requests?login=%7F",
        "/access-requests?hostname=a%00b",
    ]
    for headers, paths in ((live.auditor, auditor_paths), (live.headers, user_paths)):
        for path in paths:
            answer = httpx.get(live.url + path, headers=headers)
            assert answer.status_code == 422, (path, answer.text)
            assert answer.json()["code"] == "control_character"
    revoke = httpx.post(live.url + "/v1/access-requests/x%00y/revoke", headers=live.headers)
    assert revoke.status_code == 422


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/access-requests", {"hostname": "db-1.prod.even.test", "reason": "a\u0000"}),
        ("POST", "/v1/access-requests", {"hostname": "db-1.prod.even.test\u0000", "reason": "a"}),
        ("POST", "/v1/access-requests", {"hostname": "h", "reason": "r", "x\u0000": 1}),
        ("PUT", "/v1/users/me/keys", {"keys": ["ssh-ed25519 AAAA\u0000"]}),
        (
            "POST",
            "/access-requests",
            {"hostname": "b", "reason": "r\u0000", "username": "alice", "remote_host": "h"},
        ),
    ],
)
def test_nul_in_body_fields_is_422(live: Live, method: str, path: str, body: dict) -> None:
    answer = httpx.request(method, live.url + path, json=body, headers=live.headers)
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize("reason", ["stop\u0000", "\ud800x", "   ", "", "x" * 1025], ids=repr)
def test_revoke_reason_has_the_grant_reason_checks(live: Live, reason: str) -> None:
    answer = httpx.post(
        f"{live.url}/v1/access-requests/{live.grant_id}/revoke",
        content=json.dumps({"reason": reason}).encode(),  # ASCII: \u escapes survive
        headers={**live.headers, "Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    state = httpx.get(f"{live.url}/v1/access-requests/{live.grant_id}", headers=live.headers)
    assert state.json()["status"] == "GRANTED"
