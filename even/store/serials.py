"""Certificate serials reserved in blocks, ahead of need (SPEC §4: unique, assigned by the
database, 1 ≤ serial < 2^53).

`certificate_serials` hands out one serial per INSERT, inside the write transaction that
records the grant, so the certificate can only be signed while that transaction holds the
single audit writer lock. A process that reserves a block of serials in one short piece of
such a transaction can sign later certificates before it takes the lock, and inserts each
serial's row explicitly with the grant. Both backends move the same counter that the
one-by-one INSERT uses, so the two ways never hand out the same serial; serials of a block
that are never used are gaps, never reuses.

The caller may use a block only after the transaction that reserved it has committed: on
SQLite the counter moves inside that transaction and a rollback would hand the block out again.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from even.ca import MAX_SERIAL
from even.errors import InvalidRequest

TABLE = "certificate_serials"
_NEXTVAL = text(
    "SELECT nextval(pg_get_serial_sequence(:table, 'serial')) FROM generate_series(1, :n)"
)


def reserve_serials(conn: Connection, count: int) -> list[int]:
    """`count` serials no other reservation or INSERT will ever hand out."""
    if not 1 <= count <= 10_000:
        raise ValueError("reserve between 1 and 10,000 serials at a time")
    if conn.dialect.name == "postgresql":
        rows = conn.execute(_NEXTVAL, {"table": TABLE, "n": count})
        serials = [int(row[0]) for row in rows]
    else:
        serials = _reserve_sqlite(conn, count)
    if not serials or serials[-1] >= MAX_SERIAL or serials[0] < 1:
        raise InvalidRequest("serial space exhausted")
    return serials


def _reserve_sqlite(conn: Connection, count: int) -> list[int]:
    # AUTOINCREMENT keeps the highest serial ever handed out in sqlite_sequence and draws the
    # next one above both it and the table's largest key; moving it up reserves the range.
    current = conn.execute(
        text("SELECT seq FROM sqlite_sequence WHERE name = :table"), {"table": TABLE}
    ).scalar()
    if current is None:
        highest = conn.execute(text(f"SELECT coalesce(max(serial), 0) FROM {TABLE}")).scalar()  # noqa: S608 - a constant
        first = int(highest or 0) + 1
        conn.execute(
            text("INSERT INTO sqlite_sequence (name, seq) VALUES (:table, :seq)"),
            {"table": TABLE, "seq": first + count - 1},
        )
    else:
        first = int(current) + 1
        conn.execute(
            text("UPDATE sqlite_sequence SET seq = :seq WHERE name = :table"),
            {"table": TABLE, "seq": first + count - 1},
        )
    return list(range(first, first + count))
