"""A real audit log and its tampered variants, shared by the audit verification tests.

The log is appended through `audit.store` to a temporary SQLite database (with the append-only
triggers installed), checkpointed with the audit key every EVERY records and at the end (the
checkpoints stored with `audit.store.add_checkpoint`), and exported through
`audit.export.jsonl_lines`. Each `TamperCase` is one attack on that export
with the seq the verdict must name (SPEC §8), so the tamper tests and the independent
verifier test check the same files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine

from audit import store
from audit.chain import AuditEvent, record_hash
from audit.checkpoint import make_checkpoint
from audit.export import jsonl_lines
from audit.signing import AuditSigner

N_RECORDS = 45
EVERY = 10
ORIGIN = "https://even.test"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

# Reasons that break naive tools: line separators that str.splitlines() splits on, bidi
# overrides, terminal escapes, non-ASCII text. They are data and must verify as such.
REASONS = [
    "debug INC-123 elevated 5xx",
    "line\u2028separator INC-7",
    "next\u0085line INC-8",
    "\u202eevil bidi INC-9",
    "esc \x1b[31mred\x1b[0m INC-10",
    "café 漢字 😀 INC-11",
    "tab\tand\nnewline\rcr INC-12",
    'quote " and backslash \\ INC-13',
]


def _event(i: int) -> AuditEvent:
    kind = i % 5
    if kind == 0:
        return AuditEvent(type="policy.loaded", details={"sha256": f"{i:064x}"})
    reason = REASONS[i % len(REASONS)]
    common = {
        "username": "alice",
        "login": "deploy",
        "hostname": f"web-{i}.prod.even.test",
        "request_id": f"01J{i:023d}",
        "reason": reason,
    }
    if kind == 1:
        return AuditEvent(type="access.requested", **common, details={"mode": "certificate"})
    if kind == 2:
        details = {
            "serial": 1000 + i,
            "key_id": f"alice-{i}",
            "fingerprint": "SHA256:" + "A" * 43,
            "principals": ["deploy", "alice"],
            "valid_after": "2026-03-01T09:00:00Z",
            "valid_before": "2026-03-01T10:00:00Z",
            "rule": "sre-prod",
            "mode": "certificate",
            "bastion": None,
            "principal_mode": "login",
            "max_int": 2**53 - 1,
            "min_int": -(2**53 - 1),
        }
        return AuditEvent(type="access.granted", **common, details=details)
    if kind == 3:
        return AuditEvent(type="access.denied", **common, details={"error": "no rule", "n": 0})
    return AuditEvent(type="keys.updated", username="bob", details={"count": 2, "ok": True})


@dataclass
class BuiltLog:
    db_path: Path
    signer: AuditSigner
    records: list[dict[str, Any]]
    checkpoints: dict[int, dict[str, Any]]  # size -> checkpoint line object
    lines: list[bytes]  # the export split on b"\n", without the final empty piece

    def receipt(self, seq: int) -> dict[str, Any]:
        return self.signer.receipt(seq, self.records[seq - 1]["hash"])


def build_log(db_path: Path, signer: AuditSigner) -> BuiltLog:
    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.begin() as conn:
            store.metadata.create_all(conn)
            store.install_append_only_guards(conn)
            for i in range(N_RECORDS):
                store.append(conn, _event(i), START + timedelta(seconds=i))
        with engine.connect() as conn:
            records = list(store.iter_records(conn))
        checkpoints = {
            r["seq"]: make_checkpoint(
                signer,
                origin=ORIGIN,
                size=r["seq"],
                head=r["hash"],
                time=f"2026-03-01T10:00:{r['seq']:02d}Z",
            )
            for r in records
            if r["seq"] % EVERY == 0 or r["seq"] == N_RECORDS
        }
        with engine.begin() as conn:
            for line in checkpoints.values():
                store.add_checkpoint(conn, line)
        with engine.connect() as conn:
            data = b"".join(jsonl_lines(conn, up_to=N_RECORDS))
    finally:
        engine.dispose()
    lines = data.split(b"\n")
    assert lines.pop() == b""
    return BuiltLog(db_path, signer, records, checkpoints, lines)


def new_signer() -> AuditSigner:
    return AuditSigner(Ed25519PrivateKey.generate())


# --- editing an export -------------------------------------------------------------------


def items(lines: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in lines]


def dump(item: dict[str, Any]) -> bytes:
    return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)


def is_checkpoint(item: dict[str, Any]) -> bool:
    return item.get("type") == "checkpoint" and "seq" not in item


def index_of(lines: list[bytes], seq: int) -> int:
    for i, item in enumerate(items(lines)):
        if not is_checkpoint(item) and item["seq"] == seq:
            return i
    raise LookupError(seq)


def rechain(objs: list[dict[str, Any]], *, renumber: bool = False) -> list[dict[str, Any]]:
    """Recompute every record's prev_hash and hash (and seq, if asked); checkpoints untouched.

    This is what a forger without the audit key can do: a self-consistent chain that only a
    signed checkpoint (or an anchor) contradicts.
    """
    seq, prev = 0, "0" * 64
    for obj in objs:
        if is_checkpoint(obj):
            continue
        seq += 1
        if renumber:
            obj["seq"] = seq
        obj["prev_hash"] = prev
        obj.pop("hash", None)
        obj["hash"] = prev = _any_hash(obj)
    return objs


def _any_hash(record: dict[str, Any]) -> str:
    # record_hash refuses values outside the audit domain; a forger need not. For values in
    # the domain this is the same hash (orjson with sorted keys is the canonical form there).
    body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(b"even-audit-v1:" + body).hexdigest()


def resign(
    objs: list[dict[str, Any]], signer: AuditSigner, *, from_size: int = 1
) -> list[dict[str, Any]]:
    """Re-make each checkpoint (from `from_size` on) over the record it follows, with `signer`.

    What the audit-key holder can do; with another signer, what an audit-key rotation does.
    """
    out: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    for obj in objs:
        if not is_checkpoint(obj):
            last = obj
            out.append(obj)
            continue
        assert last is not None
        if last["seq"] < from_size:
            out.append(obj)
            continue
        out.append(
            make_checkpoint(
                signer, origin=obj["origin"], size=last["seq"], head=last["hash"], time=obj["time"]
            )
        )
    return out


@dataclass
class TamperCase:
    name: str
    lines: list[bytes]
    seq: int | None  # None: VALID
    fragment: str = ""  # part of the INVALID reason
    receipts: list[dict[str, Any]] = field(default_factory=list)
    saved_checkpoints: list[dict[str, Any]] = field(default_factory=list)


def _edit(log: BuiltLog, seq: int, change: Callable[[dict[str, Any]], None]) -> list[bytes]:
    lines = list(log.lines)
    i = index_of(lines, seq)
    obj = orjson.loads(lines[i])
    change(obj)
    lines[i] = dump(obj)
    return lines


def tamper_cases(log: BuiltLog, forger: AuditSigner) -> list[TamperCase]:
    """The SPEC §8 attacks on `log`, each with the seq the verdict names."""
    lines = log.lines
    last_cp = index_of(lines, 40) + 1  # the checkpoint line over record 40

    def set_reason(obj: dict[str, Any]) -> None:
        obj["reason"] = "routine maintenance INC-1"

    edited = items(_edit(log, 23, set_reason))
    rewritten = rechain(edited)
    deleted = [line for i, line in enumerate(lines) if i != index_of(lines, 23)]

    forged = dict(orjson.loads(lines[index_of(lines, 22)]))
    forged.update(seq=23, reason="forged INC-666", prev_hash=forged["hash"])
    forged.pop("hash")
    forged["hash"] = record_hash(forged)
    inserted = list(lines)
    inserted.insert(index_of(lines, 22) + 1, dump(forged))

    renumbered = items(inserted)
    rechain(renumbered, renumber=True)

    swapped = list(lines)
    a, b = index_of(lines, 23), index_of(lines, 24)
    swapped[a], swapped[b] = swapped[b], swapped[a]

    bad_sig = _replace_signature(log, 30, forger)
    foreign = items(lines)
    cp30 = index_of(lines, 30) + 1
    foreign[cp30] = make_checkpoint(
        forger, origin=ORIGIN, size=30, head=foreign[cp30]["head"], time=foreign[cp30]["time"]
    )

    # The audit-key holder deletes record 23 and re-signs: only the receipt still knows it.
    rewritten_by_key_holder = resign(rechain(items(deleted), renumber=True), log.signer)

    def float_detail(obj: dict[str, Any]) -> None:
        obj["details"]["score"] = 1.5

    with_float = items(_edit(log, 12, float_detail))
    rechain(with_float)
    with_float = resign(with_float, log.signer)  # even correctly signed, floats are refused

    return [
        TamperCase("valid", list(lines), None),
        TamperCase("reserialised", reserialise(lines), None),
        TamperCase("edited_field", _edit(log, 23, set_reason), 23, "hash does not match"),
        TamperCase("edited_and_rehashed", _dumps(rewritten), 30, "checkpoint head"),
        TamperCase("deleted_record", deleted, 23, "missing"),
        TamperCase("inserted_forged_record", inserted, 23, "appears again"),
        TamperCase("inserted_and_renumbered", _dumps(renumbered), 30, "stands after"),
        TamperCase("swapped_records", swapped, 23, "out of place"),
        TamperCase("cut_at_checkpoint", lines[: last_cp + 1], None),
        TamperCase(
            "cut_at_checkpoint_with_saved_checkpoint",
            lines[: last_cp + 1],
            45,
            "file ends at record 40",
            saved_checkpoints=[log.checkpoints[45]],
        ),
        TamperCase(
            "cut_at_checkpoint_with_receipt",
            lines[: last_cp + 1],
            43,
            "file ends at record 40",
            receipts=[log.receipt(43)],
        ),
        TamperCase(
            "cut_with_trailing_checkpoints",
            lines[: index_of(lines, 43) + 1],
            41,
            "not covered",
        ),
        TamperCase("checkpoint_signature_replaced", bad_sig, 30, "does not verify"),
        TamperCase("checkpoint_by_unknown_key", _dumps(foreign), 30, "unknown key"),
        TamperCase(
            "no_checkpoint",
            [line for line in lines if not is_checkpoint(orjson.loads(line))],
            1,
            "no checkpoint",
        ),
        TamperCase("rewritten_by_key_holder", _dumps(rewritten_by_key_holder), None),
        TamperCase("receipt_record_removed", deleted, 23, "missing", receipts=[log.receipt(23)]),
        TamperCase(
            "receipt_record_removed_and_resigned",
            _dumps(rewritten_by_key_holder),
            23,
            "differs from the receipt",
            receipts=[log.receipt(23)],
        ),
        TamperCase("float_value", _dumps(with_float), 12, "outside the audit domain"),
        TamperCase(
            "not_json_line",
            [*lines[: index_of(lines, 17)], b'{"seq": 17,', *lines[index_of(lines, 18) :]],
            17,
            "not JSON",
        ),
        TamperCase(
            "repeated_member",
            _repeat_member(lines, 8),
            8,
            "appears twice",
        ),
        TamperCase("empty_file", [], 1, "no records"),
    ]


def _dumps(objs: list[dict[str, Any]]) -> list[bytes]:
    return [dump(obj) for obj in objs]


def _replace_signature(log: BuiltLog, size: int, forger: AuditSigner) -> list[bytes]:
    lines = list(log.lines)
    i = index_of(lines, size) + 1
    obj = orjson.loads(lines[i])
    # A well-formed signature, but by another key over the same body, under the real key_id.
    forged = make_checkpoint(
        forger, origin=obj["origin"], size=obj["size"], head=obj["head"], time=obj["time"]
    )
    obj["signature"] = forged["signature"]
    lines[i] = dump(obj)
    return lines


def _repeat_member(lines: list[bytes], seq: int) -> list[bytes]:
    """Record `seq` with a first `reason` member a first-wins parser would show instead."""
    out = list(lines)
    i = index_of(lines, seq)
    assert out[i].startswith(b"{")
    out[i] = b'{"reason":"nothing to see",' + out[i][1:]
    return out


def reserialise(lines: list[bytes]) -> list[bytes]:
    """Same objects, other bytes: reversed member order, spaces, \\u escapes, CRLF."""
    out = []
    for line in lines:
        obj = orjson.loads(line)
        reordered = dict(reversed(list(obj.items())))
        text = json.dumps(reordered, ensure_ascii=True, indent=None, separators=(" , ", " : "))
        out.append(b"  " + text.encode("ascii") + b" \r")
    return out


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def write_json_lines(path: Path, objs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path
