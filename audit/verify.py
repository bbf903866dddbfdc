"""Offline verification of a JSONL export (SPEC §8): bytes or parsed items in, one verdict out.

Pure: no SQL, no clock, no printing, no file handling (the CLI reads; this module is fed
chunks or items), and constant memory in the length of the log: it keeps the last seq and
hash, the seq covered by the last checkpoint, and the anchors the auditor brought.

What VALID means: seq runs 1..N without gap, duplicate or reordering; every record's `hash` is
its recomputed hash and its `prev_hash` the hash before it (64 zeros for seq 1); every
checkpoint line stands right after record `size`, names that record's hash as `head` and is
signed by one of the given keys; the file ends with a checkpoint over its last record; every
anchor (receipt or saved checkpoint, signature-checked first) names a record in the file with
that same hash. INVALID names one seq: the edited record, the first missing or out-of-place
seq, a failing checkpoint's `size`, the first seq not covered by a checkpoint, or an anchor's
seq; problems in the file are reported in file order, anchors past the end last.

Input rules: JSONL is split on b"\\n" only (U+2028, U+0085 and lone CRs inside reasons are
data); lines that are empty or only JSON whitespace are skipped; a line that is not JSON, not
UTF-8, longer than MAX_LINE or that repeats a member name is INVALID naming the seq after the
last good record (a corrupt or ambiguous line is a property of the file, not a usage error).
Member order and whitespace are free, since hashes are over the canonical form.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from audit.chain import (
    GENESIS_HASH,
    RECORD_FIELDS,
    UnsafeValue,
    canonical,
    hash_canonical,
)
from audit.checkpoint import (
    CHECKPOINT_TYPE,
    Checkpoint,
    MalformedSignedObject,
    PublicKeys,
    Receipt,
    SignedObjectError,
    parse_checkpoint,
    verify_checkpoint,
    verify_receipt,
)

MAX_LINE = 4 * 1024 * 1024
"""Longest accepted line: records are a few KiB; this bounds memory on a hostile file."""

_REQUIRED = frozenset((*RECORD_FIELDS, "hash"))
# Length of `"hash":"<64 hex>",` inserted into the canonical body gives the canonical line.
_HASH_MEMBER_LEN = len('"hash":"",') + 64
_JSON_BLANK = b" \t\r"


@dataclass(frozen=True)
class Valid:
    records: int
    checkpoints: int
    head: str
    anchors: int = 0

    def __str__(self) -> str:
        return f"VALID: {self.records} records, {self.checkpoints} checkpoints, head {self.head}"


@dataclass(frozen=True)
class Invalid:
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"INVALID: record {self.seq}: {self.reason}"


Verdict = Valid | Invalid


def verify_jsonl(
    chunks: Iterable[bytes],
    keys: PublicKeys,
    *,
    receipts: Iterable[Receipt] = (),
    checkpoints: Iterable[Checkpoint] = (),
) -> Verdict:
    """Verify an export given as byte chunks of any size (e.g. 1 MiB reads of the file)."""
    verifier = _Verifier(keys)
    failure = verifier.check_anchors(receipts, checkpoints)
    if failure:
        return failure
    # The per-line loop is the hot path (one pass per record): parsing, dispatch and the
    # blank-line test stay inline here, and blank lines are looked at only when orjson fails.
    loads, decode_error, item = orjson.loads, orjson.JSONDecodeError, verifier.item
    number = 0
    try:
        for line in split_lines(chunks):
            number += 1
            try:
                parsed = loads(line)
            except decode_error as exc:
                if not line.strip(_JSON_BLANK):
                    continue
                return Invalid(verifier.seq + 1, f"line {number} is not JSON ({exc})")
            failure = item(parsed, line, number)
            if failure:
                return failure
    except LineTooLong as exc:
        return Invalid(verifier.seq + 1, f"line {number + 1}: {exc}")
    return verifier.finish()


def verify_items(
    items: Iterable[object],
    keys: PublicKeys,
    *,
    receipts: Iterable[Receipt] = (),
    checkpoints: Iterable[Checkpoint] = (),
) -> Verdict:
    """Verify already-parsed JSONL items (records and checkpoint lines, in file order).

    The items are consumed and may be modified (each record's `hash` member is popped).
    """
    verifier = _Verifier(keys)
    failure = verifier.check_anchors(receipts, checkpoints)
    if failure:
        return failure
    for number, parsed in enumerate(items, start=1):
        failure = verifier.item(parsed, None, number)
        if failure:
            return failure
    return verifier.finish()


class LineTooLong(ValueError):
    """A line over the limit: refused instead of buffered without bound."""


def split_lines(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[bytes]:
    """Lines of a byte stream split on b"\\n" only (never on U+2028, U+0085 or a lone CR)."""
    pending = b""
    for chunk in chunks:
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if len(line) > max_line:
                raise LineTooLong(f"a line is longer than {max_line} bytes")
            yield line
        if len(pending) > max_line:
            raise LineTooLong(f"a line is longer than {max_line} bytes")
    if pending:
        yield pending


class _Verifier:
    """The state machine; one instance verifies one file."""

    def __init__(self, keys: PublicKeys) -> None:
        self.keys = keys
        self.seq = 0  # last good record
        self.head = GENESIS_HASH  # its hash
        self.covered = 0  # size of the last good checkpoint
        self.checkpoints = 0
        self.anchors: dict[int, list[tuple[str, str]]] = {}  # seq -> [(hash, kind)]

    def item(self, item: object, raw: bytes | None, number: int) -> Invalid | None:
        """Check the next item; `raw` is its line when it came from bytes (to find repeats)."""
        if type(item) is dict:
            if item.get("type") == CHECKPOINT_TYPE and "seq" not in item:
                return self._checkpoint(item, raw)
            return self._record(item, raw)
        what = "line" if raw is not None else "item"
        return Invalid(self.seq + 1, f"{what} {number} is not a JSON object")

    def check_anchors(
        self, receipts: Iterable[Receipt], checkpoints: Iterable[Checkpoint]
    ) -> Invalid | None:
        # An anchor counts only if the audit key signed it; a bad one is reported at its seq.
        for receipt in receipts:
            try:
                verify_receipt(receipt, self.keys)
            except SignedObjectError as exc:
                return Invalid(receipt.seq, f"receipt {exc}")
            self.anchors.setdefault(receipt.seq, []).append((receipt.hash, "receipt"))
        for saved in checkpoints:
            try:
                verify_checkpoint(saved, self.keys)
            except SignedObjectError as exc:
                return Invalid(saved.size, f"saved checkpoint {exc}")
            self.anchors.setdefault(saved.size, []).append((saved.head, "saved checkpoint"))
        return None

    def _record(self, item: dict[str, Any], raw: bytes | None) -> Invalid | None:
        expected = self.seq + 1
        seq = item.get("seq")
        if type(seq) is not int:
            return Invalid(expected, "a record without an integer seq stands here")
        if seq != expected:
            return _out_of_place(seq, expected)
        if not item.keys() >= _REQUIRED:
            missing = ", ".join(sorted(_REQUIRED - item.keys()))
            return Invalid(seq, f"missing member(s): {missing}")
        claimed = item.pop("hash")
        try:
            body = canonical(item)
        except UnsafeValue as exc:
            return Invalid(seq, f"value outside the audit domain ({exc})")
        # A line as long as the canonical form cannot hide a repeated member (canonical is
        # the shortest encoding), so only re-serialised lines pay for the slow check.
        if raw is not None and len(raw) != len(body) + _HASH_MEMBER_LEN:
            ambiguity = _ambiguity(raw)
            if ambiguity:
                return Invalid(seq, ambiguity)
        if hash_canonical(body) != claimed:
            return Invalid(seq, "hash does not match the record's contents")
        if item["prev_hash"] != self.head:
            if seq == 1:
                return Invalid(seq, "prev_hash of record 1 is not 64 zeros")
            return Invalid(seq, f"prev_hash does not match the hash of record {seq - 1}")
        anchored = self.anchors.get(seq)
        if anchored:
            for anchor_hash, kind in anchored:
                if anchor_hash != claimed:
                    return Invalid(seq, f"hash differs from the {kind} for this record")
        self.seq = seq
        self.head = claimed
        return None

    def _checkpoint(self, item: dict[str, Any], raw: bytes | None) -> Invalid | None:
        try:
            checkpoint = parse_checkpoint(item)
        except MalformedSignedObject as exc:
            size = item.get("size")
            named = size if type(size) is int and size >= 1 else max(self.seq, 1)
            return Invalid(named, f"malformed checkpoint: {exc}")
        size = checkpoint.size
        ambiguity = _ambiguity(raw) if raw is not None else None
        if ambiguity:
            return Invalid(size, f"checkpoint line: {ambiguity}")
        try:
            verify_checkpoint(checkpoint, self.keys)
        except SignedObjectError as exc:
            return Invalid(size, f"checkpoint {exc}")
        if size != self.seq:
            return Invalid(size, f"checkpoint for record {size} stands after record {self.seq}")
        if checkpoint.head != self.head:
            return Invalid(size, "checkpoint head differs from this record's hash")
        self.covered = size
        self.checkpoints += 1
        return None

    def finish(self) -> Verdict:
        if self.seq == 0:
            return Invalid(1, "the file holds no records")
        if self.covered == 0:
            return Invalid(1, f"no checkpoint in the file: records 1..{self.seq} are unsigned")
        if self.covered < self.seq:
            first = self.covered + 1
            return Invalid(
                first,
                f"records {first}..{self.seq} are not covered by a checkpoint "
                "(the file must end with one over its last record)",
            )
        beyond = [s for s in self.anchors if s > self.seq]
        if beyond:
            seq = min(beyond)
            kind = self.anchors[seq][0][1]
            return Invalid(seq, f"the file ends at record {self.seq}, before this {kind}'s record")
        anchors = sum(len(v) for v in self.anchors.values())
        return Valid(self.seq, self.checkpoints, self.head, anchors)


def _out_of_place(seq: int, expected: int) -> Invalid:
    if seq > expected:
        return Invalid(expected, f"missing or out of place (the next record is seq {seq})")
    if seq >= 1:
        return Invalid(seq, f"seq {seq} appears again after record {expected - 1}")
    return Invalid(expected, f"seq {seq} stands where seq {expected} belongs")


def _ambiguity(raw: bytes) -> str | None:
    """Why other JSON parsers could read this line differently, or None.

    orjson silently keeps the last of repeated member names; another tool may keep the first
    and show the auditor a record other than the one verified, so repeats are refused.
    """
    repeated = False

    def pairs(members: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        result = dict(members)
        repeated = repeated or len(result) != len(members)
        return result

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return "the line does not parse the same way twice"
    return "a member name appears twice (parsers could disagree)" if repeated else None
