"""Issue 5 on the server: revoke, the KRL (with ETag and a growing generation), CA rotation."""

import subprocess
from datetime import timedelta

from audit import store as audit_store
from even.krl import ca_key_blob, parse_krl
from tests.even.conftest import auth


def grant(client, components, clock, user_key, **extra):
    body = {
        "hostname": "db-1.prod.even.test",
        "reason": "debug INC-123 x",
        "public_key": user_key,
        **extra,
    }
    r = client.post("/v1/access-requests", headers=auth(components, clock), json=body)
    assert r.status_code == 201, r.text
    return r.json()


def krl(client):
    r = client.get("/v1/krl")
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    return parse_krl(r.content), r.headers["etag"]


def test_requester_revokes_and_the_krl_lists_the_serial(
    client, components, clock, user_key
) -> None:
    answer = grant(client, components, clock, user_key)
    kept = grant(client, components, clock, user_key)
    before, etag = krl(client)
    assert before.serial_count() == 0
    r = client.post(
        f"/v1/access-requests/{answer['id']}/revoke",
        headers=auth(components, clock),
        json={"reason": "done early"},
    )
    assert r.status_code == 200 and r.json()["status"] == "REVOKED"
    after, new_etag = krl(client)
    blob = ca_key_blob(components.ca_registry.configured_active.public_line)
    assert after.is_revoked(blob, answer["serial"]) and not after.is_revoked(blob, kept["serial"])
    assert new_etag != etag and after.generation > before.generation
    revoked = [r for r in _records(components) if r["type"] == "access.revoked"]
    assert (
        revoked[0]["details"]["by"] == "alice"
        and revoked[0]["details"]["serial"] == answer["serial"]
    )
    assert client.get("/v1/krl", headers={"If-None-Match": new_etag}).status_code == 304
    # Revoking again is a no-op, not a second record.
    client.post(f"/v1/access-requests/{answer['id']}/revoke", headers=auth(components, clock))
    assert len([r for r in _records(components) if r["type"] == "access.revoked"]) == 1


def test_serial_leaves_the_krl_ten_minutes_after_expiry(
    client, components, clock, user_key
) -> None:
    answer = grant(client, components, clock, user_key, lifetime_minutes=5)
    client.post(f"/v1/access-requests/{answer['id']}/revoke", headers=auth(components, clock))
    listed, _ = krl(client)
    assert listed.serial_count() == 1
    clock.moment += timedelta(minutes=5 + 9)
    assert krl(client)[0].serial_count() == 1
    clock.moment += timedelta(minutes=2)
    pruned, _ = krl(client)
    assert pruned.serial_count() == 0 and pruned.generation > listed.generation


def test_who_may_revoke(client, components, clock, user_key) -> None:
    answer = grant(client, components, clock, user_key)
    path = f"/v1/access-requests/{answer['id']}/revoke"
    assert client.post(path, headers=auth(components, clock, "mallory")).status_code == 404
    r = client.post(path, headers=auth(components, clock, "audrey", ["audit"]))
    assert (r.status_code, r.json()["code"]) == (403, "revoke_not_allowed")
    assert (
        client.post(path, headers=auth(components, clock, "sec", ["security"])).status_code == 200
    )
    assert client.post(path).status_code == 401


def test_denied_request_is_not_revocable(client, components, clock, user_key) -> None:
    r = client.post(
        "/v1/access-requests",
        headers=auth(components, clock),
        json={"hostname": "db-1.prod.even.test", "reason": "too short", "public_key": user_key},
    )
    denied = client.get("/v1/access-requests", headers=auth(components, clock)).json()["items"][0]
    assert r.status_code == 422 and denied["status"] == "DENIED"
    r = client.post(f"/v1/access-requests/{denied['id']}/revoke", headers=auth(components, clock))
    assert (r.status_code, r.json()["code"]) == (409, "not_revocable")


def test_ca_endpoint_etag(client) -> None:
    first = client.get("/v1/ca")
    assert first.text.startswith("ssh-ed25519 ")
    assert client.get("/v1/ca", headers={"If-None-Match": first.headers["etag"]}).status_code == 304


def test_ca_rotation(client, components, clock, user_key) -> None:
    registry = components.ca_registry
    old = grant(client, components, clock, user_key)
    added = registry.rotate(actor="ops")
    published = client.get("/v1/ca").text.splitlines()
    assert len(published) == 2 and added.public_line in published
    assert _ca_of(grant(client, components, clock, user_key)) != added.fingerprint  # not yet
    registry.activate(None, actor="ops")
    new = grant(client, components, clock, user_key)
    assert _ca_of(new) == added.fingerprint
    # The old key stays published until the last certificate it signed expires.
    assert len(client.get("/v1/ca").text.splitlines()) == 2
    clock.moment += timedelta(minutes=61)
    assert client.get("/v1/ca").text.splitlines() == [added.public_line]
    rotated = [r["details"]["action"] for r in _records(components) if r["type"] == "ca.rotated"]
    assert rotated == ["added", "retired", "activated"]
    assert old["serial"] < new["serial"]


def _ca_of(answer) -> str:
    return answer_ca(answer["certificate"])


def answer_ca(certificate: str) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix="-cert.pub") as handle:
        handle.write(certificate + "\n")
        handle.flush()
        shown = subprocess.run(
            ["ssh-keygen", "-L", "-f", handle.name], capture_output=True, text=True, check=True
        ).stdout
    return shown.split("Signing CA: ")[1].split()[1]


def _records(components):
    with components.engine.connect() as conn:
        return list(audit_store.iter_records(conn))
