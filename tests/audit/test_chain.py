import random
from dataclasses import fields

import orjson
import pytest

from audit.chain import (
    GENESIS_HASH,
    AuditEvent,
    SealTemplate,
    UnsafeValue,
    canonical,
    canonical_reference,
    record_hash,
    seal,
)

ALPHABET = 'abcXYZ09 "\\/\x00\x01\x1b\x7f\u0085\u2028\u202eé漢😀\t\n\r'


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 20)))


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randint(0, 6 if depth < 3 else 3)
    if kind == 0:
        return _random_text(rng)
    if kind == 1:
        return rng.randint(-(2**53) + 1, 2**53 - 1)
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.randint(-5, 5)
    if kind in (4, 5):
        return {f"k{rng.randint(0, 99)}_{i}": _random_value(rng, depth + 1) for i in range(3)}
    return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def test_fast_canonical_form_equals_rfc8785_reference() -> None:
    rng = random.Random(8785)
    for _ in range(2000):
        value = {"details": _random_value(rng), "reason": _random_text(rng), "seq": 1}
        assert canonical(value) == canonical_reference(value)


def test_non_ascii_keys_use_the_reference_order() -> None:
    value = {"é": 1, "z": 2, "\U0001f600": 3, "ｚ": 4}
    assert canonical(value) == canonical_reference(value)


@pytest.mark.parametrize("bad", [1.5, 2**53, -(2**53), {1: "x"}, b"bytes"])
def test_values_outside_the_domain_are_refused(bad: object) -> None:
    with pytest.raises(UnsafeValue):
        canonical({"details": bad})


def test_seal_links_records_and_hash_covers_everything_but_itself() -> None:
    first = seal(AuditEvent(type="policy.loaded"), seq=1, time="t", prev_hash=GENESIS_HASH)
    second = seal(
        AuditEvent(type="access.requested", username="alice", reason="INC-1 x"),
        seq=2,
        time="t",
        prev_hash=first["hash"],
    )
    assert second["prev_hash"] == first["hash"]
    assert record_hash(second) == second["hash"]
    tampered = dict(second, reason="INC-2 x")
    assert record_hash(tampered) != second["hash"]
    assert set(first) == {
        "seq",
        "time",
        "type",
        "username",
        "login",
        "hostname",
        "request_id",
        "reason",
        "details",
        "prev_hash",
        "hash",
    }


def test_hash_matches_spec_definition_written_out() -> None:
    import hashlib
    import json

    record = seal(
        AuditEvent(type="x", details={"b": 1, "a": [True, None]}),
        seq=1,
        time="t",
        prev_hash=GENESIS_HASH,
    )
    body = {k: v for k, v in record.items() if k != "hash"}
    jcs = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert record["hash"] == hashlib.sha256(b"even-audit-v1:" + jcs.encode()).hexdigest()


def test_fast_path_refuses_exactly_what_check_domain_refuses() -> None:
    # canonical() decides the domain with an exact-type fast walk; it must agree with the
    # reference walk everywhere, including values hidden under non-ASCII keys and in tuples.
    from audit.chain import check_domain

    rng = random.Random(53)
    odd = [1.5, 2**53, -(2**53), (1, "a"), {"é": 0.0}, ["x", {"k": [None, 1e300]}]]
    for _ in range(3000):
        value = {"é" if rng.random() < 0.3 else "k": _random_value(rng)}
        if rng.random() < 0.3:
            value["details"] = {"\u00e9x": [rng.choice(odd)]}
        try:
            check_domain(value)
        except UnsafeValue:
            with pytest.raises(UnsafeValue):
                canonical(value)
        else:
            assert canonical(value) == canonical_reference(value)


# --- SealTemplate: canonicalised ahead, sealed under the lock ---------------------------------


def _random_event(rng: random.Random) -> AuditEvent:
    def text() -> str | None:
        return rng.choice([None, _random_text(rng)])

    return AuditEvent(
        type=rng.choice(["access.granted", "access.requested", _random_text(rng)]),
        username=text(),
        login=text(),
        hostname=text(),
        request_id=text(),
        reason=text(),
        details={_random_text(rng): _random_value(rng) for _ in range(rng.randint(0, 5))},
    )


def test_a_seal_template_seals_exactly_as_seal_does() -> None:
    rng = random.Random(27)
    for _ in range(2000):
        event = _random_event(rng)
        seq = rng.choice([1, 2, 10**6, 2**53 - 1])
        time = f"2026-11-27T01:02:{rng.randint(0, 59):02d}.{rng.randint(0, 999_999):06d}Z"
        prev = rng.choice([GENESIS_HASH, f"{rng.getrandbits(256):064x}"])
        expected = seal(event, seq=seq, time=time, prev_hash=prev)
        template = SealTemplate(event)
        assert template.seal(seq=seq, time=time, prev_hash=prev) == expected
        assert expected["hash"] == record_hash(expected)
        assert orjson.loads(template.details_json) == expected["details"]


@pytest.mark.parametrize(
    ("seq", "time", "prev"),
    [
        (0, "T", GENESIS_HASH),
        (2**53, "T", GENESIS_HASH),
        (True, "T", GENESIS_HASH),
        (1, 'T","type":"forged', GENESIS_HASH),
        (1, "T\\", GENESIS_HASH),
        (1, "T", "0" * 63),
        (1, "T", '0" * 62 + "\\"'),
    ],
)
def test_a_seal_template_refuses_what_would_change_its_shape(seq, time, prev) -> None:
    with pytest.raises(UnsafeValue):
        SealTemplate(AuditEvent(type="t")).seal(seq=seq, time=time, prev_hash=prev)


def test_a_seal_template_refuses_values_outside_the_domain_at_once() -> None:
    with pytest.raises(UnsafeValue):
        SealTemplate(AuditEvent(type="t", details={"x": 1.5}))


def test_a_seal_template_keeps_every_field_of_its_event() -> None:
    # SealTemplate copies the event field by field (not dataclasses.replace): a field added to
    # AuditEvent must be added there too, or this fails.
    event = AuditEvent(
        type="t", username="u", login="l", hostname="h", request_id="r", reason="why",
        details={"k": [1, "v"]},
    )  # fmt: skip
    kept = SealTemplate(event).event
    assert kept == event
    assert kept.details is not event.details  # a copy: the caller's dict may change later
    assert [f.name for f in fields(AuditEvent)] == [
        "type", "username", "login", "hostname", "request_id", "reason", "details",
    ]  # fmt: skip
