"""Approvals in push mode (SPEC §5, §11): nothing is pushed while a request waits; the last
approval pushes the keys given at request time through the ordinary push grant
(`access.push_started`, then `access.granted` with `approvers`); a push failure at that
moment fails the request (502) with its record. Break-glass pushes at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from even.api.app import create_app
from even.clock import FixedClock
from even.config import load_settings
from even.push.errors import HostUnreachable
from even.store.db import make_engine
from even.store.schema import upgrade
from even.wiring import Components, build_components
from tests.conftest import make_even_dir
from tests.even.test_push_access import POLICY, FakeHosts, auth, records, register

GATED = "db.gated.even.test"
GATED_POLICY = (
    POLICY
    + r"""
  - name: gated
    subjects: {users: [alice]}
    hosts: ["*.gated.even.test"]
    logins: ["{username}"]
    modes: [push]
    approval: {approvers: {users: [carol]}, count: 1, pending_minutes: 60}
    emergency: {allowed: true, max_lifetime_minutes: 15}
"""
)


@pytest.fixture
def components(tmp_path: Path, clock: FixedClock, hosts: FakeHosts) -> Components:
    config = make_even_dir(tmp_path / "even", GATED_POLICY)
    data = yaml.safe_load(config.read_text())
    data["push"]["user"] = "pushy"
    data["bastions"] = [
        {"name": "odd-eu", "address": "bastion.even.test:22", "hosts": ["*.lab.even.test"]}
    ]
    config.write_text(yaml.safe_dump(data))
    upgrade(make_engine(load_settings(config).resolved_database_url))
    return build_components(load_settings(config), clock, pusher=hosts)


@pytest.fixture
def hosts() -> FakeHosts:
    return FakeHosts()


@pytest.fixture
def client(components: Components):
    with TestClient(create_app(components.settings, components=components)) as client:
        yield client


@pytest.fixture
def keys(tmp_path: Path) -> list[str]:
    import subprocess

    path = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return [path.with_suffix(".pub").read_text().strip()]


def _ask(client: TestClient, components: Components, clock: FixedClock, **extra) -> dict:
    body = {"hostname": GATED, "reason": "rotate INC-9", "mode": "push", **extra}
    answer = client.post("/v1/access-requests", headers=auth(components, clock), json=body)
    assert answer.status_code in (201, 202), answer.text
    return dict(answer.json())


def test_push_waits_for_the_approver_then_pushes(
    client: TestClient, components: Components, clock: FixedClock, hosts: FakeHosts, keys
) -> None:
    register(client, components, clock, keys)
    pending = _ask(client, components, clock)
    assert pending["status"] == "PENDING_APPROVAL" and hosts.calls == []
    # Keys registered later do not change what was asked for.
    register(client, components, clock, [])
    approved = client.post(
        f"/v1/access-requests/{pending['id']}/approve", headers=auth(components, clock, "carol")
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "GRANTED"
    assert hosts.hosts_with_lines() == [GATED]
    assert keys[0].split(" ")[1] in next(iter(hosts.lines[GATED].values()))
    types = [r["type"] for r in records(components, pending["id"])]
    assert types == [
        "access.requested",
        "access.pending",
        "access.approved",
        "access.push_started",
        "access.granted",
    ]
    granted = records(components, pending["id"])[-1]
    assert granted["details"]["approvers"] == ["carol"]


def test_a_push_failure_at_the_last_approval_fails_the_request(
    client: TestClient, components: Components, clock: FixedClock, hosts: FakeHosts, keys
) -> None:
    register(client, components, clock, keys)
    pending = _ask(client, components, clock)
    hosts.fail[(GATED, "grant")] = HostUnreachable(GATED, "down")
    approved = client.post(
        f"/v1/access-requests/{pending['id']}/approve", headers=auth(components, clock, "carol")
    )
    assert (approved.status_code, approved.json()["code"]) == (502, "push_failed")
    mine = client.get(f"/v1/access-requests/{pending['id']}", headers=auth(components, clock))
    assert mine.json()["status"] == "FAILED"
    assert [r["type"] for r in records(components, pending["id"])][-1] == "access.failed"


def test_break_glass_pushes_at_once(
    client: TestClient, components: Components, clock: FixedClock, hosts: FakeHosts, keys
) -> None:
    register(client, components, clock, keys)
    answer = _ask(client, components, clock, emergency=True)
    assert answer["status"] == "GRANTED" and answer["emergency"] is True
    granted = records(components, answer["id"])[-1]
    assert granted["details"]["emergency"] is True
    assert granted["details"]["lifetime_minutes"] == 15
    assert hosts.hosts_with_lines() == [GATED]
