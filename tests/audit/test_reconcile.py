"""`even-audit reconcile` on the real sshd log captured in fixtures/ (SPEC §14).

Each test builds a signed export whose grants do or do not explain the captured logins, runs
the command, and reads its JSON Lines (or its table). The end-to-end run against a live Even
and sshd is tests/integration/test_reconcile_e2e.py.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from reconcile_cases import (
    AUTH_LOG,
    CERT_KEY_ID,
    CERT_REQUEST,
    FACTS,
    HOST,
    LOG_END,
    cert_grant,
    journal_entry,
    push_grant,
    revoked,
    write_export,
)

from audit.cli import main

T0 = "2026-12-06T15:25:00Z"
LOGIN_LINES = [line for line in AUTH_LOG.read_text().splitlines() if "Accepted " in line]
CERT_LINE = next(line for line in LOGIN_LINES if "ssh2: ED25519-CERT" in line)
KEY_LINE = next(line for line in LOGIN_LINES if "ssh2: ED25519 SHA256" in line)
PASSWORD_LINE = next(line for line in LOGIN_LINES if "Accepted password" in line)


def reconcile(export, logs: list[Path], *extra: str) -> tuple[int, list[dict]]:
    args = ["reconcile", str(export.path), "--public-key", str(export.key)]
    for log in logs:
        args += ["--sshd-log", str(log)]
    result = CliRunner().invoke(main, [*args, "--log-end", LOG_END, "-o", "json", *extra])
    objects = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return result.exit_code, objects


def logins(objects: list[dict]) -> list[tuple[str, str, str | None]]:
    return [(o["user"], o["method"], o["class"]) for o in objects if o["kind"] == "login"]


def unused(objects: list[dict]) -> list[str]:
    return [o["request_id"] for o in objects if o["kind"] == "grant"]


def write_log(tmp_path: Path, lines: list[str], name: str = "auth.log") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_captured_log_certificate_explained_static_key_and_password_not(tmp_path: Path) -> None:
    export = write_export(
        tmp_path, [(T0, cert_grant()), (T0, cert_grant("01JNEVERUSED00000000000001", serial=9))]
    )
    code, objects = reconcile(export, [AUTH_LOG])
    # Three Accepted logins; the failures, `Accepted key/certificate …` steps, an invalid
    # user and the certificate for another host are not logins.
    assert logins(objects) == [
        ("piutest", "publickey", "explained"),
        ("piutest", "publickey", "unexplained"),
        ("recon-pw", "password", "unexplained"),
    ]
    explained = objects[0]
    assert explained["key_id"] == CERT_KEY_ID and explained["serial"] == 7
    assert explained["ca_fingerprint"] == FACTS["ca_fingerprint"]
    assert explained["fingerprint"] == FACTS["user_fingerprint"]
    assert explained["host"] == HOST and explained["source"] == "127.0.0.1"
    assert explained["grant"]["request_id"] == CERT_REQUEST
    assert explained["time"] == "2026-12-06T15:31:48Z"
    assert objects[1]["reason"] == "key not granted by Even (a static key?)"
    assert unused(objects) == ["01JNEVERUSED00000000000001"]
    summary = objects[-1]
    assert summary["kind"] == "summary" and summary["lines"] == 38
    assert summary["logins"] == {
        "explained": 1,
        "unexplained": 2,
        "outside_window": 0,
        "wrong_host": 0,
    }
    assert code == 1


def test_push_mode_login_is_explained_by_its_key_fingerprint(tmp_path: Path) -> None:
    export = write_export(tmp_path, [(T0, cert_grant()), (T0, push_grant())])
    log = write_log(tmp_path, [CERT_LINE, KEY_LINE])
    code, objects = reconcile(export, [log])
    assert logins(objects) == [
        ("piutest", "publickey", "explained"),
        ("piutest", "publickey", "explained"),
    ]
    assert objects[1]["grant"]["mode"] == "push"
    assert unused(objects) == []
    assert code == 0


def test_only_explained_logins_exit_0_any_other_exits_1(tmp_path: Path) -> None:
    export = write_export(tmp_path, [(T0, cert_grant()), (T0, push_grant())])
    assert reconcile(export, [write_log(tmp_path, [CERT_LINE])])[0] == 0
    assert reconcile(export, [write_log(tmp_path, [CERT_LINE, PASSWORD_LINE], "b.log")])[0] == 1


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ([(T0, cert_grant(window=("2026-12-06T15:40:00Z", "2026-12-06T16:40:00Z")))], "before"),
        ([(T0, cert_grant(window=("2026-12-06T14:00:00Z", "2026-12-06T15:31:48Z")))], "valid_bef"),
        ([(T0, cert_grant()), ("2026-12-06T15:30:00Z", revoked(CERT_REQUEST))], "revoked"),
        # Revoked in the same second as the login: the stamp cannot tell, so it is flagged.
        ([(T0, cert_grant()), ("2026-12-06T15:31:48Z", revoked(CERT_REQUEST))], "revoked"),
    ],
)
def test_outside_window(tmp_path: Path, events: list, reason: str) -> None:
    export = write_export(tmp_path, events)
    code, objects = reconcile(export, [write_log(tmp_path, [CERT_LINE])])
    assert logins(objects) == [("piutest", "publickey", "outside_window")]
    assert reason in objects[0]["reason"] and code == 1
    assert unused(objects) == []  # used, even if not within its window


def test_revoked_after_the_login_is_still_explained(tmp_path: Path) -> None:
    export = write_export(
        tmp_path, [(T0, cert_grant()), ("2026-12-06T15:31:49Z", revoked(CERT_REQUEST))]
    )
    assert logins(reconcile(export, [write_log(tmp_path, [CERT_LINE])])[1])[0][2] == "explained"


def test_wrong_host_for_certificates_and_pushed_keys(tmp_path: Path) -> None:
    export = write_export(
        tmp_path,
        [
            (T0, cert_grant(hostname="web-2.prod.even.test")),
            (T0, push_grant(hosts=("web-2.prod.even.test",))),
        ],
    )
    code, objects = reconcile(export, [write_log(tmp_path, [CERT_LINE, KEY_LINE])])
    assert [c for _, _, c in logins(objects)] == ["wrong_host", "wrong_host"]
    assert code == 1


def test_short_host_name_and_host_option(tmp_path: Path) -> None:
    export = write_export(tmp_path, [(T0, cert_grant())])
    short = CERT_LINE.replace(f" {HOST} ", " web-1 ")
    assert logins(reconcile(export, [write_log(tmp_path, [short])])[1])[0][2] == "explained"
    hostless = CERT_LINE.replace(f" {HOST} ", " ")
    log = write_log(tmp_path, [hostless], "hostless.log")
    code, objects = reconcile(export, [log], "--host", HOST)
    assert logins(objects)[0][2] == "explained" and objects[0]["host"] == HOST
    assert code == 0
    _code, objects = reconcile(export, [log], "--host", "db-1.prod.even.test")
    assert logins(objects)[0][2] == "wrong_host"
    assert reconcile(export, [log])[0] == 2  # no host anywhere: cannot check, usage error


def test_another_ca_and_unknown_serial_are_unexplained(tmp_path: Path) -> None:
    export = write_export(tmp_path, [(T0, cert_grant(ca_fingerprint="SHA256:" + "B" * 43))])
    code, objects = reconcile(export, [write_log(tmp_path, [CERT_LINE])])
    assert objects[0]["class"] == "unexplained" and "another CA" in objects[0]["reason"]
    export = write_export(tmp_path, [(T0, cert_grant(serial=8))], "other.jsonl")
    code, objects = reconcile(export, [write_log(tmp_path, [CERT_LINE])])
    assert objects[0]["reason"] == "no grant with this key ID and serial" and code == 1


def test_journal_json_and_gzip_read_the_same_logins(tmp_path: Path) -> None:
    export = write_export(tmp_path, [(T0, cert_grant())])
    lines = AUTH_LOG.read_text().splitlines()
    journal = write_log(tmp_path, [journal_entry(line) for line in lines], "journal.json")
    packed = tmp_path / "auth.log.1"  # compressed, without a .gz name: found by magic bytes
    packed.write_bytes(gzip.compress(AUTH_LOG.read_bytes()))
    packed_journal = tmp_path / "journal.json.gz"
    packed_journal.write_bytes(gzip.compress(journal.read_bytes()))
    expected = [
        ("piutest", "publickey", "explained"),
        ("piutest", "publickey", "unexplained"),
        ("recon-pw", "password", "unexplained"),
    ]
    for log in (journal, packed, packed_journal):
        code, objects = reconcile(export, [log])
        assert logins(objects) == expected and code == 1, log
    _code, objects = reconcile(export, [journal])
    assert objects[0]["time"] == "2026-12-06T15:31:48.123456Z"


def test_rfc5424_and_rfc3339_stamps(tmp_path: Path) -> None:
    export = write_export(tmp_path, [(T0, cert_grant())])
    message = CERT_LINE.split("]: ", 1)[1]
    lines = [
        f"<38>1 2026-12-06T15:31:48.5Z {HOST} sshd 23407 - - {message}",
        f'<38>1 2026-12-06T15:31:48.5Z {HOST} sshd 23407 - [o x="a\\]b"][m y="1"] {message}',
        f"2026-12-06T16:31:48.250+01:00 {HOST} sshd[23407]: {message}",
    ]
    code, objects = reconcile(export, [write_log(tmp_path, lines)])
    assert [o["class"] for o in objects if o["kind"] == "login"] == ["explained"] * 3, objects
    assert [o["time"] for o in objects[:3]] == [
        "2026-12-06T15:31:48.500000Z",
        "2026-12-06T15:31:48.500000Z",
        "2026-12-06T15:31:48.250000Z",
    ]
    assert code == 0


def test_rfc3164_year_is_inferred_from_the_log_end(tmp_path: Path) -> None:
    # Captured on 6 December 2026; read as if the file were written up to January 2027.
    export = write_export(tmp_path, [(T0, cert_grant())])
    log = write_log(tmp_path, [CERT_LINE])
    code, objects = reconcile(export, [log], "--log-end", "2027-01-03T00:00:00Z")
    assert objects[0]["time"].startswith("2026-12-06") and code == 0
    code, objects = reconcile(export, [log], "--log-end", "2027-12-30T00:00:00Z")
    assert objects[0]["time"].startswith("2027-12-06") and objects[0]["class"] == "outside_window"


def test_other_programs_and_unreadable_sshd_lines(tmp_path: Path) -> None:
    export = write_export(tmp_path, [(T0, cert_grant())])
    forged = CERT_LINE.replace("sshd[", "myapp[")
    broken = CERT_LINE.split(" ssh2:")[0].replace(" port ", " prt ")
    unframed = "garbage " + CERT_LINE
    lines = [forged, CERT_LINE, broken, unframed]
    code, objects = reconcile(export, [write_log(tmp_path, lines)])
    assert [o["class"] for o in objects if o["kind"] == "login"] == [
        "explained",
        "unexplained",
        "unexplained",
    ]
    assert "message not understood" in objects[1]["reason"] and objects[1]["line"] == 3
    assert "line not understood" in objects[2]["reason"] and objects[2]["line"] == 4
    assert code == 1


def test_key_id_with_spaces_and_decoy_serial(tmp_path: Path) -> None:
    from audit.reconcile.sshd_log import parse_accepted

    tail = "CA ED25519 SHA256:ca"
    accepted = parse_accepted(
        "Accepted publickey for u from 10.0.0.1 port 22 ssh2: ED25519-CERT SHA256:fp "
        f"ID a (serial 1) {tail} b (serial 2) {tail}"
    )
    assert accepted is not None
    assert (accepted.key_id, accepted.serial) == (f"a (serial 1) {tail} b", 2)
    old = parse_accepted(
        "Accepted publickey for u from ::1 port 22 ssh2: RSA-CERT ID x (serial 3) CA RSA MD5:ab"
    )
    assert old is not None and old.fingerprint is None and old.key_id == "x"
    assert parse_accepted("Accepted key ED25519 SHA256:x found at /f:1") is None
    assert parse_accepted("Failed publickey for u from ::1 port 2 ssh2: ED25519 SHA256:x") is None


def test_table_escapes_controls_and_bidi(tmp_path: Path) -> None:
    export = write_export(tmp_path, [(T0, cert_grant())])
    evil = CERT_LINE.replace(CERT_KEY_ID, "even:\x1b[31mred\u202e:x")
    args = ["reconcile", str(export.path), "--public-key", str(export.key), "--log-end", LOG_END]
    result = CliRunner().invoke(main, [*args, "--sshd-log", str(write_log(tmp_path, [evil]))])
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert "even:\\x1b[31mred\\u202e:x#7" in result.output
    assert "1 logins in 1 lines of 1 file(s): 0 explained, 1 unexplained" in result.output
    assert result.exit_code == 1


def test_tampered_export_and_missing_files_exit_2(tmp_path: Path) -> None:
    export = write_export(tmp_path, [(T0, cert_grant())])
    log = write_log(tmp_path, [CERT_LINE])
    export.path.write_text(export.path.read_text().replace('"serial":7', '"serial":8'))
    run = [sys.executable, "-m", "audit.cli", "reconcile", str(export.path)]
    tampered = subprocess.run(
        [*run, "--public-key", str(export.key), "--sshd-log", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tampered.returncode == 2, tampered.stderr
    assert "INVALID: record 2" in tampered.stderr and tampered.stdout == ""
    fresh = write_export(tmp_path, [(T0, cert_grant())], "fresh.jsonl")
    missing = tmp_path / "nope.log"
    assert reconcile(fresh, [missing])[0] == 2
    corrupt = tmp_path / "bad.gz"
    corrupt.write_bytes(gzip.compress(AUTH_LOG.read_bytes())[:200])
    assert reconcile(fresh, [corrupt])[0] == 2


def test_bastion_certificate_is_explained_on_the_bastion_as_the_requester(
    tmp_path: Path,
) -> None:
    grant = cert_grant()
    grant.details.update({"bastion": "jump-1.even.test", "bastion_serial": 8})
    export = write_export(tmp_path, [(T0, grant)])
    hop = (
        CERT_LINE.replace(f" {HOST} ", " jump-1 ")
        .replace("for piutest ", "for alice ")
        .replace(f"ID {CERT_KEY_ID} (serial 7)", f"ID {CERT_KEY_ID}:bastion (serial 8)")
    )
    code, objects = reconcile(export, [write_log(tmp_path, [hop, CERT_LINE])])
    assert [o["class"] for o in objects if o["kind"] == "login"] == ["explained", "explained"]
    assert objects[0]["grant"]["request_id"] == objects[1]["grant"]["request_id"] == CERT_REQUEST
    assert code == 0
    as_target_login = hop.replace("for alice ", "for piutest ")
    code, objects = reconcile(export, [write_log(tmp_path, [as_target_login], "b.log")])
    assert objects[0]["class"] == "unexplained" and code == 1


def test_rfc3164_years_across_new_year_and_29_february() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from audit.reconcile.sshd_log import frame_syslog

    def year(line: str, reference: str) -> int:
        framed = frame_syslog(line, datetime.fromisoformat(reference), UTC)
        assert framed is not None
        return datetime.fromtimestamp(framed.time, UTC).year

    line = "Dec 31 23:59:59 h sshd[1]: x"
    assert year(line, "2027-01-02T00:00:00+00:00") == 2026
    assert year(line, "2026-12-31T00:00:00+00:00") == 2026  # within the one-day leeway
    assert year("Jan  1 00:00:01 h sshd[1]: x", "2027-01-02T00:00:00+00:00") == 2027
    assert year("Feb 29 12:00:00 h sshd[1]: x", "2027-06-01T00:00:00+00:00") == 2024
    zoned = frame_syslog(
        "Jul  1 12:00:00 h sshd[1]: x",
        datetime.fromisoformat("2026-12-01T00:00:00+00:00"),
        ZoneInfo("Europe/Paris"),
    )
    assert zoned is not None
    assert datetime.fromtimestamp(zoned.time, UTC).hour == 10  # CEST is UTC+2


def test_reconcile_imports_neither_even_nor_piu() -> None:
    code = (
        "import sys, audit.cli, audit.reconcile.run\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('even', 'piu')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_sshd_log_takes_a_glob_and_needs_at_least_one_file(tmp_path: Path) -> None:
    export = write_export(tmp_path, [(T0, cert_grant()), (T0, push_grant())])
    first, second = write_log(tmp_path, [CERT_LINE], "a.log"), write_log(tmp_path, [KEY_LINE])
    args = ["reconcile", str(export.path), "--public-key", str(export.key), "-o", "json"]
    # As a shell expands `--sshd-log /var/log/auth.log*`: the first file after the option,
    # the others after it.
    globbed = [*args, "--log-end", LOG_END, "--sshd-log", str(first), str(second)]
    result = CliRunner().invoke(main, globbed)
    summary = json.loads(result.output.splitlines()[-1])
    assert summary["files"] == 2 and summary["logins"]["explained"] == 2
    assert result.exit_code == 0
    assert CliRunner().invoke(main, args).exit_code == 2
