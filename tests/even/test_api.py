"""The HTTP API in process: grants, denials, their audit records, and clear 4xx answers."""

import subprocess

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from audit import store as audit_store
from audit.chain import record_hash
from even.api.app import create_app
from even.identity.dev_issuer import DevIssuer


@pytest.fixture
def dev(components) -> DevIssuer:
    assert components.dev_issuer is not None
    return components.dev_issuer


def bearer(dev: DevIssuer, clock, user: str = "alice", groups=()) -> dict[str, str]:
    token = dev.mint(user, list(groups), issued_at=int(clock.now().timestamp()))
    return {"Authorization": f"Bearer {token}"}


def records(components) -> list[dict]:
    with components.engine.connect() as conn:
        return list(audit_store.iter_records(conn))


def grant_body(user_key: str, **overrides) -> dict:
    return {
        "hostname": "db-1.prod.even.test",
        "reason": "debug INC-123 latency",
        "public_key": user_key,
        **overrides,
    }


def test_grant_answer_and_audit_records(client, components, dev, clock, user_key) -> None:
    r = client.post("/v1/access-requests", headers=bearer(dev, clock), json=grant_body(user_key))
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["status"] == "GRANTED"
    assert answer["principals"] == ["alice@db-1.prod.even.test"]
    assert answer["key_id"] == f"even:{answer['id']}:alice"
    assert answer["certificate"].startswith("ssh-ed25519-cert-v01@openssh.com ")
    assert answer["bastion_certificate"] is None
    types = [rec["type"] for rec in records(components)]
    assert types == ["policy.loaded", "access.requested", "access.granted"]
    granted = records(components)[-1]
    assert granted["details"]["serial"] == answer["serial"]
    assert granted["details"]["key_id"] == answer["key_id"]
    assert granted["details"]["dev_issuer"] is True
    assert granted["reason"] == "debug INC-123 latency"
    receipt = answer["receipt"]
    assert (receipt["seq"], receipt["hash"]) == (granted["seq"], granted["hash"])
    assert all(record_hash(rec) == rec["hash"] for rec in records(components))


def test_certificate_content_comes_from_policy(client, dev, clock, user_key, tmp_path) -> None:
    r = client.post(
        "/v1/access-requests",
        headers=bearer(dev, clock),
        json=grant_body(user_key, lifetime_minutes=15, login="deploy"),
    )
    assert r.status_code == 201
    cert = tmp_path / "c-cert.pub"
    cert.write_text(r.json()["certificate"] + "\n")
    shown = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(cert)], capture_output=True, text=True, check=True
    ).stdout
    assert f"Serial: {r.json()['serial']}" in shown
    assert "deploy@db-1.prod.even.test" in shown
    assert "permit-pty" in shown and "permit-port-forwarding" not in shown


def test_serials_are_unique(client, dev, clock, user_key) -> None:
    serials = set()
    for _ in range(5):
        r = client.post(
            "/v1/access-requests", headers=bearer(dev, clock), json=grant_body(user_key)
        )
        serials.add(r.json()["serial"])
    assert len(serials) == 5 and min(serials) >= 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"hostname": "db-1.staging.even.test"}, 403, "no_matching_rule"),
        ({"login": "root"}, 403, "login_not_allowed"),
        ({"reason": "too short"}, 422, "reason_rejected"),
        ({"reason": "a long reason but no ticket id"}, 422, "reason_rejected"),
        ({"lifetime_minutes": 61}, 422, "lifetime_too_long"),
        ({"bastion": "odd-eu"}, 403, "bastion_not_allowed"),
    ],
)
def test_policy_denials_are_audited(
    client, components, dev, clock, user_key, body, status, code
) -> None:
    r = client.post(
        "/v1/access-requests", headers=bearer(dev, clock), json=grant_body(user_key, **body)
    )
    assert (r.status_code, r.json()["code"]) == (status, code)
    assert r.headers["content-type"] == "application/problem+json"
    if code in ("reason_rejected", "lifetime_too_long"):
        assert r.json()["rule"] == "sre-prod"
    last = records(components)[-1]
    assert last["type"] == "access.denied" and last["details"]["code"] == code
    assert "GRANTED" not in {row.status for row in _rows(components)}


def _rows(components):
    with components.engine.connect() as conn:
        return conn.execute(text("SELECT status FROM access_requests")).all()


def test_missing_or_bad_token_is_401_with_www_authenticate(client, user_key) -> None:
    for headers in [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}]:
        r = client.post("/v1/access-requests", headers=headers, json=grant_body(user_key))
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        (b"{", "application/json", 400),
        (b'{"hostname": "a", "hostname": "b"}', "application/json", 422),
        (b"hostname=x", "application/x-www-form-urlencoded", 415),
        (b"x" * 70000, "application/json", 413),
        (b"[[[[[[[[[[[[]]]]]]]]]]]]", "application/json", 422),
        (b"\xff\xfe", "application/json", 400),
    ],
)
def test_malformed_bodies(client, dev, clock, raw, content_type, status) -> None:
    headers = {**bearer(dev, clock), "Content-Type": content_type}
    assert client.post("/v1/access-requests", headers=headers, content=raw).status_code == status


@pytest.mark.parametrize(
    "override",
    [
        {"extra": 1},
        {"hostname": "127.0.0.1"},
        {"hostname": "DB.prod.even.test"},
        {"login": "a,b"},
        {"reason": "   "},
        {"reason": "x" * 1025},
        {"reason": "INC-1 \x00 nul"},
        {"public_key": 'command="x" ssh-ed25519 AAAA'},
        {"lifetime_minutes": "30"},
        {"username": "deploy", "login": "alice"},
        {"hostname": "db-1.prod.even.test\n"},
        {"hostname": "a.0x7f"},  # an IP literal (0x7f), as odd reads it too
        {"hostname": "localhost"},  # every machine's name: login@localhost opens them all
        {"hostname": "app.localhost"},
    ],
)
def test_invalid_fields_are_422_and_issue_nothing(
    client, components, dev, clock, user_key, override
) -> None:
    r = client.post(
        "/v1/access-requests", headers=bearer(dev, clock), json=grant_body(user_key, **override)
    )
    assert r.status_code == 422, r.text
    assert "access.granted" not in [rec["type"] for rec in records(components)]


def test_ca_key_itself_cannot_be_certified(client, components, dev, clock) -> None:
    ca_line = components.ca_registry.configured_active.public_line
    r = client.post("/v1/access-requests", headers=bearer(dev, clock), json=grant_body(ca_line))
    assert r.status_code == 422


def test_reads_are_scoped(client, dev, clock, user_key) -> None:
    r = client.post("/v1/access-requests", headers=bearer(dev, clock), json=grant_body(user_key))
    request_id = r.json()["id"]
    mine = client.get("/v1/access-requests", headers=bearer(dev, clock)).json()
    assert [item["id"] for item in mine["items"]] == [request_id]
    assert (
        client.get(f"/v1/access-requests/{request_id}", headers=bearer(dev, clock)).status_code
        == 200
    )
    other = bearer(dev, clock, "mallory")
    assert client.get(f"/v1/access-requests/{request_id}", headers=other).status_code == 404
    assert client.get("/v1/access-requests", headers=other).json()["items"] == []
    auditor = bearer(dev, clock, "audrey", ["audit"])
    assert client.get(f"/v1/access-requests/{request_id}", headers=auditor).status_code == 200


def test_whoami_ca_health(client, dev, clock, components) -> None:
    me = client.get("/v1/whoami", headers=bearer(dev, clock, "alice", ["audit"])).json()
    assert me["username"] == "alice" and me["roles"] == ["auditor"]
    assert [a["rule"] for a in me["allowed"]] == ["sre-prod", "lab"]
    assert client.get("/v1/ca").text == components.ca_registry.published_lines()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json()["status"] == "ready"
    assert client.get("/docs").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/dev-issuer/jwks").json()["keys"][0]["kid"]


def test_readyz_fails_without_schema(tmp_path, clock) -> None:
    from even.config import load_settings
    from tests.conftest import make_even_dir

    settings = load_settings(make_even_dir(tmp_path / "fresh"))
    with TestClient(create_app(settings, clock=clock)) as client:
        assert client.get("/readyz").status_code == 503


def test_idempotent_retries_give_one_grant_and_one_record(
    client, components, dev, clock, user_key
) -> None:
    headers = {**bearer(dev, clock), "Idempotency-Key": "retry-1"}
    first = client.post("/v1/access-requests", headers=headers, json=grant_body(user_key))
    again = client.post("/v1/access-requests", headers=headers, json=grant_body(user_key))
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    granted = [r for r in records(components) if r["type"] == "access.granted"]
    assert len(granted) == 1
    other = client.post(
        "/v1/access-requests", headers=headers, json=grant_body(user_key, lifetime_minutes=5)
    )
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    # The key is per requester: bob's identical key is his own.
    assert (
        client.post(
            "/v1/access-requests",
            json=grant_body(user_key),
            headers={**bearer(dev, clock, "mallory"), "Idempotency-Key": "retry-1"},
        ).status_code
        == 403
    )


def test_idempotent_denial_replays_the_same_answer(
    client, components, dev, clock, user_key
) -> None:
    headers = {**bearer(dev, clock), "Idempotency-Key": "deny-1"}
    body = grant_body(user_key, reason="too short")
    first = client.post("/v1/access-requests", headers=headers, json=body)
    again = client.post("/v1/access-requests", headers=headers, json=body)
    assert first.status_code == again.status_code == 422
    assert first.json()["code"] == again.json()["code"] == "reason_rejected"
    assert again.json()["rule"] == "sre-prod"
    assert [r["type"] for r in records(components)].count("access.denied") == 1
