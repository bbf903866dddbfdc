"""`even-audit verify` and the verifier's rules beyond the tamper catalogue (SPEC §8)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from auditlog_cases import (
    BuiltLog,
    TamperCase,
    dump,
    index_of,
    items,
    new_signer,
    rechain,
    resign,
    write,
    write_json_lines,
)
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from sqlalchemy import create_engine

from audit import store
from audit.chain import AuditEvent, record_hash
from audit.checkpoint import key_ring, make_checkpoint
from audit.cli import main
from audit.verify import (
    Invalid,
    LineTooLong,
    Valid,
    split_lines,
    verify_items,
    verify_jsonl,
)


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def verify_lines(lines: list[bytes], log: BuiltLog) -> Any:
    return verify_jsonl(
        [b"".join(line + b"\n" for line in lines)], key_ring([log.signer.public_key])
    )


# --- the command -------------------------------------------------------------------------------


def test_cli_valid_with_pem_or_ssh_key(audit_log, audit_key_pem, audit_key_ssh, tmp_path) -> None:
    log = write(tmp_path / "log.jsonl", audit_log.lines)
    head = audit_log.records[-1]["hash"]
    for key in (audit_key_pem, audit_key_ssh):
        code, out, _ = run("verify", log, "--public-key", key)
        assert (code, out) == (0, f"VALID: 45 records, 5 checkpoints, head {head}\n")


def test_cli_invalid_exits_1_naming_the_record(audit_cases, audit_key_pem, tmp_path) -> None:
    log = write(tmp_path / "log.jsonl", audit_cases["deleted_record"].lines)
    code, out, _ = run("verify", log, "--public-key", audit_key_pem)
    assert code == 1
    assert out.startswith("INVALID: record 23: ")


def test_cli_reads_anchors_as_json_lines_or_one_pretty_document(
    audit_log, audit_key_pem, tmp_path
) -> None:
    log = write(tmp_path / "log.jsonl", audit_log.lines[: index_of(audit_log.lines, 40) + 2])
    receipts = write_json_lines(tmp_path / "receipts.jsonl", [audit_log.receipt(s) for s in (3, 9)])
    saved = tmp_path / "checkpoint.json"
    saved.write_text(json.dumps(audit_log.checkpoints[45], indent=2), encoding="utf-8")
    args = ["verify", log, "--public-key", audit_key_pem, "--receipt", receipts]
    assert run(*args)[0] == 0
    code, out, _ = run(*args, "--checkpoint", saved)
    assert (code, out.split(":")[:2]) == (1, ["INVALID", " record 45"])


def test_cli_a_receipt_with_a_bad_signature_is_invalid_at_its_seq(
    audit_log, audit_key_pem, tmp_path
) -> None:
    log = write(tmp_path / "log.jsonl", audit_log.lines)
    forged = {**audit_log.receipt(5), "hash": audit_log.records[5]["hash"]}
    receipts = write_json_lines(tmp_path / "r.jsonl", [audit_log.receipt(4), forged])
    code, out, _ = run("verify", log, "--public-key", audit_key_pem, "--receipt", receipts)
    assert code == 1
    assert out.startswith("INVALID: record 5: receipt signature does not verify")


@pytest.mark.parametrize(
    "problem",
    ["missing_file", "no_key", "missing_key", "bad_key", "rsa_key", "bad_receipt", "not_receipt"],
)
def test_cli_usage_and_io_errors_exit_2(problem, audit_log, audit_key_pem, tmp_path) -> None:
    log = write(tmp_path / "log.jsonl", audit_log.lines)
    bad = tmp_path / "bad"
    args: list[str | Path] = ["verify", log, "--public-key", audit_key_pem]
    if problem == "missing_file":
        args[1] = tmp_path / "nope.jsonl"
    elif problem == "no_key":
        args = ["verify", log]
    elif problem == "missing_key":
        args[3] = tmp_path / "nope.pem"
    elif problem in ("bad_key", "rsa_key"):
        bad.write_text("ssh-rsa AAAAB3NzaC1yc2E= x\n" if problem == "rsa_key" else "key?\n")
        args[3] = bad
    else:
        bad.write_text("{not json\n" if problem == "bad_receipt" else '{"seq": 1}\n')
        args += ["--receipt", bad]
    code, out, err = run(*args)
    assert code == 2, (out, err)
    assert out == ""
    assert "Traceback" not in err


def test_cli_show_escapes_control_and_bidi_characters(audit_log, tmp_path) -> None:
    log = write(tmp_path / "log.jsonl", audit_log.lines)
    code, out, _ = run("show", log, "--username", "alice")
    assert code == 0
    assert "\\u2028" in out and "\\x85" in out and "\\u202e" in out and "\\x1b[31m" in out
    assert not any(ch in out for ch in "\u2028\u0085\u202e\x1b\r")
    assert "café 漢字 😀" in out


def test_cli_export_from_the_database_verifies(audit_log, audit_key_pem, tmp_path) -> None:
    out = tmp_path / "export.jsonl"
    code, _, err = run("export", "--database", f"sqlite:///{audit_log.db_path}", "-o", out)
    assert code == 0 and "NOT audited" in err
    assert out.read_bytes() == b"".join(line + b"\n" for line in audit_log.lines)
    assert run("verify", out, "--public-key", audit_key_pem)[0] == 0


def test_cli_export_stops_at_the_latest_stored_checkpoint(audit_log, tmp_path) -> None:
    db = tmp_path / "copy.db"
    db.write_bytes(audit_log.db_path.read_bytes())
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        store.append(conn, AuditEvent(type="keys.updated", username="carol"), datetime.now(UTC))
    engine.dispose()
    out = tmp_path / "export.jsonl"
    code, _, err = run("export", "--database", f"sqlite:///{db}", "-o", out)
    assert code == 0 and "records 46..46 are newer than the latest checkpoint" in err
    assert out.read_bytes().count(b"\n") == len(audit_log.lines)


def test_cli_export_without_any_checkpoint_exports_all_and_says_so(tmp_path) -> None:
    db = tmp_path / "bare.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        store.metadata.create_all(conn)
        store.append(conn, AuditEvent(type="policy.loaded"), datetime.now(UTC))
    engine.dispose()
    code, out, err = run("export", "--database", f"sqlite:///{db}")
    assert code == 0 and out.count("\n") == 1
    assert "no checkpoint stored yet" in err


def test_cli_export_of_a_missing_database_exits_2(tmp_path) -> None:
    code, _, err = run("export", "--database", f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 2 and "export failed" in err


# --- rules ---------------------------------------------------------------------------------------


def test_the_log_holds_line_separators_that_splitlines_would_break_on(audit_log) -> None:
    data = b"".join(line + b"\n" for line in audit_log.lines)
    assert len(data.decode().splitlines()) > len(audit_log.lines)
    assert list(split_lines([data])) == audit_log.lines


def test_parsed_items_verify_the_same_way(audit_log) -> None:
    parsed = [json.loads(line) for line in audit_log.lines]
    result = verify_items(parsed, key_ring([audit_log.signer.public_key]))
    assert result == Valid(45, 5, audit_log.records[-1]["hash"])
    assert isinstance(verify_items([*parsed[:-1], 7], key_ring([])), Invalid)


def test_rotated_audit_keys_need_every_key_in_use(audit_log, tmp_path) -> None:
    new = new_signer()
    rotated = resign(items(audit_log.lines), new, from_size=30)  # checkpoints 30.. by the new key
    lines = [dump(obj) for obj in rotated]
    both = key_ring([audit_log.signer.public_key, new.public_key])
    data = [b"".join(line + b"\n" for line in lines)]
    assert isinstance(verify_jsonl(data, both), Valid)
    only_new = verify_jsonl(data, key_ring([new.public_key]))
    assert isinstance(only_new, Invalid) and only_new.seq == 10
    only_old = verify_jsonl(data, key_ring([audit_log.signer.public_key]))
    assert isinstance(only_old, Invalid) and only_old.seq == 30
    assert "unknown key" in only_old.reason


def test_one_key_file_may_hold_both_rotated_keys(audit_log, tmp_path) -> None:
    new = new_signer()
    rotated = resign(items(audit_log.lines), new, from_size=45)
    log = write(tmp_path / "log.jsonl", [dump(obj) for obj in rotated])
    keys = tmp_path / "keys"
    keys.write_bytes(
        audit_log.signer.public_pem()
        + new.public_key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b"\n"
    )
    assert run("verify", log, "--public-key", keys)[0] == 0


def _edited(audit_log: BuiltLog, seq: int, change: Any) -> list[bytes]:
    """Record `seq` changed, the chain recomputed and checkpoints re-signed by the real key."""
    objs = items(audit_log.lines)
    change(objs[index_of(audit_log.lines, seq)])
    return [dump(obj) for obj in resign(rechain(objs), audit_log.signer)]


@pytest.mark.parametrize(
    ("seq", "change", "reason"),
    [
        (6, lambda r: r.pop("login"), "missing member(s): login"),
        (6, lambda r: r["details"].update(big=2**53), "outside the audit domain"),
        (6, lambda r: r.update(seq=True), "without an integer seq"),
        (6, lambda r: r.update(seq=-1), "seq -1 stands where seq 6 belongs"),
    ],
)
def test_records_must_have_the_spec_shape_even_when_signed(
    audit_log, seq: int, change: Any, reason: str
) -> None:
    lines = _edited(audit_log, seq, change)
    result = verify_lines(lines, audit_log)
    assert isinstance(result, Invalid)
    assert (result.seq, reason in result.reason) == (seq, True), result


def test_record_1_links_to_64_zeros(audit_log) -> None:
    objs = items(audit_log.lines)
    objs[0]["prev_hash"] = "1" * 64
    objs[0]["hash"] = record_hash(objs[0])
    result = verify_lines([dump(obj) for obj in objs], audit_log)
    assert result == Invalid(1, "prev_hash of record 1 is not 64 zeros")


def test_an_unsigned_member_in_a_checkpoint_line_is_refused(audit_log) -> None:
    lines = list(audit_log.lines)
    i = index_of(lines, 20) + 1
    lines[i] = dump({**orjson.loads(lines[i]), "note": "trust me"})
    result = verify_lines(lines, audit_log)
    assert isinstance(result, Invalid) and result.seq == 20
    assert "malformed checkpoint" in result.reason


def test_a_checkpoint_moved_before_its_record_names_its_size(audit_log) -> None:
    lines = list(audit_log.lines)
    i = index_of(lines, 20)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    result = verify_lines(lines, audit_log)
    assert result == Invalid(20, "checkpoint for record 20 stands after record 19")


def test_blank_lines_are_skipped_and_a_non_object_line_is_invalid(audit_log) -> None:
    lines = list(audit_log.lines)
    assert isinstance(verify_lines([b"", *lines[:5], b"  \r", *lines[5:]], audit_log), Valid)
    result = verify_lines([*lines[:3], b"[1, 2]", *lines[3:]], audit_log)
    assert result == Invalid(4, "line 4 is not a JSON object")


def test_an_over_long_line_is_refused_without_buffering_it() -> None:
    def endless() -> Any:
        while True:
            yield b"x" * 1000

    with pytest.raises(LineTooLong):
        list(split_lines(endless(), max_line=10_000))
    assert list(split_lines([b"a\nb", b"c\n", b"\n", b"d"])) == [b"a", b"bc", b"", b"d"]


def test_a_checkpoint_for_another_origin_still_names_the_record(audit_log) -> None:
    # origin is signed, not interpreted: the signature and position are what is checked.
    lines = list(audit_log.lines)
    i = index_of(lines, 10) + 1
    cp = orjson.loads(lines[i])
    lines[i] = dump(
        make_checkpoint(
            audit_log.signer, origin="https://other", size=10, head=cp["head"], time=cp["time"]
        )
    )
    assert isinstance(verify_lines(lines, audit_log), Valid)


def test_cases_catalogue_is_complete(audit_cases: dict[str, TamperCase]) -> None:
    assert {
        "edited_field",
        "edited_and_rehashed",
        "deleted_record",
        "inserted_forged_record",
        "swapped_records",
        "cut_at_checkpoint_with_saved_checkpoint",
        "cut_with_trailing_checkpoints",
        "checkpoint_signature_replaced",
        "no_checkpoint",
        "receipt_record_removed",
    } <= set(audit_cases)
