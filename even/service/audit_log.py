"""Use cases of the audit log itself: checkpoints, export, event queries (SPEC §8).

Checkpoints are signed over the head every N records or T seconds, at shutdown and at every
export. Deciding "is one due?" and writing it happen in one write transaction, so several
workers or replicas never sign two checkpoints for the same size. An export is itself audited
(`audit.exported`), then checkpointed, then streamed up to that checkpoint from a read
snapshot: the file always ends with a checkpoint over its last record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from audit import store as audit_store
from audit.chain import AuditEvent
from audit.checkpoint import make_checkpoint
from audit.signing import AuditSigner
from even.clock import Clock
from even.identity import Identity
from even.store.db import read_only, transaction
from even.store.unit_of_work import append_record


@dataclass(frozen=True)
class CheckpointPolicy:
    every_records: int
    every_seconds: int


@dataclass(frozen=True)
class EventFilters:
    since: str | None = None
    until: str | None = None
    username: str | None = None
    login: str | None = None
    hostname: str | None = None
    type: str | None = None
    after_seq: int = 0
    limit: int = 100


class AuditLogService:
    def __init__(
        self,
        *,
        engine: Engine,
        signer: AuditSigner,
        clock: Clock,
        origin: str,
        policy: CheckpointPolicy,
    ) -> None:
        self._engine = engine
        self._signer = signer
        self._clock = clock
        self._origin = origin
        self._policy = policy

    def checkpoint(self, *, force: bool = False) -> dict[str, Any] | None:
        """Sign the head if a checkpoint is due (or `force`); return the newest checkpoint."""
        if not force:
            # Most polls find nothing due: decide that from a snapshot, without the write lock.
            with read_only(self._engine) as conn:
                size, _ = audit_store.head(conn)
                latest = audit_store.latest_checkpoint(conn)
            if size == 0 or not self._due(size, latest):
                return latest
        with transaction(self._engine) as conn:
            size, head_hash = audit_store.head(conn)
            latest = audit_store.latest_checkpoint(conn)
            if size == 0 or (latest is not None and latest["size"] >= size):
                return latest
            if not force and not self._due(size, latest):
                return latest
            line = make_checkpoint(
                self._signer,
                origin=self._origin,
                size=size,
                head=head_hash,
                time=audit_store.format_time(self._clock.now()),
            )
            audit_store.add_checkpoint(conn, line)
            return line

    def _due(self, size: int, latest: dict[str, Any] | None) -> bool:
        if latest is None:
            return True
        if size - int(latest["size"]) >= self._policy.every_records:
            return True
        signed_at = datetime.strptime(latest["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        age = self._clock.now().replace(tzinfo=None) - signed_at
        return age >= timedelta(seconds=self._policy.every_seconds)

    def latest_checkpoint(self) -> dict[str, Any] | None:
        with read_only(self._engine) as conn:
            return audit_store.latest_checkpoint(conn)

    def start_export(
        self, identity: Identity, *, export_format: str, since: str | None, until: str | None
    ) -> int:
        """Audit the export and checkpoint the head; returns the size to export up to."""
        event = AuditEvent(
            type="audit.exported",
            username=identity.username,
            details={"format": export_format, "since": since, "until": until},
        )
        with transaction(self._engine) as conn:
            append_record(conn, event, self._clock.now())
        checkpoint = self.checkpoint(force=True)
        assert checkpoint is not None  # the export record itself guarantees a non-empty log
        return int(checkpoint["size"])

    def export_items(self, up_to: int) -> Iterator[dict[str, Any]]:
        """Records and checkpoints up to `up_to`, read from one snapshot, in batches."""
        with read_only(self._engine) as conn:
            yield from audit_store.iter_export(conn, up_to=up_to)

    def export_records(
        self, up_to: int, *, since: str | None, until: str | None
    ) -> Iterator[dict[str, Any]]:
        with read_only(self._engine) as conn:
            for record in audit_store.iter_records(conn, until_seq=up_to):
                time = str(record["time"])
                if (since is None or time >= since) and (until is None or time < until):
                    yield record

    def events(self, filters: EventFilters) -> list[dict[str, Any]]:
        with read_only(self._engine) as conn:
            return audit_store.query_records(
                conn,
                since=filters.since,
                until=filters.until,
                username=filters.username,
                login=filters.login,
                hostname=filters.hostname,
                record_type=filters.type,
                after_seq=filters.after_seq,
                limit=filters.limit,
            )
