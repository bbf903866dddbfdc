"""Issue 15, must-show 3: two approvers approve a count-1 request at the same instant on two
`even serve` replicas sharing one PostgreSQL, with real IdP identities. Exactly one approval
grants (one `access.granted`, one certificate), the other is told 409 `not_pending`; the
exported log verifies as one chain.

The replicas serialise every write on one advisory lock (the writer order), and an approval
reads the request's state only after taking it, so the second approval sees GRANTED.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from oidc_provider import IdpUnavailable, OidcProvider, start_oidc_provider

from audit.checkpoint import load_public_keys
from audit.verify import Valid, verify_jsonl
from harness.even_server import EvenServer, even_command, start_even
from harness.ports import free_port
from harness.postgres import PostgresCluster, PostgresUnavailable, start_postgres
from tests.conftest import APPROVAL_POLICY, make_live_even_dir, requires_real_component

pytestmark = [pytest.mark.postgres, pytest.mark.even_server, pytest.mark.idp]

HOST = "db-1.approve.even.test"
ROUNDS = 8  # requests, each approved by two approvers at once
USERS = {"piutest": ["sre"], "carol": ["sre-leads"], "dave": ["sre-leads"], "audrey": ["audit"]}


@dataclass
class Pair:
    idp: OidcProvider
    servers: list[EvenServer]
    public_key: str

    def client(self, index: int, user: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.servers[index].url,
            headers={"Authorization": f"Bearer {self.idp.token(user)}"},
            trust_env=False,
            timeout=60,
        )


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("approvals-pg")
    try:
        cluster: PostgresCluster = start_postgres()
    except PostgresUnavailable as exc:
        requires_real_component(str(exc))
    servers: list[EvenServer] = []
    idp = None
    try:
        try:
            idp = start_oidc_provider(users=USERS)
        except IdpUnavailable as exc:
            requires_real_component(str(exc))
        ports = [free_port(), free_port()]
        config = make_live_even_dir(root / "even", ports[0], generous_limits=True)
        (root / "even" / "policy.yaml").write_text(APPROVAL_POLICY)
        document = yaml.safe_load(config.read_text())
        document["identity"]["issuers"] = [
            {
                "issuer": idp.issuer,
                "audience": "even",
                "username_claim": "preferred_username",
                "algorithms": ["ES256"],
            }
        ]
        config.write_text(yaml.safe_dump(document))
        database = cluster.database
        env = {"EVEN_DATABASE_URL": database.app_url}
        upgrade = [*even_command(), "db", "upgrade", "--config", str(config)]
        subprocess.run(
            [*upgrade, "--app-role", database.app_role],
            env={**os.environ, **env, "EVEN_DATABASE_ADMIN_URL": database.owner_url},
            check=True,
            capture_output=True,
            timeout=60,
        )
        for index, port in enumerate(ports):
            log = root / f"even-{index}.log"
            servers.append(start_even(config, log_path=log, port=port, env=env))
        key = root / "k"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        yield Pair(idp, servers, Path(f"{key}.pub").read_text().strip())
    finally:
        for server in servers:
            server.stop()
        if idp is not None:
            idp.stop()
        cluster.close()


def test_two_approvers_at_the_same_instant_on_two_replicas_grant_once(pair: Pair) -> None:
    body = {"hostname": HOST, "reason": "migrate INC-46", "public_key": pair.public_key}
    with pair.client(0, "piutest") as alice:
        ids = []
        for _ in range(ROUNDS):
            asked = alice.post("/v1/access-requests", json=body)
            assert asked.status_code == 202, asked.text
            ids.append(asked.json()["id"])
    carol, dave = pair.client(0, "carol"), pair.client(1, "dave")
    try:
        for rid in ids:
            start = threading.Barrier(2)

            def approve(client: httpx.Client, rid: str = rid, start=start) -> httpx.Response:
                start.wait()
                return client.post(f"/v1/access-requests/{rid}/approve", json={})

            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(approve, (carol, dave)))
            codes = sorted(a.status_code for a in answers)
            assert codes == [200, 409], [a.text for a in answers]
            refused = next(a for a in answers if a.status_code == 409)
            assert refused.json()["code"] == "not_pending"
            granted = next(a for a in answers if a.status_code == 200)
            assert granted.json()["status"] == "GRANTED"
    finally:
        carol.close()
        dave.close()
    with pair.client(1, "audrey") as auditor:
        export = auditor.get("/v1/audit/export")
        keys = load_public_keys(auditor.get("/v1/audit/public-key").content)
    assert export.status_code == 200, export.text
    assert isinstance(verify_jsonl([export.content], keys), Valid)
    records = [orjson.loads(line) for line in export.content.split(b"\n") if line]
    for rid in ids:
        mine = [r for r in records if r.get("request_id") == rid]
        types = [r["type"] for r in mine]
        assert types.count("access.granted") == 1, types
        assert types.count("access.approved") == 1, types
        granted = next(r for r in mine if r["type"] == "access.granted")
        assert granted["details"]["approvers"] in (["carol"], ["dave"])
    with pair.client(1, "piutest") as alice:
        for rid in ids:
            mine = alice.get(f"/v1/access-requests/{rid}").json()
            assert mine["status"] == "GRANTED" and mine["certificate"]
