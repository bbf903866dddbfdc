"""The verifier's fast path decides exactly as its general path does (audit.verify, SPEC §8).

`_Verifier.feed` verifies a line that is already the canonical form of a plain record without
the general machinery (`_Verifier.item`). These tests give both paths the same files, from
tricky but valid records to lines crafted against the shortcut (hashes computed over the file's
own bytes, floats that print like integers, repeated members, escapes, key orders that only
JCS's UTF-16 order decides) and require the same verdict: VALID or INVALID, seq and reason.
The general path alone is had by giving the fast path a member list no record matches and
nothing else.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
import rfc8785
from auditlog_cases import new_signer

from audit import verify
from audit.chain import (
    GENESIS_HASH,
    HASH_PREFIX,
    MAX_SAFE_INT,
    UnsafeValue,
    canonical,
    canonical_reference,
    check_domain,
)
from audit.checkpoint import key_ring, make_checkpoint
from audit.verify import Invalid, Valid, verify_jsonl

SIGNER = new_signer()
KEYS = key_ring([SIGNER.public_key])

# Characters with special rules somewhere: JSON escapes, control characters (short and \u00xx
# forms), DEL, NEL, line/paragraph separators, bidi, BOM, non-ASCII in and beyond the BMP
# (U+FF5A sorts after U+1F600 by code point but before it in UTF-16), "/" (escapable).
ALPHABET = 'aZ09 /\\"\x00\x01\x08\t\n\x0c\r\x1f\x7f\x85\u2028\u2029\u202e\ufeffé漢ｚ😀\U0010ffff'
KEY_ALPHABET = "abcXYZ_-.é漢ｚ😀"
EDGE_INTS = [0, -1, 1, MAX_SAFE_INT, -MAX_SAFE_INT, 10**15, 2**31, -(2**31) - 1]


# Most generated records stay within the BMP, where the fast path applies; the rest bring
# characters beyond it, which send a line to the general path.
BMP = "".join(ch for ch in ALPHABET if ord(ch) <= 0xFFFF)
BMP_KEYS = "".join(ch for ch in KEY_ALPHABET if ord(ch) <= 0xFFFF)


def _text(rng: random.Random, alphabet: str = ALPHABET, most: int = 12) -> str:
    if alphabet in (ALPHABET, KEY_ALPHABET) and rng.random() < 0.97:
        alphabet = BMP if alphabet == ALPHABET else BMP_KEYS
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, most)))


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randint(0, 6 if depth < 3 else 3)
    if kind == 0:
        return _text(rng)
    if kind == 1:
        return rng.choice([*EDGE_INTS, rng.randint(-MAX_SAFE_INT, MAX_SAFE_INT)])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.randint(-5, 5)
    if kind in (4, 5):
        return {
            _text(rng, KEY_ALPHABET, 6): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))
        }
    return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def _record(rng: random.Random, seq: int) -> dict[str, Any]:
    def maybe() -> str | None:
        return rng.choice([None, _text(rng)])

    return {
        "seq": seq,
        "time": f"2026-03-01T09:00:{seq % 60:02d}Z",
        "type": rng.choice(["access.granted", "access.requested", "keys.updated"]),
        "username": maybe(),
        "login": maybe(),
        "hostname": maybe(),
        "request_id": maybe(),
        "reason": maybe(),
        "details": {_text(rng, KEY_ALPHABET, 8): _value(rng) for _ in range(rng.randint(0, 6))},
        "prev_hash": GENESIS_HASH,
    }


# --- what a line in the file can look like -----------------------------------------------------


def _canonical_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(HASH_PREFIX + rfc8785.dumps(body)).hexdigest()


def _compact(obj: Any, *, sort: bool = True) -> bytes:
    """orjson's compact form, or json's where orjson refuses (integers past 64 bits)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS if sort else 0)
    except orjson.JSONEncodeError:
        return json.dumps(obj, ensure_ascii=False, sort_keys=sort, separators=(",", ":")).encode()


def _orjson_hash(body: dict[str, Any]) -> str:
    # What a forger gets from orjson: right in the domain without supplementary characters,
    # and accepting floats and big integers.
    return hashlib.sha256(HASH_PREFIX + _compact(body)).hexdigest()


def _spaced(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True).encode()


def _ascii_escaped(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode()


def _unsorted(obj: dict[str, Any]) -> bytes:
    return _compact(dict(reversed(list(obj.items()))), sort=False)


def _orjson_line(obj: dict[str, Any]) -> bytes:
    return _compact(obj)


def _reference_line(obj: dict[str, Any]) -> bytes:
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError:
        return _compact(obj)


def _escaped_slash(obj: dict[str, Any]) -> bytes:
    # "/" only occurs inside strings, and "\/" is another spelling of it: same value, longer.
    return _orjson_line(obj).replace(b"/", b"\\/")


def _repeated_member(obj: dict[str, Any]) -> bytes:
    # orjson keeps the last value of a repeated name at the place of the first, so this
    # parses to the same record with its members still in canonical order.
    return b'{"details":{"what":"another parser shows"},' + _orjson_line(obj)[1:]


def _repeated_nested_member(obj: dict[str, Any]) -> bytes:
    details = {"x": "what the verifier checks", **obj["details"]}
    line = _orjson_line({**obj, "details": details})
    return line.replace(b'{"details":{', b'{"details":{"x":"what another parser shows",', 1)


def _crlf(obj: dict[str, Any]) -> bytes:
    return _orjson_line(obj) + b"\r"


# Half the lines are written canonically (as Even exports them), for the fast path to take.
RENDERINGS: list[Callable[[dict[str, Any]], bytes]] = [
    *[_orjson_line] * 7,
    _reference_line,
    _spaced,
    _ascii_escaped,
    _unsorted,
    _escaped_slash,
    _repeated_member,
    _repeated_nested_member,
    _crlf,
]


PLACEHOLDER = "f" * 64


def _self_hashed_line(obj: dict[str, Any], render: Callable[[dict[str, Any]], bytes]) -> bytes:
    """`render`'s line for `obj`, claiming the hash of its own bytes minus its hash member.

    What a forger writes to pass a verifier that trusted the file's bytes: the member stays
    where the rendering puts it (for canonical renderings, where the fast path expects it).
    """
    line = render({**obj, "hash": PLACEHOLDER})
    p = PLACEHOLDER.encode()
    for member in (b'"hash":"%s",' % p, b'"hash": "%s", ' % p, b',"hash":"%s"' % p):
        if member in line:
            claimed = hashlib.sha256(HASH_PREFIX + line.replace(member, b"", 1)).hexdigest()
            return line.replace(p, claimed.encode())
    raise AssertionError(line)


def _claimed(line: bytes) -> str:
    return str(orjson.loads(line)["hash"])


def _unsafe(rng: random.Random, record: dict[str, Any]) -> None:
    """Put a value outside the audit domain somewhere the shortcut might miss it."""
    bad = rng.choice([1.0, 1e3, -0.0, 0.5, 1e16, 2**53, -(2**53), 2**63, 2**64 - 1])
    where = rng.randint(0, 3)
    if where == 0:
        record["details"][_text(rng, KEY_ALPHABET, 4)] = bad
    elif where == 1:
        record["details"]["nested"] = {"list": [1, {"x": bad}]}
    elif where == 2:
        record["reason"] = bad
    else:
        record["details"]["list"] = ["a", bad]


def _chain_file(rng: random.Random, n: int) -> tuple[list[bytes], list[str]]:
    """n records, some hostile or oddly written, chained by their claimed hashes, signed."""
    lines: list[bytes] = []
    notes: list[str] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        record = _record(rng, seq)
        record["prev_hash"] = prev
        hostile = rng.random() < 0.25
        if hostile:
            _unsafe(rng, record)
        render = rng.choice(RENDERINGS)
        how = rng.choice(["canonical", "orjson", "raw"]) if hostile or rng.random() < 0.2 else ""
        if how == "raw":
            line = _self_hashed_line(record, render)
            claimed = _claimed(line)
        else:
            try:
                claimed = _orjson_hash(record) if how == "orjson" else _canonical_hash(record)
            except rfc8785.CanonicalizationError:
                claimed = _orjson_hash(record)
            line = render({**record, "hash": claimed})
        notes.append(f"{seq}: {render.__name__} {how or 'canonical'} hostile={hostile}")
        lines.append(line)
        prev = claimed
        if seq % 4 == 0 or seq == n:
            cp = make_checkpoint(SIGNER, origin="https://even.test", size=seq, head=prev, time="T")
            lines.append(canonical(cp))
    return lines, notes


# --- both paths ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_path() -> str:
    """Which fast path runs: Python's (the C scan is gone: no fuzzing run covered it)."""
    return "python"


@contextmanager
def general_path_only() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(verify, "_PLAIN_MEMBERS", ("no record has exactly this member",))
        yield


def both_paths(data: bytes, *, chunk: int = 1 << 20, keys: Any = KEYS) -> tuple[Any, Any]:
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    fast = verify_jsonl(chunks, keys)
    with general_path_only():
        general = verify_jsonl(chunks, keys)
    return fast, general


class _Count:
    """How many lines reach the general path (`_Verifier.item`)."""

    def __init__(self, patch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = verify._Verifier.item

        def counting(verifier: verify._Verifier, *args: Any) -> Invalid | None:
            self.calls += 1
            return original(verifier, *args)

        patch.setattr(verify._Verifier, "item", counting)


def test_generated_files_get_the_same_verdict_on_both_paths(monkeypatch) -> None:
    rng = random.Random(20260301)
    verdicts = {"valid": 0, "invalid": 0}
    count = _Count(monkeypatch)
    fast_in_valid_files = 0
    for round_ in range(400):
        lines, notes = _chain_file(rng, rng.randint(1, 6))
        data = b"".join(line + b"\n" for line in lines)
        # Small chunks now and then: lines split across reads must not matter.
        count.calls = 0
        fast, general = both_paths(data, chunk=rng.choice([1 << 20, 7, 64]))
        assert fast == general, (round_, notes, fast, general)
        verdicts["valid" if isinstance(fast, Valid) else "invalid"] += 1
        if isinstance(fast, Valid):  # every line was read once by each run
            fast_in_valid_files += 2 * len(lines) - count.calls
    # Both outcomes are well represented and the fast path really accepted records, so the
    # two paths were really compared.
    assert verdicts["valid"] > 60 and verdicts["invalid"] > 60, verdicts
    assert fast_in_valid_files > 150, fast_in_valid_files


def test_a_canonical_export_takes_the_fast_path(audit_log, monkeypatch, fast_path) -> None:
    count = _Count(monkeypatch)
    data = b"".join(line + b"\n" for line in audit_log.lines)
    fast, general = both_paths(data, keys=key_ring([audit_log.signer.public_key]))
    assert isinstance(fast, Valid) and fast == general
    checkpoints = len(audit_log.checkpoints)
    # The general path sees each line once more in `both_paths`; in the fast run only the
    # checkpoints reach it, and in Python's the records holding a character beyond U+FFFF
    # (the 😀 reason; the C scan orders no such key, so it takes them in values).
    beyond_bmp = sum(1 for r in audit_log.records if "😀" in json.dumps(r, ensure_ascii=False))
    assert count.calls == (checkpoints + beyond_bmp) + len(audit_log.lines)


# --- hostile lines, one by one ------------------------------------------------------------------


def _one_record_file(line_for: Callable[[dict[str, Any]], tuple[bytes, str]]) -> bytes:
    """Record 1 as `line_for` writes it, and a checkpoint over the hash it claims.

    The record itself is one the fast path takes when written canonically (tricky characters,
    all within the BMP), so each test below is about what its change does to that.
    """
    record = {
        "seq": 1,
        "time": "2026-03-01T09:00:00Z",
        "type": "access.granted",
        "username": "alice",
        "login": "deploy",
        "hostname": "web-1.prod",
        "request_id": None,
        "reason": 'quote " backslash \\ tab\t nel\x85 ls\u2028 bidi\u202e é 漢 a/b \x00\x1f\x7f',
        "details": {"serial": 7, "principals": ["deploy"], "é": {"ｚ": [True, None, -1]}},
        "prev_hash": GENESIS_HASH,
    }
    line, claimed = line_for(record)
    cp = make_checkpoint(SIGNER, origin="https://even.test", size=1, head=claimed, time="T")
    return line + b"\n" + canonical(cp) + b"\n"


def _self_hashed(
    record: dict[str, Any], render: Callable[[dict[str, Any]], bytes] = _orjson_line
) -> tuple[bytes, str]:
    line = _self_hashed_line(record, render)
    return line, _claimed(line)


def test_the_record_below_takes_the_fast_path_when_canonical(monkeypatch) -> None:
    def line_for(record: dict[str, Any]) -> tuple[bytes, str]:
        claimed = _canonical_hash(record)
        return _reference_line({**record, "hash": claimed}), claimed

    data = _one_record_file(line_for)
    count = _Count(monkeypatch)
    assert isinstance(verify_jsonl([data], KEYS), Valid)
    assert count.calls == 1  # the checkpoint only


@pytest.mark.parametrize(
    ("name", "change", "reason"),
    [
        ("float that prints as 1.0", lambda r: r["details"].update(serial=1.0), "audit domain"),
        ("exponent float", lambda r: r["details"].update(serial=1e3), "audit domain"),
        ("float in a list", lambda r: r["details"].update(principals=[0.5]), "audit domain"),
        ("integer 2^53", lambda r: r["details"].update(serial=2**53), "audit domain"),
        ("integer -2^53", lambda r: r["details"].update(serial=-(2**53)), "audit domain"),
        ("integer past 64 bits", lambda r: r["details"].update(serial=2**64), "audit domain"),
    ],
)
def test_values_outside_the_domain_are_refused_even_when_self_hashed(name, change, reason) -> None:
    def line_for(record: dict[str, Any]) -> tuple[bytes, str]:
        change(record)
        return _self_hashed(record)

    fast, general = both_paths(_one_record_file(line_for))
    assert fast == general
    assert isinstance(fast, Invalid) and fast.seq == 1 and reason in fast.reason, (name, fast)


@pytest.mark.parametrize("repeat", [_repeated_member, _repeated_nested_member])
def test_a_repeated_member_is_refused_though_the_hash_matches_the_parsed_record(repeat) -> None:
    def line_for(record: dict[str, Any]) -> tuple[bytes, str]:
        parsed = orjson.loads(repeat(record))  # what the verifier's parser makes of it
        claimed = _canonical_hash(parsed)
        return repeat({**record, "hash": claimed}), claimed

    fast, general = both_paths(_one_record_file(line_for))
    assert fast == general
    assert isinstance(fast, Invalid) and "appears twice" in fast.reason, fast


def test_a_boolean_seq_is_not_seq_1() -> None:
    def line_for(record: dict[str, Any]) -> tuple[bytes, str]:
        record["seq"] = True  # == 1 in Python
        claimed = _canonical_hash(record)
        return _orjson_line({**record, "hash": claimed}), claimed

    fast, general = both_paths(_one_record_file(line_for))
    assert fast == general == Invalid(1, "a record without an integer seq stands here")


@pytest.mark.parametrize("spelling", [_escaped_slash, _spaced, _ascii_escaped, _unsorted, _crlf])
def test_other_spellings_verify_by_their_canonical_form_not_their_bytes(spelling) -> None:
    def canonical_hash(record: dict[str, Any]) -> tuple[bytes, str]:
        claimed = _canonical_hash(record)
        return spelling({**record, "hash": claimed}), claimed

    def bytes_hash(record: dict[str, Any]) -> tuple[bytes, str]:
        return _self_hashed(record, spelling)

    for line_for, valid in ((canonical_hash, True), (bytes_hash, False)):
        fast, general = both_paths(_one_record_file(line_for))
        assert fast == general
        assert isinstance(fast, Valid) is valid, (spelling.__name__, fast)


def test_keys_beyond_the_bmp_are_ordered_as_jcs_says() -> None:
    # By code point (orjson) "ｚ" < "😀"; by UTF-16 code unit (JCS) "😀" (D83D DE00) < "ｚ".
    details = {"ｚ": 1, "😀": 2}
    assert orjson.dumps(details, option=orjson.OPT_SORT_KEYS) != rfc8785.dumps(details)

    def line_for(hasher: Callable[[dict[str, Any]], str]) -> Callable[..., tuple[bytes, str]]:
        def make(record: dict[str, Any]) -> tuple[bytes, str]:
            record["details"] = dict(details)
            claimed = hasher(record)
            return _orjson_line({**record, "hash": claimed}), claimed

        return make

    for hasher, valid in ((_canonical_hash, True), (_orjson_hash, False)):
        fast, general = both_paths(_one_record_file(line_for(hasher)))
        assert fast == general and isinstance(fast, Valid) is valid


# --- the facts the fast path rests on ------------------------------------------------------------


def test_orjson_sorted_keys_is_jcs_for_the_domain_within_the_bmp() -> None:
    rng = random.Random(8785)
    for _ in range(2000):
        value = {_text(rng, BMP + BMP_KEYS, 6): _value(rng) for _ in range(5)}
        text = json.dumps(value, ensure_ascii=False)
        if any(ord(ch) > 0xFFFF for ch in text):
            continue
        assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == canonical_reference(value)


def test_strict_integer_is_the_domain_bound() -> None:
    option = orjson.OPT_STRICT_INTEGER
    for ok in (MAX_SAFE_INT, -MAX_SAFE_INT):
        assert orjson.dumps(ok, option=option) == str(ok).encode()
    for bad in (MAX_SAFE_INT + 1, -MAX_SAFE_INT - 1, 2**63, 2**64 - 1):
        with pytest.raises(orjson.JSONEncodeError):
            orjson.dumps(bad, option=option)


def test_plain_and_strict_integer_accept_exactly_what_check_domain_accepts() -> None:
    rng = random.Random(53)
    numbers = [b"1.0", b"1e3", b"-0.0", b"0.5", b"9007199254740992", b"-9007199254740992"]
    numbers += [b"18446744073709551616", b"9007199254740991", b"-1", b"0"]
    for _ in range(3000):
        raw = orjson.dumps({"v": _value(rng)})
        if rng.random() < 0.5:  # splice in a number token orjson may read as float or int
            raw = raw[:-1] + b',"n":[' + rng.choice(numbers) + b"]}"
        parsed = orjson.loads(raw)
        try:
            check_domain(parsed)
        except UnsafeValue:
            in_domain = False
        else:
            in_domain = True
        try:
            orjson.dumps(parsed, option=orjson.OPT_STRICT_INTEGER)
        except orjson.JSONEncodeError:
            fast_ok = False
        else:
            fast_ok = verify._plain(parsed.values())
        assert fast_ok == in_domain, raw
