"""Issue 15, must-show 1, 5 and 6: approvals with real IdP identities, a real sshd, real piu.

A running `even serve` trusts the npm `oidc-provider` as its issuer; every caller is a real
IdP user (piutest in `sre` requests, carol in `sre-leads` approves, bob is nobody, audrey is
an auditor). The certificate granted at carol's approval logs in to a real sshd, and its
validity starts at the approval. piu waits in the background and finishes when carol
approves; `--no-wait` exits 5. The classic API refuses a rule that needs approval plainly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from oidc_provider import IdpUnavailable, OidcProvider, start_oidc_provider

from audit import store as audit_store
from even.clock import FixedClock, SystemClock
from even.config import load_settings
from even.store.db import make_engine
from even.wiring import build_components
from harness.even_server import EvenServer, start_even
from harness.ports import free_port
from harness.sshd import SshdHandle, ensure_login_user, known_hosts_line, ssh_argv, start_sshd
from tests.conftest import APPROVAL_POLICY, make_live_even_dir, requires_real_component

pytestmark = [pytest.mark.sshd, pytest.mark.even_server, pytest.mark.idp]

HOST = "db-1.approve.even.test"
LOGIN = "piutest"
USERS = {
    "piutest": ["sre"],
    "bob": [],
    "carol": ["sre-leads"],
    "audrey": ["audit"],
}


@dataclass
class Lab:
    root: Path
    config: Path
    idp: OidcProvider
    even: EvenServer
    sshd: SshdHandle
    known_hosts: Path

    def client(self, user: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.even.url,
            headers={"Authorization": f"Bearer {self.idp.token(user)}"},
            trust_env=False,
            timeout=30,
        )

    def records(self, request_id: str) -> list[dict[str, Any]]:
        engine = make_engine(load_settings(self.config).resolved_database_url)
        try:
            with engine.connect() as conn:
                return audit_store.records_for_request(conn, request_id)
        finally:
            engine.dispose()

    def ssh(self, identity: Path, certificate: Path) -> subprocess.CompletedProcess[str]:
        argv = ssh_argv(
            self.sshd,
            login=LOGIN,
            hostname=HOST,
            identity=identity,
            certificate=certificate,
            known_hosts=self.known_hosts,
            command="id -un",
        )
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)

    def piu_env(self, home: Path) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "cfg"),
            "XDG_STATE_HOME": str(home / "state"),
            "PIU_EVEN_URL": self.even.url,
            "PIU_TOKEN": self.idp.token(LOGIN),
            "SSH_AUTH_SOCK": "",
        }


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, real_sshd_available: None) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("approvals")
    try:
        idp = start_oidc_provider(users=USERS)
    except IdpUnavailable as exc:
        requires_real_component(str(exc))
    even = sshd = None
    try:
        port = free_port()
        config = make_live_even_dir(root / "even", port)
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
        ensure_login_user(LOGIN)
        even = start_even(config, log_path=root / "even.log", port=port)
        ca_file = root / "ca.pub"
        ca_file.write_text(httpx.get(even.url + "/v1/ca", trust_env=False).text)
        sshd = start_sshd(root / "sshd", hostname=HOST, ca_file=ca_file)
        known_hosts = root / "known_hosts"
        known_hosts.write_text(known_hosts_line(sshd, HOST))
        yield Lab(root, config, idp, even, sshd, known_hosts)
    finally:
        if sshd is not None:
            sshd.stop()
        if even is not None:
            even.stop()
        idp.stop()


def _key(lab: Lab, name: str) -> tuple[Path, str]:
    path = lab.root / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path, path.with_name(name + ".pub").read_text().strip()


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_carol_approves_and_the_certificate_logs_in_from_the_approval(lab: Lab) -> None:
    identity, public_key = _key(lab, "id_one")
    body = {"hostname": HOST, "reason": "migrate INC-42", "public_key": public_key}
    with lab.client(LOGIN) as alice, lab.client("bob") as bob, lab.client("carol") as carol:
        asked = alice.post("/v1/access-requests", json=body)
        assert asked.status_code == 202, asked.text
        pending = asked.json()
        rid = pending["id"]
        assert pending["status"] == "PENDING_APPROVAL" and pending["certificate"] is None
        assert pending["approval"]["approver_groups"] == ["sre-leads"]
        assert [r["type"] for r in lab.records(rid)] == ["access.requested", "access.pending"]
        refused = bob.post(f"/v1/access-requests/{rid}/approve", json={})
        assert (refused.status_code, refused.json()["code"]) == (403, "not_an_approver")
        own = alice.post(f"/v1/access-requests/{rid}/approve", json={})
        assert (own.status_code, own.json()["code"]) == (403, "self_approval")
        listed = carol.get("/v1/approvals").json()["items"]
        assert rid in [item["id"] for item in listed]
        approved = carol.post(f"/v1/access-requests/{rid}/approve", json={"comment": "go"})
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "GRANTED"
        assert approved.json()["certificate"] is None  # the approver never gets it
        mine = alice.get(f"/v1/access-requests/{rid}").json()
    assert mine["status"] == "GRANTED" and mine["receipt"] is not None
    certificate = lab.root / "id_one-cert.pub"
    certificate.write_text(mine["certificate"] + "\n")
    result = lab.ssh(identity, certificate)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == LOGIN
    records = {r["type"]: r for r in lab.records(rid)}
    approved_at = _time(records["access.approved"]["time"][:19] + "Z")
    granted = records["access.granted"]
    assert granted["details"]["approvers"] == ["carol"]
    # Validity from the approval: the grant record's, the answer's, the certificate's own.
    assert _time(mine["valid_after"]) == approved_at - timedelta(seconds=60)
    assert _time(mine["valid_before"]) == approved_at + timedelta(minutes=60)
    assert granted["details"]["valid_after"] == mine["valid_after"]
    shown = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(certificate)], capture_output=True, text=True, check=True
    ).stdout
    valid = re.search(r"Valid: from (\S+) to (\S+)", shown)
    assert valid is not None
    local_from = datetime.fromisoformat(valid.group(1)).astimezone(UTC)
    assert local_from == approved_at - timedelta(seconds=60)
    with lab.client("audrey") as auditor:
        seen = auditor.get(f"/v1/access-requests/{rid}")
    assert seen.status_code == 200 and seen.json()["status"] == "GRANTED"
    assert seen.json()["certificate"] is None and seen.json()["receipt"] is None


def test_break_glass_grants_at_once_and_cannot_escape_review(lab: Lab) -> None:
    identity, public_key = _key(lab, "id_glass")
    body = {
        "hostname": HOST,
        "reason": "db down INC-47",
        "public_key": public_key,
        "emergency": True,
    }
    with lab.client(LOGIN) as alice:
        too_long = alice.post("/v1/access-requests", json={**body, "lifetime_minutes": 45})
        assert (too_long.status_code, too_long.json()["code"]) == (422, "lifetime_too_long")
        answer = alice.post("/v1/access-requests", json=body)
        assert answer.status_code == 201, answer.text
        grant = answer.json()
        review = {"verdict": "justified", "comment": "it was down, INC-47"}
        own = alice.post(f"/v1/access-requests/{grant['id']}/review", json=review)
        assert (own.status_code, own.json()["code"]) == (403, "self_approval")
    assert grant["emergency"] is True
    assert _time(grant["valid_before"]) - _time(grant["valid_after"]) == timedelta(minutes=31)
    certificate = lab.root / "id_glass-cert.pub"
    certificate.write_text(grant["certificate"] + "\n")
    result = lab.ssh(identity, certificate)
    assert result.returncode == 0, result.stderr
    granted = [r for r in lab.records(grant["id"]) if r["type"] == "access.granted"]
    assert granted[0]["details"]["emergency"] is True
    assert granted[0]["details"]["lifetime_minutes"] == 30
    # Unreviewed past the window: the jobs (same database, clock moved on) record it once.
    later = SystemClock().now() + timedelta(hours=25)
    components = build_components(load_settings(lab.config), FixedClock(later))
    assert components.jobs.approvals is not None
    assert grant["id"] in components.jobs.approvals.review_overdue_once()
    assert grant["id"] not in components.jobs.approvals.review_overdue_once()
    with lab.client("carol") as carol:
        overdue = carol.get("/v1/reviews").json()["items"]
        assert grant["id"] in [item["id"] for item in overdue]
        done = carol.post(f"/v1/access-requests/{grant['id']}/review", json=review)
    assert done.status_code == 200, done.text
    assert done.json()["verdict"] == "justified"
    types = [r["type"] for r in lab.records(grant["id"])]
    assert types.count("access.review_overdue") == 1 and types[-1] == "access.reviewed"


def test_piu_waits_in_the_background_until_another_user_approves(lab: Lab) -> None:
    home = lab.root / "home-wait"
    home.mkdir()
    waiting = subprocess.Popen(
        [sys.executable, "-m", "piu", "request-access", HOST, "migrate INC-43", "-o", "json"],
        env=lab.piu_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with lab.client("carol") as carol:
            rid = None
            for _ in range(200):  # piu's request reaching Even (a few seconds at most)
                items = carol.get("/v1/approvals").json()["items"]
                mine = [i for i in items if i["reason"] == "migrate INC-43"]
                if mine:
                    rid = mine[0]["id"]
                    break
                assert waiting.poll() is None, waiting.communicate()
                time.sleep(0.1)
            assert rid is not None, "piu's request never reached Even"
            assert waiting.poll() is None  # still waiting for carol
        # carol decides with piu too: `piu approvals` shows it, `piu approve` grants.
        carol_home = lab.root / "home-carol"
        carol_home.mkdir()
        carol_env = {**lab.piu_env(carol_home), "PIU_TOKEN": lab.idp.token("carol")}
        shown = subprocess.run(
            [sys.executable, "-m", "piu", "approvals", "-o", "json"],
            env=carol_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        assert rid in shown.stdout
        approved = subprocess.run(
            [sys.executable, "-m", "piu", "approve", rid, "-m", "ok INC-43"],
            env=carol_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert approved.returncode == 0, approved.stderr
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0, err
    assert "waiting for 1 approval from sre-leads" in err
    answer = json.loads(out)
    assert answer["id"] == rid and answer["status"] == "GRANTED"
    identity = Path(answer["identity_file"])
    result = lab.ssh(identity, Path(answer["certificate_file"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == LOGIN


def test_piu_no_wait_exits_5_and_leaves_the_request_pending(lab: Lab) -> None:
    home = lab.root / "home-nowait"
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "piu", "request-access", HOST, "migrate INC-44", "--no-wait"],
        env=lab.piu_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 5, done.stderr
    assert "piu wait" in done.stderr
    with lab.client(LOGIN) as alice:
        mine = alice.get("/v1/access-requests", params={"status": "PENDING_APPROVAL"}).json()
    assert any(i["reason"] == "migrate INC-44" for i in mine["items"])


def test_the_classic_api_refuses_plainly_what_needs_approval(lab: Lab) -> None:
    """Exactly what stups-piu 1.1 (`_request_even_access`) sends; it prints
    "Server returned status {code}: {text}" for anything but 200, so the text must read."""
    _, public_key = _key(lab, "id_classic")
    token = lab.idp.token(LOGIN)
    with lab.client(LOGIN) as alice:
        assert alice.put("/v1/users/me/keys", json={"keys": [public_key]}).status_code == 200
    data = {"username": LOGIN, "hostname": HOST, "reason": "migrate INC-45"}
    answer = httpx.post(
        lab.even.url.rstrip("/") + "/access-requests",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        content=json.dumps(data),
        trust_env=False,
        timeout=30,
    )
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text.startswith("Access refused (approval_required): ")
    assert "piu" in answer.text and answer.text[-1] == "\n"


def _piu(lab: Lab, home: Path, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    home.mkdir(exist_ok=True)
    env = {**lab.piu_env(home), "PIU_TOKEN": lab.idp.token(user)}
    return subprocess.run(
        [sys.executable, "-m", "piu", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_piu_cancel_deny_wait_and_review_against_even(lab: Lab) -> None:
    home, carol = lab.root / "home-verbs", lab.root / "home-verbs-carol"
    asked = _piu(
        lab, home, LOGIN, "request-access", HOST, "cancel me INC-48", "--no-wait", "-o", "json"
    )
    assert asked.returncode == 5, asked.stderr
    first = json.loads(asked.stdout)["id"]
    cancelled = _piu(lab, home, LOGIN, "cancel", first)
    assert cancelled.returncode == 0, cancelled.stderr
    asked = _piu(
        lab, home, LOGIN, "request-access", HOST, "deny me INC-49", "--no-wait", "-o", "json"
    )
    second = json.loads(asked.stdout)["id"]
    denied = _piu(lab, carol, "carol", "deny", second, "-m", "not now")
    assert denied.returncode == 0, denied.stderr
    waited = _piu(lab, home, LOGIN, "wait", second)
    assert waited.returncode == 4, waited.stderr  # denied
    assert "denied" in waited.stderr
    glass = _piu(
        lab, home, LOGIN, "request-access", "--emergency", HOST, "db down INC-50", "-o", "json"
    )
    assert glass.returncode == 0, glass.stderr
    third = json.loads(glass.stdout)["id"]
    own = _piu(lab, home, LOGIN, "review", third, "--verdict", "justified", "-m", "mine")
    assert own.returncode == 4, own.stderr  # self_approval
    reviewed = _piu(lab, carol, "carol", "review", third, "--verdict", "justified", "-m", "ok")
    assert reviewed.returncode == 0, reviewed.stderr
    types = {rid: [r["type"] for r in lab.records(rid)] for rid in (first, second, third)}
    assert types[first][-1] == "access.cancelled"
    assert types[second][-1] == "access.denied"
    assert types[third][-1] == "access.reviewed"
