"""The incrementally kept KRL equals a full scan of every revoked serial, byte for byte, through
revocations, expiries, late and serial-less revocations and replica restarts; and an unchanged
KRL is answered without building anything."""

from __future__ import annotations

import random
import shutil
import subprocess
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from even.clock import FixedClock, rfc3339
from even.krl import build_krl, ca_key_blob, parse_krl
from even.service.krl_publisher import KRL_GRACE, KrlPublisher, record_revocation
from even.store import ca_keys
from even.store.db import make_engine, read_only, transaction
from even.store.schema import upgrade
from even.store.tables import AccessRequestRow, CaKeyRow, CertificateSerialRow

_requests = AccessRequestRow.__table__  # type: ignore[attr-defined]
_serials = CertificateSerialRow.__table__  # type: ignore[attr-defined]
_ca = CaKeyRow.__table__  # type: ignore[attr-defined]
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _parse(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def full_scan(engine: Engine, now: datetime) -> bytes:
    """The reference: every revoked serial read and judged one by one (the former code)."""
    with read_only(engine) as conn:
        rows = conn.execute(
            select(
                _serials.c.serial,
                _serials.c.ca_fingerprint,
                _serials.c.valid_before,
                _requests.c.revoked_at,
            )
            .join(_requests, _requests.c.id == _serials.c.request_id)
            .where(_requests.c.status == "REVOKED")
        ).all()
        lines = {k.fingerprint: k.public_line for k in ca_keys.all_keys(conn)}
    groups: dict[bytes, list[int]] = defaultdict(list)
    change = datetime.fromtimestamp(0, UTC)
    for serial, fingerprint, valid_before, revoked_at in rows:
        ages_out = _parse(valid_before) + KRL_GRACE
        change = max(change, _parse(revoked_at))
        if ages_out <= now:
            change = max(change, ages_out)
            continue
        if fingerprint in lines:
            groups[ca_key_blob(lines[fingerprint])].append(int(serial))
    generation = int(change.timestamp())
    return build_krl(groups.items(), generation=generation, generated_at=change, comment="even")


class Db:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.count = 0
        self.cas: dict[str, ed25519.Ed25519PrivateKey] = {}

    def add_ca(self, fingerprint: str) -> None:
        self.cas[fingerprint] = ed25519.Ed25519PrivateKey.generate()
        line = (
            self.cas[fingerprint]
            .public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )
        with transaction(self.engine) as conn:
            conn.execute(
                insert(_ca).values(
                    fingerprint=fingerprint, public_line=line, key_file="k", state="active",
                    created=rfc3339(T0),
                )
            )  # fmt: skip

    def grant(self, granted: datetime, minutes: int, *, ca: str = "ca1", serials: int = 1) -> str:
        self.count += 1
        request_id = f"req-{self.count:06d}"
        valid_before = rfc3339(granted + timedelta(minutes=minutes))
        with transaction(self.engine) as conn:
            conn.execute(
                insert(_requests).values(
                    id=request_id, status="GRANTED", username="u", login="u", hostname="h",
                    mode="certificate" if serials else "push", reason="r",
                    lifetime_minutes=minutes, created=rfc3339(granted),
                    last_modified=rfc3339(granted), valid_before=valid_before,
                )
            )  # fmt: skip
            for _ in range(serials):
                conn.execute(
                    insert(_serials).values(
                        request_id=request_id, purpose="target", valid_before=valid_before,
                        ca_fingerprint=ca,
                    )
                )  # fmt: skip
        return request_id

    def revoke(self, request_id: str, at: datetime) -> None:
        with transaction(self.engine) as conn:
            number = record_revocation(conn)
            conn.execute(
                update(_requests)
                .where(_requests.c.id == request_id)
                .values(status="REVOKED", revoked_at=rfc3339(at), revocation_seq=number)
            )


@pytest.fixture
def db(tmp_path: Path) -> Db:
    engine = make_engine(f"sqlite:///{tmp_path / 'krl.db'}")
    upgrade(engine)
    found = Db(engine)
    found.add_ca("ca1")
    found.add_ca("ca2")
    return found


def test_random_history_matches_the_full_scan(db: Db) -> None:
    rng = random.Random(14)
    clock = FixedClock(T0)
    publisher = KrlPublisher(engine=db.engine, clock=clock)
    granted: list[str] = []
    for step in range(400):
        action = rng.random()
        now = clock.now()
        if action < 0.35:
            granted.append(
                db.grant(now, rng.choice([1, 5, 30, 60]), ca=rng.choice(["ca1", "ca2", "gone"]),
                         serials=rng.choice([0, 1, 1, 2]))
            )  # fmt: skip
        elif action < 0.7 and granted:
            request_id = granted.pop(rng.randrange(len(granted)))
            # Sometimes recorded a little in the past, as a replica with a slower clock would.
            db.revoke(request_id, now - timedelta(seconds=rng.choice([0, 0, 0, 30, 200])))
        else:
            clock.moment += timedelta(seconds=rng.choice([1, 30, 120, 600, 1800]))
        expected = full_scan(db.engine, clock.now())
        assert publisher.current().body == expected, step
        if step % 50 == 0:  # a replica starting now agrees
            fresh = KrlPublisher(engine=db.engine, clock=clock)
            assert fresh.current().body == expected


def test_an_unchanged_krl_is_not_rebuilt(db: Db) -> None:
    clock = FixedClock(T0)
    publisher = KrlPublisher(engine=db.engine, clock=clock)
    request_id = db.grant(T0, 30)
    db.revoke(request_id, T0)
    first = publisher.current()
    assert publisher.builds == 1
    for _ in range(20):
        clock.moment += timedelta(seconds=30)
        assert publisher.current() is first
    assert publisher.builds == 1
    # A new revocation is noticed at the next call...
    other = db.grant(clock.now(), 30)
    db.revoke(other, clock.now())
    second = publisher.current()
    assert publisher.builds == 2 and second.generation > first.generation
    assert parse_krl(second.body).serial_count() == 2
    # ...and so is a serial aging out (valid_before + 10 min), without any new revocation.
    clock.moment = T0 + timedelta(minutes=40, seconds=1)
    third = publisher.current()
    assert parse_krl(third.body).serial_count() == 1
    assert third.generation == int((T0 + timedelta(minutes=40)).timestamp())
    assert publisher.current() is third and publisher.builds == 3


def test_fresh_answers_without_io_only_while_nothing_can_have_changed(db: Db) -> None:
    clock = FixedClock(T0)
    publisher = KrlPublisher(engine=db.engine, clock=clock)
    assert publisher.fresh() is None  # nothing read yet
    request_id = db.grant(T0, 30)
    db.revoke(request_id, T0)
    document = publisher.current()
    assert publisher.fresh() is document
    publisher.invalidate()  # what this process's revoke does after its commit
    assert publisher.fresh() is None
    assert publisher.current() is document and publisher.fresh() is document
    clock.moment = T0 + timedelta(minutes=40, seconds=1)  # its serial aged out meanwhile
    assert publisher.fresh() is None
    assert parse_krl(publisher.current().body).serial_count() == 0


def _keygen_q(tmp_path: Path, krl: bytes, ca: ed25519.Ed25519PrivateKey, serial: int) -> bool:
    """`ssh-keygen -Q`: is a certificate with `serial` from `ca` revoked by `krl`?"""
    cert = (
        serialization.ssh.SSHCertificateBuilder()
        .public_key(ed25519.Ed25519PrivateKey.generate().public_key())
        .serial(serial)
        .type(serialization.ssh.SSHCertificateType.USER)
        .key_id(b"t")
        .valid_principals([b"u"])
        .valid_after(0)
        .valid_before(2**40)
        .sign(ca)
    )
    (tmp_path / "krl").write_bytes(krl)
    (tmp_path / "c-cert.pub").write_bytes(cert.public_bytes())
    done = subprocess.run(
        ["ssh-keygen", "-Q", "-f", str(tmp_path / "krl"), str(tmp_path / "c-cert.pub")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return "REVOKED" in done.stdout + done.stderr


def test_ssh_keygen_agrees_with_the_incremental_krl(db: Db, tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    clock = FixedClock(T0)
    publisher = KrlPublisher(engine=db.engine, clock=clock)
    ids = [db.grant(T0, minutes, ca=ca) for minutes in (5, 30, 60) for ca in ("ca1", "ca2")]
    for request_id in ids:
        db.revoke(request_id, T0)
    publisher.current()
    kept = db.grant(T0, 60)  # granted, never revoked
    clock.moment = T0 + timedelta(minutes=20)  # the 5-minute ones aged out
    body = publisher.current().body
    with read_only(db.engine) as conn:
        rows = conn.execute(
            select(_serials.c.serial, _serials.c.ca_fingerprint, _serials.c.request_id)
        ).all()
    minutes = {request_id: m for request_id, m in zip(ids, [5, 5, 30, 30, 60, 60], strict=True)}
    for serial, ca, request_id in rows:
        expected = request_id != kept and minutes[request_id] > 5
        assert _keygen_q(tmp_path, body, db.cas[ca], int(serial)) is expected, serial
    # A serial from another CA is not revoked by this KRL.
    assert _keygen_q(tmp_path, body, ed25519.Ed25519PrivateKey.generate(), 3) is False
