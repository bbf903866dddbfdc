"""SQLModel tables for access requests and certificate serials (not API schemas).

`certificate_serials` hands out serials: an autoincrementing key that SQLite never reuses
(AUTOINCREMENT) and PostgreSQL draws from a sequence, so every certificate Even ever signs has
its own serial, within 1 ≤ serial < 2^53.
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


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
    serial: int | None = Field(default=None, index=True)
    key_id: str | None = Field(default=None, max_length=128)
    principals: str = "[]"  # JSON array
    valid_after: str | None = None
    valid_before: str | None = None
    certificate: str | None = None
    bastion_serial: int | None = None
    bastion_certificate: str | None = None
    status_reason: str | None = None
    created: str
    last_modified: str


class CertificateSerialRow(SQLModel, table=True):
    __tablename__ = "certificate_serials"
    __table_args__ = {"sqlite_autoincrement": True}

    serial: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(index=True, max_length=36)
    purpose: str = Field(max_length=16)  # "target" or "bastion"
    valid_before: str


class SchemaVersionRow(SQLModel, table=True):
    __tablename__ = "schema_version"

    id: int = Field(default=1, primary_key=True)
    version: int
