"""JSONL export of the audit log: whole log from seq 1, one record per line, seq order.

Streams in batches (constant memory). Lines are the canonical JSON of each record, so re-hashing
a line's object reproduces its `hash`; each stored checkpoint line stands right after record
`size` (the interleaving is `audit.store.iter_export`). A verifiable export ends with a
checkpoint over its last record, so callers export up to a checkpoint's size.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.engine import Connection

from audit.chain import canonical
from audit.store import iter_export


def jsonl_lines(conn: Connection, *, up_to: int) -> Iterator[bytes]:
    """Records 1..up_to with their stored checkpoints, as JSONL lines."""
    for item in iter_export(conn, up_to=up_to):
        yield canonical(item) + b"\n"
