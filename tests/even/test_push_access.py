"""Push mode on the server, against a fake pusher that behaves like odd on each host.

The real paramiko pusher, odd and sshd are in tests/integration/test_push_netns.py; here the
fail-closed order, the audit records, the rollback of partial pushes, expiry, reconciliation,
revoke, the key registry and the classic API are checked in milliseconds.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from audit import store as audit_store
from even.api.app import create_app
from even.clock import FixedClock
from even.config import load_settings
from even.errors import StoreUnavailable
from even.identity import Identity
from even.push.errors import HostKeyRejected, HostUnreachable
from even.push.pusher import CommandResult, Destination
from even.service.models import AccessRequestInput
from even.service.push_access import PushAccessService
from even.store.db import make_engine
from even.store.schema import upgrade
from even.wiring import Components, build_components
from tests.conftest import make_even_dir

BASTION_HOST = "bastion.even.test"  # the bastion's address host: what Even connects to
TARGET = "db.lab.even.test"
POLICY = r"""
defaults: {max_lifetime_minutes: 60, reason: {min_length: 5}}
roles:
  auditor: {groups: [audit]}
  admin: {groups: [security]}
rules:
  - name: push-lab
    subjects: {users: [alice, bob, pushy]}
    hosts: ["*.lab.even.test"]
    logins: ["{username}", deploy]
    modes: [push]
    bastion: odd-eu
    source_addresses: [10.0.0.0/8]
  - name: direct
    subjects: {users: [alice]}
    hosts: ["*.direct.even.test"]
    logins: ["{username}"]
    modes: [push, certificate]
    max_lifetime_minutes: 30
"""


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


class FakeHosts:
    """odd on every host, keyed by the name Even connects to; failures injected per host."""

    def __init__(self) -> None:
        self.lines: dict[str, dict[str, str]] = defaultdict(dict)
        self.calls: list[tuple[str, str | None, str]] = []
        self.fail: dict[tuple[str, str], BaseException | int] = {}
        # Done on the host, but the answer never reaches Even (the connection drops).
        self.lost: dict[tuple[str, str], BaseException] = {}

    def run(self, destination: Destination, command: str, *, timeout: float) -> CommandResult:
        via = destination.via.name if destination.via else None
        self.calls.append((destination.name, via, command))
        words = command.split(" ")
        verb, gid = words[0], words[words.index("--grant-id") + 1]
        failure = self.fail.get((destination.name, verb))
        if isinstance(failure, BaseException):
            raise failure
        if isinstance(failure, int):
            return CommandResult(failure, "", "odd: error: login 'x' does not exist on this host")
        lost = self.lost.get((destination.name, verb))
        if verb == "grant":
            self.lines[destination.name][gid] = command
            if lost is not None:
                raise lost
            return CommandResult(0, f"granted {gid} login=x\n", "")
        removed = self.lines[destination.name].pop(gid, None) is not None
        if lost is not None:
            raise lost
        return CommandResult(0, f"revoked {gid} login=x lines={int(removed)}\n", "")

    def close(self) -> None:
        pass

    def hosts_with_lines(self) -> list[str]:
        return sorted(host for host, lines in self.lines.items() if lines)


@pytest.fixture
def push_config(tmp_path: Path) -> Path:
    config = make_even_dir(tmp_path / "even", POLICY)
    data = yaml.safe_load(config.read_text())
    data["bastions"] = [
        {"name": "odd-eu", "address": f"{BASTION_HOST}:22", "hosts": ["*.lab.even.test"]}
    ]
    data["push"]["user"] = "pushy"
    config.write_text(yaml.safe_dump(data))
    upgrade(make_engine(load_settings(config).resolved_database_url))
    return config


@pytest.fixture
def hosts() -> FakeHosts:
    return FakeHosts()


@pytest.fixture
def components(push_config: Path, clock: FixedClock, hosts: FakeHosts) -> Components:
    return build_components(load_settings(push_config), clock, pusher=hosts)


@pytest.fixture
def client(components: Components):
    with TestClient(create_app(components.settings, components=components)) as client:
        yield client


@pytest.fixture
def user_keys(tmp_path: Path) -> list[str]:
    keys = []
    for name in ("k1", "k2"):
        path = tmp_path / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@laptop", "-f", str(path)],
            check=True,
        )
        keys.append(path.with_suffix(".pub").read_text().strip())
    return keys


def auth(components: Components, clock: FixedClock, user: str = "alice", groups=()) -> dict:
    assert components.dev_issuer is not None
    token = components.dev_issuer.mint(user, list(groups), issued_at=int(clock.now().timestamp()))
    return {"Authorization": f"Bearer {token}"}


def records(components: Components, request_id: str | None = None) -> list[dict[str, Any]]:
    with components.engine.connect() as conn:
        found = list(audit_store.iter_records(conn))
    return [r for r in found if request_id is None or r["request_id"] == request_id]


def register(client, components, clock, keys: list[str], user: str = "alice") -> None:
    r = client.put("/v1/users/me/keys", headers=auth(components, clock, user), json={"keys": keys})
    assert r.status_code == 200, r.text


def push(client, components, clock, user: str = "alice", **body: Any):
    payload = {"hostname": TARGET, "reason": "fix INC-9", "mode": "push", **body}
    return client.post("/v1/access-requests", headers=auth(components, clock, user), json=payload)


def test_push_grant_through_the_bastion(client, components, clock, hosts, user_keys) -> None:
    register(client, components, clock, user_keys)
    r = push(client, components, clock)
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["status"] == "GRANTED" and answer["mode"] == "push"
    assert answer["certificate"] is None and answer["bastion"] == "odd-eu"
    assert answer["ssh_command"] == f"ssh -J alice@odd-eu alice@{TARGET}"
    assert answer["receipt"] is not None
    request_id = answer["id"]
    expires = (clock.now() + timedelta(minutes=60)).strftime("%Y%m%d%H%M%SZ")
    assert answer["valid_before"] == (clock.now() + timedelta(minutes=60)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    # The bastion directly, the target through it (in parallel); one line per key.
    assert sorted((host, via) for host, via, _ in hosts.calls) == [
        (BASTION_HOST, None),
        (BASTION_HOST, None),
        (TARGET, BASTION_HOST),
        (TARGET, BASTION_HOST),
    ]
    bastion_line = hosts.lines[BASTION_HOST][request_id]
    assert bastion_line.startswith(
        f"grant --grant-id {request_id} --login alice --expires {expires} --jump-to {TARGET} "
    )
    target_lines = [hosts.lines[TARGET][g] for g in (request_id, f"{request_id}-k2")]
    for line in target_lines:
        assert f"--login alice --expires {expires} --from 10.0.0.0/8 --key ssh-ed25519 " in line
        assert line.endswith(tuple(k.split()[1] for k in user_keys))  # re-encoded, no comment
    assert {line.rsplit(" ", 1)[1] for line in target_lines} == {k.split()[1] for k in user_keys}
    types = [r["type"] for r in records(components, request_id)]
    assert types == ["access.requested", "access.push_started", "access.granted"]
    started = records(components, request_id)[1]["details"]
    assert started["hosts"] == ["odd-eu", TARGET] and started["login"] == "alice"
    assert started["expiry"] == expires and len(started["fingerprints"]) == 2
    assert started["fingerprint"].startswith("SHA256:")


def test_a_key_in_the_request_is_pushed_instead_of_the_registered_ones(
    client, components, clock, hosts, user_keys
) -> None:
    register(client, components, clock, user_keys[:1])
    r = push(client, components, clock, public_key=user_keys[1], login="deploy")
    assert r.status_code == 201, r.text
    (line,) = hosts.lines[TARGET].values()
    assert user_keys[1].split()[1] in line and "--login deploy" in line
    assert "--login alice" in next(iter(hosts.lines[BASTION_HOST].values()))


def test_without_any_key_push_mode_says_how_to_register_one(client, components, clock) -> None:
    r = push(client, components, clock)
    assert r.status_code == 422 and r.json()["code"] == "no_registered_keys"
    assert "piu keys add" in r.json()["detail"]


def test_the_push_user_is_never_a_login(client, components, clock, hosts, user_keys) -> None:
    register(client, components, clock, user_keys, user="pushy")
    r = push(client, components, clock, user="pushy")  # {username} would be the push user
    assert r.status_code == 403 and r.json()["code"] == "login_not_allowed"
    assert hosts.calls == []
    assert records(components)[-1]["type"] == "access.denied"


def test_a_client_cannot_pick_another_bastion(client, components, clock, hosts, user_keys):
    register(client, components, clock, user_keys)
    r = push(client, components, clock, bastion="elsewhere")
    assert r.status_code == 403 and r.json()["code"] == "bastion_not_allowed"
    assert hosts.calls == []


@pytest.mark.parametrize(
    "failure",
    [
        HostKeyRejected(TARGET, "no host key pinned for 'db.lab.even.test' in push.known_hosts"),
        HostUnreachable(TARGET, "cannot connect"),
        2,
    ],
)
def test_a_failed_target_leaves_nothing_on_the_bastion(
    client, components, clock, hosts, user_keys, failure
) -> None:
    register(client, components, clock, user_keys)
    hosts.fail[(TARGET, "grant")] = failure
    r = push(client, components, clock)
    assert r.status_code == 502, r.text
    problem = r.json()
    assert problem["code"] == "push_failed" and TARGET in problem["detail"]
    assert "nothing was granted" in problem["detail"]
    assert hosts.hosts_with_lines() == []  # the bastion's lines were taken back
    (row,) = client.get("/v1/access-requests", headers=auth(components, clock)).json()["items"]
    assert row["status"] == "FAILED"
    types = [r["type"] for r in records(components, row["id"])]
    assert types == ["access.requested", "access.push_started", "access.failed"]
    failed = records(components, row["id"])[-1]["details"]
    assert failed["cleanup"] == "clean" and failed["host"] == TARGET


def test_an_unreachable_bastion_is_502_and_never_granted(
    client, components, clock, hosts, user_keys
) -> None:
    register(client, components, clock, user_keys)
    hosts.fail[(BASTION_HOST, "grant")] = HostUnreachable(BASTION_HOST, "connection refused")
    r = push(client, components, clock)
    assert r.status_code == 502 and "connection refused" in r.json()["detail"]
    assert not any(r["type"] == "access.granted" for r in records(components))
    assert hosts.hosts_with_lines() == []  # the target's line (pushed meanwhile) is gone too


def test_an_outcome_that_cannot_be_committed_takes_the_lines_back(
    client, components, clock, hosts, user_keys, monkeypatch
) -> None:
    register(client, components, clock, user_keys)

    def store_down(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("the audit store is unavailable")

    monkeypatch.setattr(PushAccessService, "_grant", store_down)
    r = push(client, components, clock)
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert hosts.hosts_with_lines() == []
    assert not any(r["type"] == "access.granted" for r in records(components))
    # The row is still PUSHING: the reconciler closes it once the push timeout has passed.
    (row,) = client.get("/v1/access-requests", headers=auth(components, clock)).json()["items"]
    assert row["status"] == "PUSHING"
    clock.moment += timedelta(seconds=components.settings.push.timeout_seconds + 1)
    assert components.jobs.reconcile_once() == [row["id"]]
    assert records(components, row["id"])[-1]["details"]["error"] == "reconciled"


def test_the_reconciler_revokes_a_push_left_without_outcome(
    components, clock, hosts, user_keys
) -> None:
    alice = Identity("alice", (), "dev", "alice", dev_issuer=True)
    components.keys.replace(alice, user_keys)
    hosts.fail[(TARGET, "grant")] = Crash()  # dies after the bastion line, before any outcome
    request = AccessRequestInput(hostname=TARGET, reason="fix INC-9", mode="push")
    with pytest.raises(Crash):
        components.access.request_access(alice, request)
    del hosts.fail[(TARGET, "grant")]
    hosts.lines[TARGET]["leftover"] = "a line from an earlier, unrelated grant"
    (request_id,) = {r["request_id"] for r in records(components, None) if r["request_id"]}
    assert hosts.lines[BASTION_HOST]  # the crash left the hop behind
    assert components.jobs.reconcile_once() == []  # younger than the push timeout: in flight
    clock.moment += timedelta(seconds=components.settings.push.timeout_seconds)
    assert components.jobs.reconcile_once() == [request_id]
    assert not hosts.lines[BASTION_HOST] and list(hosts.lines[TARGET]) == ["leftover"]
    last = records(components, request_id)[-1]
    assert last["type"] == "access.failed"
    assert last["details"]["error"] == "reconciled" and last["details"]["cleanup"] == "clean"
    assert components.jobs.reconcile_once() == []  # once is enough


def test_an_unclean_host_keeps_the_push_for_the_next_round(
    components, clock, hosts, user_keys
) -> None:
    alice = Identity("alice", (), "dev", "alice", dev_issuer=True)
    components.keys.replace(alice, user_keys)
    hosts.fail[(TARGET, "grant")] = Crash()
    with pytest.raises(Crash):
        components.access.request_access(
            alice, AccessRequestInput(hostname=TARGET, reason="fix INC-9", mode="push")
        )
    hosts.fail[(BASTION_HOST, "revoke")] = HostUnreachable(BASTION_HOST, "down")
    clock.moment += timedelta(minutes=1)
    assert components.jobs.reconcile_once() == []  # not clean, not expired: try again later
    clock.moment += timedelta(hours=2)  # past the grant's own expiry: sshd refuses it by now
    (closed,) = components.jobs.reconcile_once()
    assert records(components, closed)[-1]["details"]["cleanup"] == "expired"


def test_expiry_marks_grants_expired_and_removes_pushed_lines(
    client, components, clock, hosts, user_keys
) -> None:
    register(client, components, clock, user_keys)
    pushed = push(client, components, clock).json()
    cert = client.post(
        "/v1/access-requests",
        headers=auth(components, clock),
        json={"hostname": "h.direct.even.test", "reason": "fix INC-9", "public_key": user_keys[0]},
    ).json()
    assert components.jobs.expire_once() == []
    clock.moment += timedelta(minutes=31)  # past the certificate's 30 min, not the push's 60
    assert components.jobs.expire_once() == [cert["id"]]
    assert hosts.hosts_with_lines() == [BASTION_HOST, TARGET]
    clock.moment += timedelta(minutes=30)
    assert components.jobs.expire_once() == [pushed["id"]]
    assert hosts.hosts_with_lines() == []
    assert records(components, pushed["id"])[-1]["type"] == "access.expired"
    item = client.get(f"/v1/access-requests/{pushed['id']}", headers=auth(components, clock))
    assert item.json()["status"] == "EXPIRED"


def test_revoke_is_revoked_only_once_every_host_is_clean(
    client, components, clock, hosts, user_keys
) -> None:
    register(client, components, clock, user_keys)
    request_id = push(client, components, clock).json()["id"]
    hosts.fail[(TARGET, "revoke")] = HostUnreachable(TARGET, "timed out")
    url = f"/v1/access-requests/{request_id}/revoke"
    r = client.post(url, headers=auth(components, clock))
    assert r.status_code == 502 and r.json()["code"] == "revoke_incomplete"
    assert TARGET in r.json()["detail"]
    status = client.get(f"/v1/access-requests/{request_id}", headers=auth(components, clock))
    assert status.json()["status"] == "GRANTED"
    assert hosts.hosts_with_lines() == [TARGET]  # the bastion was still cleaned
    # Someone else's request never makes Even touch a host.
    calls = len(hosts.calls)
    assert client.post(url, headers=auth(components, clock, "bob")).status_code == 404
    assert len(hosts.calls) == calls
    del hosts.fail[(TARGET, "revoke")]
    r = client.post(url, headers=auth(components, clock))
    assert r.status_code == 200 and r.json()["status"] == "REVOKED"
    assert hosts.hosts_with_lines() == []
    assert records(components, request_id)[-1]["type"] == "access.revoked"


def test_idempotent_push_is_pushed_once(client, components, clock, hosts, user_keys) -> None:
    register(client, components, clock, user_keys)
    headers = {**auth(components, clock), "Idempotency-Key": "k-1"}
    body = {"hostname": TARGET, "reason": "fix INC-9", "mode": "push"}
    first = client.post("/v1/access-requests", headers=headers, json=body)
    again = client.post("/v1/access-requests", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert len([c for c in hosts.calls if c[2].startswith("grant")]) == 4


def test_push_mode_is_unavailable_without_a_push_key(push_config, clock, user_keys) -> None:
    (push_config.parent / "push_key").unlink()
    components = build_components(load_settings(push_config), clock)
    assert components.push is None
    with TestClient(create_app(components.settings, components=components)) as client:
        register(client, components, clock, user_keys)
        r = push(client, components, clock)
    assert r.status_code == 422 and r.json()["code"] == "mode_unavailable"


def test_the_key_registry_replaces_and_is_audited(client, components, clock, user_keys) -> None:
    headers = auth(components, clock)
    assert client.get("/v1/users/me/keys", headers=headers).json() == {"keys": []}
    register(client, components, clock, [user_keys[0], user_keys[0], user_keys[1]])
    stored = client.get("/v1/users/me/keys", headers=headers).json()["keys"]
    assert sorted(stored) == sorted(" ".join(k.split()[:2]) for k in user_keys)  # no comments
    register(client, components, clock, [user_keys[1]])
    updated = [r for r in records(components) if r["type"] == "keys.updated"]
    assert len(updated) == 2 and updated[-1]["username"] == "alice"
    assert updated[-1]["details"]["count"] == 1 and len(updated[-1]["details"]["removed"]) == 1
    assert client.get("/v1/users/me/keys", headers=auth(components, clock, "bob")).json() == {
        "keys": []
    }
    for bad in (
        ['command="id" ' + user_keys[0]],
        [user_keys[0] + "\n" + user_keys[1]],
        ["ssh-ed25519-cert-v01@openssh.com AAAA"],
        [user_keys[0]] * 9,
    ):
        r = client.put("/v1/users/me/keys", headers=headers, json={"keys": bad})
        assert r.status_code == 422, bad
    assert client.put("/v1/users/me/keys", headers=headers, json={"keys": []}).json() == {
        "keys": []
    }


def test_classic_api_grants_through_the_bastion(client, components, clock, hosts, user_keys):
    register(client, components, clock, user_keys)
    headers = auth(components, clock)
    for bastion in ("odd-eu", BASTION_HOST):  # by name, or by the host old clients knew
        r = client.post(
            "/access-requests",
            headers=headers,
            json={
                "hostname": bastion,
                "remote_host": TARGET,
                "username": "alice",
                "reason": "fix INC-9",
                "lifetime_minutes": 15,
            },
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        assert r.text == (
            f"Access to host {TARGET} for user alice was granted.\n"
            f"ssh -J alice@odd-eu alice@{TARGET}\n"
        )
    r = client.post(
        "/access-requests",
        headers=headers,
        json={"hostname": "nowhere.even.test", "remote_host": TARGET, "reason": "fix INC-9"},
    )
    assert r.status_code == 422
    listed = client.get("/access-requests", headers=headers).json()
    assert len(listed) == 2
    assert set(listed[0]) == {
        "id", "username", "hostname", "remote_host", "reason", "status", "status_reason",
        "lifetime_minutes", "created", "created_by", "last_modified", "last_modified_by",
    }  # fmt: skip
    assert listed[0]["hostname"] == "odd-eu" and listed[0]["remote_host"] == TARGET
    assert listed[0]["username"] == "alice" and listed[0]["created_by"] == "alice"
    assert listed[0]["status"] == "GRANTED" and listed[0]["lifetime_minutes"] == 15
    assert client.get("/access-requests", headers=auth(components, clock, "bob")).json() == []
    auditor = auth(components, clock, "carol", groups=["audit"])
    assert len(client.get("/access-requests", headers=auditor).json()) == 2


def _lose_the_answer_and_refuse_the_first_cleanup(client, components, clock, hosts, user_keys):
    """The target writes the line but its answer is lost; the push's own clean-up there is
    refused. Returns the failed request's id (the line is still on the target)."""
    register(client, components, clock, user_keys)
    hosts.lost[(TARGET, "grant")] = HostUnreachable(TARGET, "connection reset")
    hosts.fail[(TARGET, "revoke")] = HostUnreachable(TARGET, "connection refused")
    r = push(client, components, clock)
    assert r.status_code == 502 and TARGET in r.json()["detail"]
    del hosts.lost[(TARGET, "grant")]
    (row,) = client.get("/v1/access-requests", headers=auth(components, clock)).json()["items"]
    assert row["status"] == "FAILED" and row["status_reason"] == "cleanup_incomplete"
    assert hosts.hosts_with_lines() == [TARGET]  # a working key Even must still remove
    failed = records(components, row["id"])[-1]
    assert failed["type"] == "access.failed" and failed["details"]["cleanup"] == "incomplete"
    assert failed["details"]["leftover_hosts"] == [TARGET]
    return row["id"]


def test_a_failed_push_with_a_leftover_line_stays_listed_until_the_host_is_clean(
    client, components, clock, hosts, user_keys
) -> None:
    request_id = _lose_the_answer_and_refuse_the_first_cleanup(
        client, components, clock, hosts, user_keys
    )
    # Still refused: the reconciler keeps it (no waiting for the push timeout).
    assert components.jobs.reconcile_once() == []
    assert hosts.hosts_with_lines() == [TARGET]
    del hosts.fail[(TARGET, "revoke")]
    assert components.jobs.reconcile_once() == [request_id]
    assert hosts.hosts_with_lines() == []
    last = records(components, request_id)[-1]
    assert last["type"] == "access.failed"
    assert last["details"]["error"] == "cleanup" and last["details"]["cleanup"] == "clean"
    assert components.jobs.reconcile_once() == []  # off the list once clean
    status = client.get(f"/v1/access-requests/{request_id}", headers=auth(components, clock))
    assert status.json()["status"] == "FAILED"
    assert status.json()["status_reason"] == "push_failed: cleanup clean"


def test_a_failed_push_with_a_leftover_line_is_revocable_meanwhile(
    client, components, clock, hosts, user_keys
) -> None:
    request_id = _lose_the_answer_and_refuse_the_first_cleanup(
        client, components, clock, hosts, user_keys
    )
    url = f"/v1/access-requests/{request_id}/revoke"
    r = client.post(url, headers=auth(components, clock))
    assert r.status_code == 502 and r.json()["code"] == "revoke_incomplete"  # still refused
    del hosts.fail[(TARGET, "revoke")]
    r = client.post(url, headers=auth(components, clock))
    assert r.status_code == 200 and r.json()["status"] == "REVOKED"
    assert hosts.hosts_with_lines() == []
    assert records(components, request_id)[-1]["type"] == "access.revoked"
    assert components.jobs.reconcile_once() == []  # revoked: nothing left to reconcile


def test_a_clean_failure_is_not_revocable(client, components, clock, hosts, user_keys) -> None:
    register(client, components, clock, user_keys)
    hosts.fail[(TARGET, "grant")] = HostUnreachable(TARGET, "connection refused")
    assert push(client, components, clock).status_code == 502
    (row,) = client.get("/v1/access-requests", headers=auth(components, clock)).json()["items"]
    assert row["status"] == "FAILED" and row["status_reason"] == f"push_failed: {TARGET}"
    r = client.post(f"/v1/access-requests/{row['id']}/revoke", headers=auth(components, clock))
    assert r.status_code == 409
