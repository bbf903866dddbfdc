"""The access-request repository: the SQL of the grant and read use cases on `access_requests`.

Writes go through a unit of work (`even.store.unit_of_work.Transaction`), so a row is always
written in the same transaction as the audit record that tells its story. `row(**values)` is
the one place that spells a full row (absent columns NULL), so one compiled INSERT fits
every caller and the field list lives in the table definition alone. (Revocation, the
background jobs and the classic listing still query the table themselves: next to move here.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, RowMapping

from even.store.tables import AccessRequestRow, CertificateSerialRow
from even.store.unit_of_work import Transaction

_requests = AccessRequestRow.__table__  # type: ignore[attr-defined]
_serials = CertificateSerialRow.__table__  # type: ignore[attr-defined]
# Built once: SQLAlchemy then reuses the compiled statement (building per call is costly).
INSERT_REQUEST = _requests.insert()
INSERT_SERIAL = _serials.insert()
# status_reason of a FAILED push whose clean-up left lines on a host: the reconciler keeps
# removing them (and the request stays revocable) until every host is clean.
CLEANUP_INCOMPLETE = "cleanup_incomplete"
COLUMNS = tuple(column.name for column in _requests.columns)
_KNOWN = frozenset(COLUMNS)


def row(**values: Any) -> dict[str, Any]:
    """A full access_requests row from `values` (absent columns NULL)."""
    unknown = values.keys() - _KNOWN
    if unknown:
        raise TypeError(f"not access_requests columns: {sorted(unknown)}")
    full = dict.fromkeys(COLUMNS)  # every column, in table order, NULL
    full.update(values)  # known keys only: their places stay the table's
    return full


def insert(tx: Transaction, values: dict[str, Any]) -> None:
    """Add a request row (deferred to the commit in a grouped transaction)."""
    tx.insert(INSERT_REQUEST, values)


def insert_serial(tx: Transaction, values: dict[str, Any]) -> None:
    """Record a serial reserved ahead (its row exists from the reservation otherwise)."""
    tx.insert(INSERT_SERIAL, values)


def draw_serial(
    tx: Transaction, request_id: str, purpose: str, valid_before: str, ca_fingerprint: str
) -> int | None:
    """A new serial from the database for `request_id` (None if the id space is spent)."""
    result = tx.execute(
        INSERT_SERIAL,
        {
            "request_id": request_id,
            "purpose": purpose,
            "valid_before": valid_before,
            "ca_fingerprint": ca_fingerprint,
        },
    )
    serial = result.inserted_primary_key[0] if result.inserted_primary_key else None
    if not isinstance(serial, int) or not 1 <= serial < 2**53:
        return None
    return serial


def find(conn: Connection | Transaction, request_id: str) -> RowMapping | None:
    """The request's row, or None."""
    query = select(_requests).where(_requests.c.id == request_id)
    found = conn.execute(query).first()
    return None if found is None else found._mapping


def set_status(tx: Transaction, request_id: str, **values: Any) -> None:
    """Change a request's status (and the columns that go with it)."""
    tx.execute(update(_requests).where(_requests.c.id == request_id).values(**values))


def search(
    conn: Connection,
    *,
    username: str | None,
    status: str | None = None,
    hostname: str | None = None,
    login: str | None = None,
    limit: int,
    offset: int,
) -> list[RowMapping]:
    """Newest first; every given filter must match."""
    query = select(_requests)
    for column, value in (
        ("username", username),
        ("status", status),
        ("hostname", hostname),
        ("login", login),
    ):
        if value is not None:
            query = query.where(_requests.c[column] == value)
    # Newest first. `created` has whole seconds; request ids are UUIDv7 (ordered by their
    # millisecond), so within one second the later request still comes first.
    query = query.order_by(_requests.c.created.desc(), _requests.c.id.desc())
    return [r._mapping for r in conn.execute(query.limit(limit).offset(offset)).all()]


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(_requests)).scalar_one())


def needs_cleanup(found: RowMapping | Any) -> bool:
    """A failed push that may have left a working line on some host."""
    return bool(found.status == "FAILED" and found.status_reason == CLEANUP_INCOMPLETE)


def unclean_failures(conn: Connection, *, limit: int) -> list[str]:
    """Ids of failed pushes whose clean-up is incomplete, oldest first."""
    query = (
        select(_requests.c.id)
        .where(_requests.c.status == "FAILED")
        .where(_requests.c.status_reason == CLEANUP_INCOMPLETE)
        .order_by(_requests.c.created)
        .limit(limit)
    )
    return [str(found_id) for (found_id,) in conn.execute(query).all()]
