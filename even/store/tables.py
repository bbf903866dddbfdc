"""SQLModel tables for access requests and certificate serials (not API schemas).

`certificate_serials` hands out serials: an autoincrementing key that SQLite never reuses
(AUTOINCREMENT) and PostgreSQL draws from a sequence, so every certificate Even ever signs has
its own serial, within 1 ≤ serial < 2^53.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer
from sqlmodel import Field, SQLModel

# 64-bit on PostgreSQL; plain INTEGER on SQLite, whose INTEGER PRIMARY KEY is the 64-bit rowid
# (a BIGINT primary key there would lose AUTOINCREMENT).
Serial = BigInteger().with_variant(Integer(), "sqlite")


class AccessRequestRow(SQLModel, table=True):
    __tablename__ = "access_requests"

    id: str = Field(primary_key=True, max_length=36)
    status: str = Field(index=True, max_length=16)
    username: str = Field(index=True, max_length=64)
    login: str = Field(max_length=64)
    hostname: str = Field(index=True, max_length=253)
    mode: str = Field(max_length=16)
    reason: str
    rule: str | None = Field(default=None, max_length=64)
    bastion: str | None = Field(default=None, max_length=64)
    lifetime_minutes: int
    fingerprint: str | None = Field(default=None, max_length=64)
    serial: int | None = Field(default=None, index=True, sa_type=Serial)
    key_id: str | None = Field(default=None, max_length=128)
    principals: str = "[]"  # JSON array
    valid_after: str | None = None
    valid_before: str | None = None
    certificate: str | None = None
    bastion_serial: int | None = Field(default=None, sa_type=Serial)
    bastion_certificate: str | None = None
    status_reason: str | None = None
    revoked_at: str | None = None
    # The revocation's number (krl_state.changes after it): GET /v1/krl reads those after N.
    revocation_seq: int | None = Field(default=None, index=True, sa_type=BigInteger)
    revoked_by: str | None = Field(default=None, max_length=64)
    created: str
    last_modified: str
    last_modified_by: str | None = Field(default=None, max_length=64)


class CertificateSerialRow(SQLModel, table=True):
    __tablename__ = "certificate_serials"
    __table_args__ = {"sqlite_autoincrement": True}

    serial: int | None = Field(default=None, primary_key=True, sa_type=Serial)
    request_id: str = Field(index=True, max_length=36)
    purpose: str = Field(max_length=16)  # "target" or "bastion"
    valid_before: str = Field(index=True)  # the KRL keeps only those not yet expired
    ca_fingerprint: str | None = Field(default=None, max_length=64)


class KrlStateRow(SQLModel, table=True):
    """One row: a counter every revocation bumps in its own transaction, so `GET /v1/krl` can
    tell "nothing revoked since" with one primary-key read, however many grants exist."""

    __tablename__ = "krl_state"

    id: int = Field(default=1, primary_key=True)
    changes: int = Field(default=0, sa_type=BigInteger)


class IdempotencyKeyRow(SQLModel, table=True):
    """One `Idempotency-Key` per requester: the request's body hash and, once done, its answer.

    The answer is written in the same transaction as the grant it describes, so a row still
    `in_flight` after that transaction's time limit belongs to a grant that never committed.
    """

    __tablename__ = "idempotency_keys"

    username: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=255)
    body_sha256: str = Field(max_length=64)
    state: str = Field(max_length=16)  # in_flight | done
    answer: str | None = None  # JSON: {"view": …} or {"error": {code, message, status}}
    created: str


class CaKeyRow(SQLModel, table=True):
    """A user-CA key's life (SPEC §6): next → active (exactly one) → retired.

    The private key stays in its file (`key_file`, relative to the config directory); the row
    says what state it is in and until when a retired key must stay published.
    """

    __tablename__ = "ca_keys"

    fingerprint: str = Field(primary_key=True, max_length=64)
    public_line: str
    key_file: str = Field(max_length=255)
    state: str = Field(index=True, max_length=16)  # next | active | retired
    created: str
    activated: str | None = None
    retired: str | None = None
    # The latest valid_before of any certificate it signed: published until then.
    last_valid_before: str | None = None


class UserKeyRow(SQLModel, table=True):
    """Public keys a user registered for push mode and classic grants (`PUT /v1/users/me/keys`)."""

    __tablename__ = "user_keys"

    username: str = Field(primary_key=True, max_length=64)
    fingerprint: str = Field(primary_key=True, max_length=64)
    public_key: str
    created: str
