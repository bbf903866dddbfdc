"""The C scan (audit/_native.c) accepts a line only where the general path accepts it.

`scan` either accepts a line as the canonical form of the next plain record or stops there and
leaves the line to Python. The one property that matters is soundness: whatever it accepts,
`_Verifier.item` (the general path, written from SPEC §8) accepts too, leaving the same seq and
head. These tests feed it canonical lines, then lines mutated byte by byte and re-hashed over
their own bytes (what a forger who knows the hash rule writes), and every prefix of a line, and
check that property on each; they also check that it really accepts the canonical lines Even
writes, so a scan that refused everything could not pass.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import orjson
import pytest
from auditlog_cases import new_signer

from audit import verify
from audit.chain import GENESIS_HASH, HASH_PREFIX, MAX_SAFE_INT, AuditEvent, seal
from audit.checkpoint import key_ring

native = verify._native
pytestmark = pytest.mark.skipif(native is None, reason="audit/_native.c was not built")

KEYS = key_ring([new_signer().public_key])
NO_STOP = 2**63 - 1
HASH_MEMBER = b'"hash":"'

# Bytes that change what a JSON line means or whether it is canonical.
INTERESTING = [
    *b'"\\{}[],:0129-.eEu /tfn',
    0x00,
    0x08,
    0x1F,
    0x20,
    0x7F,
    0x80,
    0xBF,
    0xC0,
    0xC2,
    0xE0,
    0xED,
    0xEF,
    0xF0,
    0xF4,
    0xF5,
    0xFF,
]


def _scan_one(line: bytes, seq: int, head: str, stop: int = NO_STOP) -> tuple[bool, int, str]:
    assert native is not None
    index, new_seq, new_head = native.scan([line], 0, seq, head, stop, HASH_PREFIX, hashlib.sha256)
    assert index in (0, 1)
    if index == 0:
        assert (new_seq, new_head) == (seq, head)  # a line not taken changes nothing
    return index == 1, new_seq, new_head


def _general(line: bytes, seq: int, head: str) -> tuple[bool, int, str]:
    verifier = verify._Verifier(KEYS)
    verifier.seq, verifier.head = seq, head
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False, seq, head
    if verifier.item(item, line, 1) is not None:
        return False, seq, head
    return True, verifier.seq, verifier.head


def _record_line(rng: random.Random, seq: int, prev_hash: str) -> bytes:
    texts = ["", "deploy", 'q"b\\s/t\tn\n\x00\x1f\x7f', "é漢ｚ😀\u2028\x85", "a" * 40]
    details: dict[str, Any] = {
        "serial": rng.choice([0, 1, -1, MAX_SAFE_INT, -MAX_SAFE_INT, rng.randint(2, 10**9)]),
        "principals": [rng.choice(texts) for _ in range(rng.randint(0, 3))],
        "nested": {"a": [True, False, None, {"b": rng.choice(texts)}], "z": {}},
        "mode": rng.choice(["certificate", "push", None]),
    }
    if rng.random() < 0.3:
        details = {}
    event = AuditEvent(
        type=rng.choice(["access.granted", "access.requested"]),
        username=rng.choice(["alice", None]),
        login=rng.choice(texts),
        hostname="web-1.prod.example.org",
        request_id=rng.choice([None, "01J000"]),
        reason=rng.choice(texts),
        details=details,
    )
    record = seal(event, seq=seq, time="2026-03-01T09:00:00Z", prev_hash=prev_hash)
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def _rehash_own_bytes(line: bytes) -> bytes:
    """The line with its hash member claiming the hash of the line's other bytes."""
    at = line.find(HASH_MEMBER)
    end = at + len(HASH_MEMBER) + 64
    if at < 0 or line[end : end + 2] != b'",':
        return line
    body = line[:at] + line[end + 2 :]
    claimed = hashlib.sha256(HASH_PREFIX + body).hexdigest().encode()
    return line[: at + len(HASH_MEMBER)] + claimed + line[end:]


def _mutate(rng: random.Random, line: bytes) -> bytes:
    data = bytearray(line)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        at = rng.randrange(len(data) + 1)
        kind = rng.randrange(5)
        byte = rng.choice(INTERESTING) if rng.random() < 0.8 else rng.randrange(256)
        if kind == 0 and at < len(data):
            data[at] = byte
        elif kind == 1:
            data.insert(at, byte)
        elif kind == 2 and at < len(data):
            del data[at]
        elif kind == 3:
            stretch = data[at : at + rng.randint(1, 12)]
            data[at:at] = stretch  # a repeated stretch: repeated members, doubled escapes
        else:
            data[at:at] = rng.choice([b"\\u0041", b"\\u001f", b"\\u001F", b"\\/", b" ", b"1.0"])
    return bytes(data)


def test_canonical_lines_are_accepted_with_the_general_paths_state() -> None:
    rng = random.Random(7)
    head, accepted = GENESIS_HASH, 0
    for seq in range(1, 400):
        line = _record_line(rng, seq, head)
        taken = _scan_one(line, seq - 1, head)
        assert taken == _general(line, seq - 1, head)
        assert taken[0], line
        head = taken[2]
        accepted += 1
    assert accepted == 399


def test_mutated_and_self_hashed_lines_are_never_taken_where_python_refuses() -> None:
    rng = random.Random(20261127)
    taken_mutants = refused = 0
    for _ in range(6000):
        prev = rng.choice([GENESIS_HASH, hashlib.sha256(b"x").hexdigest()])
        seq = rng.choice([0, 1, 41])
        line = _rehash_own_bytes(_mutate(rng, _record_line(rng, seq + 1, prev)))
        native_verdict = _scan_one(line, seq, prev)
        if native_verdict[0]:
            # Soundness: the general path agrees, and ends in the same state.
            assert _general(line, seq, prev) == native_verdict, line
            taken_mutants += 1
        else:
            refused += 1
    # Some mutations keep a line canonical (a changed letter inside a string), most don't:
    # both sides of the property were exercised.
    assert taken_mutants > 300 and refused > 3000, (taken_mutants, refused)


def test_no_prefix_of_a_line_is_taken() -> None:
    line = _record_line(random.Random(3), 1, GENESIS_HASH)
    for cut in range(len(line) - 1):  # (the last cut + "}" is the line itself)
        assert not _scan_one(line[:cut], 0, GENESIS_HASH)[0]
        assert not _scan_one(line[:cut] + b"}", 0, GENESIS_HASH)[0]
    assert _scan_one(line, 0, GENESIS_HASH)[0]


@pytest.mark.parametrize(
    ("name", "seq", "head", "stop"),
    [
        ("another seq follows", 1, GENESIS_HASH, NO_STOP),
        ("prev_hash is not the head", 0, "1" * 64, NO_STOP),
        ("an anchor names this record", 0, GENESIS_HASH, 1),
        ("the head is not a hash", 0, "0" * 63, NO_STOP),
    ],
)
def test_the_chain_state_decides_too(name: str, seq: int, head: str, stop: int) -> None:
    line = _record_line(random.Random(5), 1, GENESIS_HASH)
    assert _scan_one(line, 0, GENESIS_HASH)[0]
    assert not _scan_one(line, seq, head, stop)[0], name


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("a space after a colon", lambda s: s.replace('"seq":', '"seq": ')),
        ("seq as a float", lambda s: s.replace('"seq":1,', '"seq":1.0,')),
        ("seq as -0 style", lambda s: s.replace('"seq":1,', '"seq":01,')),
        ("trailing CR", lambda s: s + "\r"),
        ("escaped slash", lambda s: s.replace("/", "\\/")),
        ("unicode escape of a letter", lambda s: s.replace('"alice"', '"\\u0061lice"')),
    ],
)
def test_non_canonical_spellings_go_to_python(name: str, edit: Any) -> None:
    record = seal(
        AuditEvent(type="access.granted", username="alice", reason="a/b", details={"n": 1}),
        seq=1,
        time="2026-03-01T09:00:00Z",
        prev_hash=GENESIS_HASH,
    )
    line = orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()
    spelled = _rehash_own_bytes(edit(line).encode())
    assert spelled != line.encode(), name
    assert not _scan_one(spelled, 0, GENESIS_HASH)[0], name


def test_an_uppercase_hash_goes_to_python() -> None:
    # hexdigest() writes lowercase, so the general path refuses the same digits in uppercase.
    line = _record_line(random.Random(9), 1, GENESIS_HASH)
    claimed = orjson.loads(line)["hash"]
    shouted = line.replace(claimed.encode(), claimed.upper().encode())
    assert _scan_one(line, 0, GENESIS_HASH)[0]
    assert not _scan_one(shouted, 0, GENESIS_HASH)[0]
    assert not _general(shouted, 0, GENESIS_HASH)[0]


def test_a_batch_stops_at_the_first_line_it_does_not_take() -> None:
    assert native is not None
    rng = random.Random(11)
    lines, head = [], GENESIS_HASH
    for seq in range(1, 6):
        lines.append(_record_line(rng, seq, head))
        head = orjson.loads(lines[-1])["hash"]
    lines.insert(3, b"")  # a blank line is left to Python, which skips it
    index, seq, head3 = native.scan(lines, 0, 0, GENESIS_HASH, NO_STOP, HASH_PREFIX, hashlib.sha256)
    assert (index, seq, head3) == (3, 3, orjson.loads(lines[2])["hash"])
    assert native.scan(lines, 4, seq, head3, NO_STOP, HASH_PREFIX, hashlib.sha256) == (6, 5, head)
    assert native.scan(lines, 4, seq, head3, 5, HASH_PREFIX, hashlib.sha256)[:2] == (5, 4)
    with pytest.raises(ValueError, match="start"):
        native.scan(lines, 7, 0, GENESIS_HASH, NO_STOP, HASH_PREFIX, hashlib.sha256)
