"""Issue 3 on the server: checkpoints, the audited streamed export, CSV, events, receipts."""

import csv
import io
from datetime import timedelta

from audit.checkpoint import key_ring, parse_receipt
from audit.verify import Valid, verify_jsonl
from tests.even.conftest import auth


def grant(client, components, clock, user_key, reason="debug INC-123 latency"):
    r = client.post(
        "/v1/access-requests",
        headers=auth(components, clock),
        json={"hostname": "db-1.prod.even.test", "reason": reason, "public_key": user_key},
    )
    assert r.status_code == 201, r.text
    return r.json()


def keys(components):
    return key_ring([components.signer.public_key])


def test_export_is_audited_checkpointed_and_verifies(client, components, clock, user_key) -> None:
    answers = [grant(client, components, clock, user_key) for _ in range(3)]
    r = client.get("/v1/audit/export", headers=auth(components, clock, "audrey", ["audit"]))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = r.content.split(b"\n")
    assert lines[-1] == b""
    verdict = verify_jsonl(
        [r.content], keys(components), receipts=[parse_receipt(a["receipt"]) for a in answers]
    )
    assert isinstance(verdict, Valid), verdict
    assert verdict.records == 1 + 3 * 2 + 1  # policy.loaded, 3×(requested, granted), exported
    assert b'"type":"audit.exported"' in lines[-3] and b'"type":"checkpoint"' in lines[-2]
    checkpoint = client.get("/v1/audit/checkpoint").json()
    assert (checkpoint["size"], checkpoint["head"]) == (verdict.records, verdict.head)


def test_export_and_events_need_the_auditor_role(client, components, clock) -> None:
    for path in ("/v1/audit/export", "/v1/audit/events"):
        r = client.get(path, headers=auth(components, clock, "alice"))
        assert (r.status_code, r.json()["code"]) == (403, "auditor_role_required")
        assert client.get(path).status_code == 401


def test_checkpoint_404_before_the_first(client) -> None:
    assert client.get("/v1/audit/checkpoint").status_code == 404
    assert "BEGIN PUBLIC KEY" in client.get("/v1/audit/public-key").text


def test_checkpoints_every_n_records_or_t_seconds(components, clock, user_key, client) -> None:
    audit_log = components.audit_log
    first = audit_log.checkpoint()
    assert first is not None and first["size"] == 1  # the first one is always due
    grant(client, components, clock, user_key)
    assert audit_log.checkpoint()["size"] == 1  # 2 more records: neither 1000 nor 60 s
    clock.moment += timedelta(seconds=61)
    assert audit_log.checkpoint()["size"] == 3


def test_csv_export_escapes_and_filters(client, components, clock, user_key) -> None:
    grant(client, components, clock, user_key, reason="=HYPERLINK(x) INC-1 \x1b[31m")
    r = client.get(
        "/v1/audit/export",
        params={"format": "csv"},
        headers=auth(components, clock, "audrey", ["audit"]),
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    granted = next(row for row in rows if row["type"] == "access.granted")
    assert granted["reason"].startswith("'=HYPERLINK") and "\\x1b[31m" in granted["reason"]
    later = client.get(
        "/v1/audit/export",
        params={"format": "csv", "since": "2999-01-01T00:00:00Z"},
        headers=auth(components, clock, "audrey", ["audit"]),
    )
    assert list(csv.DictReader(io.StringIO(later.text))) == []


def test_events_filters_and_paging(client, components, clock, user_key) -> None:
    grant(client, components, clock, user_key)
    grant(client, components, clock, user_key)
    headers = auth(components, clock, "audrey", ["audit"])
    page = client.get(
        "/v1/audit/events", params={"type": "access.granted", "limit": 1}, headers=headers
    ).json()
    assert [r["type"] for r in page["items"]] == ["access.granted"] and page["next"]
    rest = client.get(
        "/v1/audit/events",
        params={"type": "access.granted", "after_seq": page["next"]},
        headers=headers,
    ).json()
    assert len(rest["items"]) == 1 and rest["next"] is None
    assert (
        client.get("/v1/audit/events", params={"since": "yesterday"}, headers=headers).status_code
        == 422
    )
