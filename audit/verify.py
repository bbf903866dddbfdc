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

Speed (the hot path, one pass per record, constant memory): a line that is already the
canonical form of a plain record is verified by `_Verifier.feed` without the general
machinery. Anything else (checkpoints, re-serialised lines, odd shapes, every failure) goes
through the general `_Verifier.item`. The fast path accepts a record only where `item` would
accept it with the same resulting state, and hands everything else to `item` re-parsed from
the same bytes, so verdicts, seqs and reasons are those of the general path (see `feed` for
why; tests/audit/test_audit_fast_path.py checks it on generated and hostile lines).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from audit.chain import (
    GENESIS_HASH,
    HASH_PREFIX,
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

# The fast path takes records whose members are exactly these, in this (sorted, so canonical)
# order; any other shape is left to the general path. The strings are the ones orjson hands
# out for these keys (it caches short keys), so comparing a record's member names with them is
# mostly identity checks; a string equal but not identical compares equal all the same.
_PLAIN_MEMBERS = tuple(orjson.loads(orjson.dumps(dict.fromkeys(sorted(_REQUIRED)))))
# Sorted keys as JCS wants them; STRICT_INTEGER makes orjson refuse integers outside
# ±(2^53-1), the audit domain's bound (chain.MAX_SAFE_INT), instead of writing them.
_CANONICAL_OPTION = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
# Lead bytes of 4-byte UTF-8 sequences (characters beyond U+FFFF): the only characters whose
# key order differs between orjson (code points) and JCS (UTF-16 code units).
_SUPPLEMENTARY_LEADS = (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")


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
    try:
        for lines in _line_batches(chunks):
            failure = verifier.feed(lines)
            if failure:
                return failure
    except LineTooLong as exc:
        return Invalid(verifier.seq + 1, f"line {verifier.lines + 1}: {exc}")
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
    for lines in _line_batches(chunks, max_line):
        yield from lines


def _line_batches(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[list[bytes]]:
    """`split_lines` a chunk at a time: the lines each chunk completes, as one list.

    LineTooLong comes exactly where `split_lines` raises it: after the lines before the
    over-long one (so a problem earlier in the file is still reported first).
    """
    pending = b""
    for chunk in chunks:
        # No line can be longer than the text it came from: the usual case skips the scan.
        scan = len(pending) + len(chunk) > max_line
        lines = chunk.split(b"\n")
        lines[0] = pending + lines[0]  # cheaper than copying the whole chunk behind `pending`
        pending = lines.pop()
        if scan:
            for i, line in enumerate(lines):
                if len(line) > max_line:
                    yield lines[:i]
                    raise LineTooLong(f"a line is longer than {max_line} bytes")
        yield lines
        if len(pending) > max_line:
            raise LineTooLong(f"a line is longer than {max_line} bytes")
    if pending:
        yield [pending]


class _Verifier:
    """The state machine; one instance verifies one file."""

    def __init__(self, keys: PublicKeys) -> None:
        self.keys = keys
        self.seq = 0  # last good record
        self.head = GENESIS_HASH  # its hash
        self.covered = 0  # size of the last good checkpoint
        self.checkpoints = 0
        self.anchors: dict[int, list[tuple[str, str]]] = {}  # seq -> [(hash, kind)]
        self.lines = 0  # lines read so far (JSONL input)

    def feed(self, lines: list[bytes]) -> Invalid | None:
        """Check the next lines of a JSONL file; the hot loop of `verify_jsonl`.

        A line takes the fast path only if all of this holds, and then it is exactly a record
        that `item` accepts, leaving the same state (seq, head):
        - it parses to a dict whose members are exactly the record's, in sorted order, whose
          seq is the next one (an int, not a bool), whose prev_hash is the current head and
          which no anchor names (so `item`'s seq, member and anchor checks pass);
        - `body`, orjson's sorted-keys form of the record without `hash`, is the canonical form
          `item` would hash (`canonical`): `_plain` finds only str, int, bool, None, dict and
          list (no float), STRICT_INTEGER refused any integer beyond ±(2^53-1), so the value
          is in the audit domain, where orjson with sorted keys writes the JCS bytes (keys
          are sorted by code point, which is JCS's UTF-16 order unless a key holds a
          character beyond U+FFFF: any such character sends the line to `item`);
        - the line is as long as `body` plus the 74-byte `"hash":"<64 hex>",` member, so it
          repeats no member name (a repeat could only make it longer than the canonical
          form, which is the shortest encoding) and `item` would skip its ambiguity check;
        - the hex SHA-256 of the prefix and `body` is the claimed hash (hence 64 hex digits).
        Whatever fails any test is parsed again from its bytes and given to `item`, which
        decides it exactly as if there were no fast path.
        """
        loads, dumps, sha, plain = orjson.loads, orjson.dumps, hashlib.sha256, _plain
        decode_error, encode_error = orjson.JSONDecodeError, orjson.JSONEncodeError
        members, option, prefix, anchors = (
            _PLAIN_MEMBERS,
            _CANONICAL_OPTION,
            HASH_PREFIX,
            self.anchors,
        )
        member_len = _HASH_MEMBER_LEN
        number = self.lines
        expected = self.seq + 1
        head = self.head
        for line in lines:
            number += 1
            try:
                item = loads(line)
            except decode_error as exc:
                if not line.strip(_JSON_BLANK):
                    continue  # blank lines are skipped; only they may fail to parse
                self.lines = number
                return Invalid(expected, f"line {number} is not JSON ({exc})")
            if type(item) is dict and tuple(item) == members:
                _, claimed, _, _, prev_hash, _, _, seq, _, _, _ = item.values()
                if (
                    seq == expected
                    and prev_hash == head
                    and type(seq) is int
                    and seq not in anchors
                ):
                    del item["hash"]
                    try:
                        body = dumps(item, option=option)
                    except encode_error:  # an integer beyond ±(2^53-1), or too deep
                        pass
                    else:
                        if (
                            len(line) == len(body) + member_len
                            and (body.isascii() or not _supplementary(body))
                            and plain(item.values())
                            and sha(prefix + body).hexdigest() == claimed
                        ):
                            expected += 1
                            head = claimed
                            continue
                    item = loads(line)  # as it was, for the general path
            self.seq, self.head, self.lines = expected - 1, head, number
            failure = self.item(item, line, number)
            if failure:
                return failure
            expected, head = self.seq + 1, self.head
        self.seq, self.head, self.lines = expected - 1, head, number
        return None

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


def _plain(values: Iterable[object]) -> bool:
    """True if these JSON values (as orjson.loads builds them) hold no float at any depth.

    Integers are bounded separately (OPT_STRICT_INTEGER), keys are always str, so this
    completes the audit-domain check for a parsed record. Exact-type tests in the order of
    frequency: it runs on every value of every record.
    """
    for value in values:
        kind = type(value)
        if kind is str or value is None or kind is int or kind is bool:
            continue
        if kind is dict:
            if not _plain(value.values()):  # type: ignore[attr-defined]
                return False
        elif kind is list:
            if not _plain(value):  # type: ignore[arg-type]
                return False
        else:
            return False
    return True


def _supplementary(body: bytes) -> bool:
    """Whether UTF-8 `body` holds a character beyond U+FFFF (single-byte finds are memchr)."""
    return any(lead in body for lead in _SUPPLEMENTARY_LEADS)
