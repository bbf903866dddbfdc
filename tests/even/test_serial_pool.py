"""Serials reserved in blocks (even.store.serials, even.service.serial_pool): certificates are
signed before the write lock, yet every serial is unique, assigned by the database, has its
row and its audit record, and is signed by the CA active when the grant commits."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_ssh_public_identity,
)
from sqlalchemy import text

from audit import store as audit_store
from audit.chain import record_hash
from even.service.serial_pool import SerialPool
from even.sshkeys import parse_public_key
from even.store.db import transaction
from even.store.serials import reserve_serials
from tests.even.conftest import auth

BODY = {"hostname": "db-1.prod.even.test", "reason": "debug INC-123 latency"}


def _grant(client, components, clock, user_key) -> dict:
    body = {**BODY, "public_key": user_key}
    answer = client.post("/v1/access-requests", headers=auth(components, clock), json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def _certificate(line: str):
    return load_ssh_public_identity(line.encode())


def _ca_fingerprint(cert) -> str:
    line = cert.signature_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    return parse_public_key(line.decode()).fingerprint


def test_blocks_never_overlap_each_other_or_single_draws(components) -> None:
    engine = components.engine
    seen: list[int] = []
    for _ in range(3):
        with transaction(engine) as conn:
            seen += reserve_serials(conn, 5)
            # One drawn the one-by-one way, as the grant path does without reserved serials.
            conn.execute(
                text(
                    "INSERT INTO certificate_serials (request_id, purpose, valid_before) "
                    "VALUES ('r', 'target', '2026-01-01T00:00:00Z')"
                )
            )
            seen.append(conn.execute(text("SELECT max(serial) FROM certificate_serials")).scalar())
    assert len(seen) == len(set(seen)) == 18
    assert all(1 <= s < 2**53 for s in seen)


def test_a_rolled_back_reservation_is_handed_out_again(components) -> None:
    # Why the pool takes a block only after its transaction committed.
    engine = components.engine
    with pytest.raises(RuntimeError), transaction(engine) as conn:
        lost = reserve_serials(conn, 3)
        raise RuntimeError("roll back")
    with transaction(engine) as conn:
        assert reserve_serials(conn, 3) == lost


def test_grants_use_reserved_serials_each_with_its_row_and_record(
    client, components, clock, user_key
) -> None:
    answers = [_grant(client, components, clock, user_key) for _ in range(6)]
    serials = [a["serial"] for a in answers]
    assert len(set(serials)) == 6
    # The first grant found no reserved serial and drew one under the lock, after the block
    # its own request had reserved; the next ones were signed earlier with that block's serials.
    assert all(s < serials[0] for s in serials[1:]), serials
    with components.engine.connect() as conn:
        rows = {
            r.serial: r
            for r in conn.execute(text("SELECT * FROM certificate_serials WHERE request_id != ''"))
        }
        records = list(audit_store.iter_records(conn))
    granted = {r["details"]["serial"]: r for r in records if r["type"] == "access.granted"}
    for answer in answers:
        cert = _certificate(answer["certificate"])
        assert cert.serial == answer["serial"]
        assert cert.key_id == f"even:{answer['id']}:alice".encode()
        row = rows[answer["serial"]]
        assert (row.request_id, row.purpose) == (answer["id"], "target")
        assert row.ca_fingerprint == _ca_fingerprint(cert)
        record = granted[answer["serial"]]
        assert record["request_id"] == answer["id"]
        assert record["details"]["ca_fingerprint"] == row.ca_fingerprint
        # The receipt, signed after the commit, still names the committed record.
        assert answer["receipt"]["seq"] == record["seq"]
        assert answer["receipt"]["hash"] == record["hash"] == record_hash(record)


def test_a_ca_rotated_after_signing_is_not_used_the_grant_signs_again(
    client, components, clock, user_key
) -> None:
    first = _grant(client, components, clock, user_key)  # fills the pool under the old CA
    old = _ca_fingerprint(_certificate(first["certificate"]))
    registry = components.ca_registry
    registry.rotate(actor="test")
    new = registry.activate(None, actor="test").fingerprint
    assert new != old
    # The pool still holds serials with the old CA: the transaction sees the new active CA,
    # drops the early signature and signs under the lock.
    answer = _grant(client, components, clock, user_key)
    cert = _certificate(answer["certificate"])
    assert _ca_fingerprint(cert) == new
    with components.engine.connect() as conn:
        row = conn.execute(
            text("SELECT ca_fingerprint FROM certificate_serials WHERE serial = :s"),
            {"s": answer["serial"]},
        ).one()
    assert row.ca_fingerprint == new


def test_a_key_the_ca_gained_after_early_signing_is_still_refused(
    client, components, clock, user_key
) -> None:
    _grant(client, components, clock, user_key)  # fills the pool under the current CA
    staged = components.ca_registry.rotate(actor="test")  # published, not yet signing
    body = {**BODY, "public_key": staged.public_line}
    answer = client.post("/v1/access-requests", headers=auth(components, clock), json=body)
    assert answer.status_code == 422, answer.text
    assert "CA's own key" in answer.json()["detail"]
    with components.engine.connect() as conn:
        issued = conn.execute(
            text("SELECT count(*) FROM access_requests WHERE fingerprint = :f"),
            {"f": parse_public_key(staged.public_line).fingerprint},
        ).scalar_one()
    assert issued == 0


class _DoneWriter:
    """A writer whose work has always finished by the time `submit` returns."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def submit(self, work):
        future: Future = Future()
        with transaction(self.engine) as conn:
            future.set_result(work(conn))
        return future


def test_a_refill_that_finished_at_once_does_not_deadlock(components) -> None:
    pool = SerialPool(
        _DoneWriter(components.engine),  # type: ignore[arg-type]
        components.ca_registry.signing_ca,
        block=8,
        low_water=4,
    )
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(pool.take(1)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "take() deadlocked on its own refill"
    assert result == [None]  # the pool was empty; the refill has landed since
    taken = pool.take(2)
    assert taken is not None and len({s for s, _ in taken}) == 2
