"""Read-only views of the audit log for people: grants per day, and "does the chain verify up
to its latest checkpoint?" (SPEC §8, §13). No writes, no HTTP.

`ChainCheck` verifies incrementally: it remembers the last (size, head) it verified in this
process, and on the next call checks only the records after it, then the newest checkpoint's
signature and head. A record that fails is reported by seq; the remembered state only ever
advances over records that verified, so a later edit of an already verified record is not
seen by this page (the offline `even-audit verify` of an export is the full check).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from audit import store as audit_store
from audit.chain import GENESIS_HASH, record_hash
from audit.checkpoint import SignedObjectError, key_ring, parse_checkpoint, verify_checkpoint
from audit.signing import AuditSigner
from even.clock import Clock
from even.store.db import read_only


@dataclass(frozen=True)
class ChainStatus:
    checkpoint: dict[str, Any] | None  # the newest checkpoint line, None before the first
    verified: bool  # records 1..checkpoint size link, hash and match its signed head
    problem: str | None = None  # why not, naming a seq where one is to blame
    log_size: int = 0  # records in the log now (the newest may follow the checkpoint)


@dataclass(frozen=True)
class DayCount:
    day: str  # YYYY-MM-DD (UTC)
    count: int


class ChainCheck:
    def __init__(self, *, engine: Engine, signer: AuditSigner) -> None:
        self._engine = engine
        self._keys = key_ring([signer.public_key])
        self._lock = threading.Lock()
        self._size = 0
        self._head = GENESIS_HASH

    def status(self) -> ChainStatus:
        with self._lock, read_only(self._engine) as conn:
            log_size, _ = audit_store.head(conn)
            line = audit_store.latest_checkpoint(conn)
            if line is None:
                return ChainStatus(None, False, "no checkpoint yet", log_size)
            verdict = self._advance(conn, line)
        return ChainStatus(line, verdict is None, verdict, log_size)

    def _advance(self, conn: Any, line: dict[str, Any]) -> str | None:
        """Check the records after the last verified one up to the checkpoint, then the
        checkpoint itself; None when all is well, else the problem."""
        size, head = self._size, self._head
        if int(line["size"]) < size:
            return f"the newest checkpoint is older than record {size}"
        for record in audit_store.iter_records(conn, after_seq=size, until_seq=int(line["size"])):
            problem = _check(record, size + 1, head)
            if problem is not None:
                return problem
            size, head = record["seq"], record["hash"]
            self._size, self._head = size, head
        if size != int(line["size"]):
            return f"record {size + 1}: missing"
        try:
            checkpoint = parse_checkpoint(line)
            verify_checkpoint(checkpoint, self._keys)
        except SignedObjectError as exc:
            return f"checkpoint {line['size']}: {exc}"
        if checkpoint.head != head:
            return f"checkpoint {size}: its head is not the hash of record {size}"
        return None


def _check(record: dict[str, Any], expected_seq: int, prev: str) -> str | None:
    seq = record["seq"]
    if seq != expected_seq:
        return f"record {expected_seq}: missing"
    if record["prev_hash"] != prev:
        return f"record {seq}: prev_hash does not link to record {seq - 1}"
    body = {k: v for k, v in record.items() if k != "hash"}
    if record_hash(body) != record["hash"]:
        return f"record {seq}: hash mismatch (edited)"
    return None


def grants_per_day(engine: Engine, clock: Clock, days: int = 30) -> list[DayCount]:
    """`access.granted` records per UTC day for the last `days` days, oldest first, zeros
    included (a chart with gaps would hide the quiet days)."""
    today = clock.now().date()
    first = today - timedelta(days=days - 1)
    table = audit_store.audit_records
    day = func.substr(table.c.time, 1, 10)
    query = (
        select(day.label("day"), func.count().label("n"))
        .where(table.c.type == "access.granted", table.c.time >= first.isoformat())
        .group_by(day)
    )
    with read_only(engine) as conn:
        counts = {str(row.day): int(row.n) for row in conn.execute(query)}
    return [
        DayCount(d.isoformat(), counts.get(d.isoformat(), 0))
        for d in (first + timedelta(days=i) for i in range(days))
    ]
