"""JSONL export of the audit log: whole log from seq 1, one record per line, seq order.

Streams in batches (constant memory). Lines are the records' canonical JSON, so re-hashing a
line's object reproduces its `hash`.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.engine import Connection

from audit.chain import canonical
from audit.store import iter_records


def jsonl_lines(conn: Connection) -> Iterator[bytes]:
    for record in iter_records(conn):
        yield canonical(record) + b"\n"
