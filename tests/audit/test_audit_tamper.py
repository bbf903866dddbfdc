"""Tampering with a real export fails verification, naming the right seq (SPEC §8).

The log (45 records, checkpoints after 10, 20, 30, 40 and 45) is appended through
`audit.store` to SQLite and exported through `audit.export`; see auditlog_cases.py for how
each variant is made.
"""

from __future__ import annotations

from typing import Any

import pytest
from auditlog_cases import BuiltLog, TamperCase

from audit.checkpoint import key_ring, parse_checkpoint, parse_receipt
from audit.verify import Invalid, Valid, Verdict, verify_jsonl


def verdict(case: TamperCase, log: BuiltLog, chunk: int = 1 << 20) -> Verdict:
    data = b"".join(line + b"\n" for line in case.lines)
    return verify_jsonl(
        (data[i : i + chunk] for i in range(0, len(data), chunk)),
        key_ring([log.signer.public_key]),
        receipts=[parse_receipt(r) for r in case.receipts],
        checkpoints=[parse_checkpoint(c, line=False) for c in case.saved_checkpoints],
    )


def assert_invalid(cases: dict[str, TamperCase], log: BuiltLog, name: str, seq: int) -> None:
    case = cases[name]
    result = verdict(case, log)
    assert isinstance(result, Invalid), (name, result)
    assert result.seq == seq == case.seq, (name, result)
    assert case.fragment in result.reason, (name, result)


@pytest.fixture
def check(audit_cases: dict[str, TamperCase], audit_log: BuiltLog) -> Any:
    return lambda name, seq: assert_invalid(audit_cases, audit_log, name, seq)


def test_the_untouched_export_verifies(audit_cases, audit_log) -> None:
    result = verdict(audit_cases["valid"], audit_log)
    assert result == Valid(45, 5, audit_log.records[-1]["hash"])
    assert str(result) == f"VALID: 45 records, 5 checkpoints, head {audit_log.records[-1]['hash']}"


def test_reserialising_whitespace_key_order_and_escapes_still_verifies(
    audit_cases, audit_log
) -> None:
    case = audit_cases["reserialised"]
    assert case.lines != audit_cases["valid"].lines
    assert verdict(case, audit_log) == verdict(audit_cases["valid"], audit_log)


def test_any_chunking_of_the_file_gives_the_same_verdict(audit_cases, audit_log) -> None:
    for name in ("valid", "edited_field", "not_json_line"):
        results = {verdict(audit_cases[name], audit_log, chunk) for chunk in (1, 7, 64, 4096)}
        assert results == {verdict(audit_cases[name], audit_log)}, name


def test_edited_field(check) -> None:
    check("edited_field", 23)


def test_edited_record_with_all_later_hashes_recomputed_is_caught_by_a_checkpoint(check) -> None:
    check("edited_and_rehashed", 30)


def test_deleted_record(check) -> None:
    check("deleted_record", 23)


def test_inserted_forged_record(check) -> None:
    check("inserted_forged_record", 23)


def test_inserted_forged_record_with_later_records_renumbered(check) -> None:
    check("inserted_and_renumbered", 30)


def test_two_records_swapped(check) -> None:
    check("swapped_records", 23)


def test_tail_cut_behind_the_last_checkpoint_is_caught_only_by_an_anchor(
    check, audit_cases, audit_log
) -> None:
    assert verdict(audit_cases["cut_at_checkpoint"], audit_log) == Valid(
        40, 4, audit_log.records[39]["hash"]
    )
    check("cut_at_checkpoint_with_saved_checkpoint", 45)
    check("cut_at_checkpoint_with_receipt", 43)


def test_tail_cut_with_the_trailing_checkpoints_removed_too(check) -> None:
    check("cut_with_trailing_checkpoints", 41)


def test_checkpoint_signature_replaced(check) -> None:
    check("checkpoint_signature_replaced", 30)


def test_checkpoint_signed_by_an_unknown_key(check) -> None:
    check("checkpoint_by_unknown_key", 30)


def test_a_file_with_no_checkpoint(check) -> None:
    check("no_checkpoint", 1)


def test_a_receipt_whose_record_was_removed(check, audit_cases, audit_log) -> None:
    check("receipt_record_removed", 23)
    # Removed by whoever holds the audit key (renumbered, re-hashed, checkpoints re-signed):
    # the file is self-consistent, and only the receipt shows what is gone.
    assert isinstance(verdict(audit_cases["rewritten_by_key_holder"], audit_log), Valid)
    check("receipt_record_removed_and_resigned", 23)


def test_float_values_are_outside_the_audit_domain_even_if_signed(check) -> None:
    check("float_value", 12)


def test_a_line_that_is_not_json_names_the_seq_after_the_last_good_record(check) -> None:
    check("not_json_line", 17)


def test_a_repeated_member_name_is_refused(check) -> None:
    check("repeated_member", 8)


def test_an_empty_file(check) -> None:
    check("empty_file", 1)
