"""`odd grant-ssh-access` (push mode's forced command), its key parser, its managed files and the
`odd sshd-config --push` lines: exact formats, strict refusals that write nothing, no lost lines
under concurrency.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from odd.authorized_keys import HEADER, parse_line
from odd.cli import main
from odd.config import DEFAULT_KEYS_DIR, OddConfig, parse_config
from odd.errors import ConfigError, InvalidHostname, InvalidLogin, UsageError
from odd.grant import run
from odd.sessions import end_sessions
from odd.sshd_config import push_key_options, render_sshd_config
from odd.sshkey import InvalidKey, parse_public_key

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = "20300102050000Z"  # NOW + ~2 h
ROOT = Path(__file__).resolve().parents[2]


# --- keys -----------------------------------------------------------------------------------


def _openssh(key: object) -> tuple[str, str]:
    line = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    key_type, data = line.split(" ")[:2]
    return key_type, data


ED25519 = _openssh(ed25519.Ed25519PrivateKey.generate().public_key())
RSA_2048 = _openssh(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
RSA_1024 = _openssh(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())
ECDSA = {
    curve.name: _openssh(ec.generate_private_key(curve).public_key())
    for curve in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1())
}


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


def _blob(key: tuple[str, str]) -> bytes:
    return base64.b64decode(key[1])


def key_words(key: tuple[str, str] = ED25519) -> str:
    return f"{key[0]} {key[1]}"


@pytest.mark.parametrize(
    "key", [ED25519, RSA_2048, *ECDSA.values()], ids=["ed25519", "rsa", *ECDSA]
)
def test_allowed_keys_parse_and_round_trip(key: tuple[str, str]) -> None:
    parsed = parse_public_key(*key)
    assert parsed.openssh == key_words(key)
    assert parsed.fingerprint.startswith("SHA256:")
    assert "=" not in parsed.fingerprint


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    path = tmp_path / "k.pub"
    path.write_text(key_words() + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], capture_output=True, text=True)
    assert out.stdout.split()[1] == parse_public_key(*ED25519).fingerprint


def _ed25519_blob(extra: bytes = b"") -> bytes:
    return _string(b"ssh-ed25519") + _string(b"\x01" * 32) + extra


def _ecdsa_with_point(point: bytes) -> tuple[str, str]:
    return "ecdsa-sha2-nistp256", _b64(
        _string(b"ecdsa-sha2-nistp256") + _string(b"nistp256") + _string(point)
    )


@pytest.mark.parametrize(
    ("key_type", "data", "reason"),
    [
        ("ssh-ed25519", _b64(_ed25519_blob(b"\x00")), "trailing"),
        ("ssh-ed25519", _b64(_ed25519_blob()[:-1]), "truncated"),
        ("ssh-ed25519", _b64(_string(b"ssh-ed25519") + _string(b"\x01" * 31)), "32 bytes"),
        ("ssh-ed25519", _b64(_string(b"ssh-ed2551")), "does not match"),
        ("ssh-ed25519", ECDSA["secp256r1"][1], "does not match"),
        ("ssh-rsa", ED25519[1], "does not match"),
        (RSA_1024[0], RSA_1024[1], "at least 2048"),
        ("ssh-dss", _b64(_string(b"ssh-dss") + _string(b"\x01") * 4), "not accepted"),
        ("ssh-ed25519-cert-v01@openssh.com", _b64(_ed25519_blob()), "certificates"),
        (
            "ssh-ed25519",
            _b64(_string(b"ssh-ed25519-cert-v01@openssh.com") + _string(b"n" * 32)),
            "does not match",
        ),
        ("sk-ssh-ed25519@openssh.com", _b64(_ed25519_blob()), "not accepted"),
        ("ssh-ed25519", "", "not base64"),
        ("ssh-ed25519", ED25519[1] + "=", "not base64"),
        ("ssh-ed25519", ED25519[1][:-2] + "Z=", "not canonical"),  # non-zero padding bits
        ("ssh-ed25519", "A" * 5000, "too long"),
        (*_ecdsa_with_point(b"\x04" + b"\x01" * 64), "not a point"),
        (*_ecdsa_with_point(b"\x02" + b"\x01" * 32), "uncompressed"),
        (
            "ecdsa-sha2-nistp256",
            _b64(
                _string(b"ecdsa-sha2-nistp256")
                + _string(b"nistp384")
                + _string(_blob(ECDSA["secp256r1"])[39:])
            ),
            "curve",
        ),
        (
            "ssh-rsa",
            _b64(_string(b"ssh-rsa") + _string(b"\x00\x01\x00\x01") + _string(b"\x01" * 256)),
            "non-canonical",
        ),
        (
            "ssh-rsa",
            _b64(_string(b"ssh-rsa") + _string(b"\x01\x00\x01") + _string(b"\x80" + b"\x01" * 256)),
            "negative",
        ),
    ],
)
def test_bad_keys_are_refused(key_type: str, data: str, reason: str) -> None:
    with pytest.raises(InvalidKey, match=reason):
        parse_public_key(key_type, data)


def test_ecdsa_point_off_by_one_is_refused() -> None:
    blob = bytearray(_blob(ECDSA["secp256r1"]))
    blob[-1] ^= 1  # y + 1 or y - 1: no longer on the curve
    with pytest.raises(InvalidKey, match="not a point"):
        parse_public_key("ecdsa-sha2-nistp256", _b64(bytes(blob)))


# --- the forced command ---------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> OddConfig:
    return OddConfig(keys_dir=tmp_path / "keys", push_user="pusher")


Runner = Callable[..., list[str]]


@pytest.fixture
def odd(config: OddConfig) -> Runner:
    def call(command: str | None, **kwargs: object) -> list[str]:
        chosen = kwargs.pop("config", config)
        options: dict[str, object] = {"environ": {}, "now": NOW, "exists": lambda _login: True}
        options.update(kwargs)
        return run(command, chosen, **options)  # type: ignore[arg-type]

    return call


def grant(
    grant_id: str = "req-1",
    login: str = "alice",
    expires: str = LATER,
    extra: str = "",
    key: str | None = None,
) -> str:
    return (
        f"grant --grant-id {grant_id} --login {login} --expires {expires}{extra} "
        f"--key {key or key_words()}"
    )


def snapshot(directory: Path) -> dict[str, bytes]:
    if not directory.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != ".lock"}


def key_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().split("\n") if line and not line.startswith("#")]


def test_grant_on_a_target_writes_the_exact_line(odd: Runner, config: OddConfig) -> None:
    out = odd(grant(extra=" --from 10.0.0.0/8,2001:db8::/32,192.0.2.7"))
    fingerprint = parse_public_key(*ED25519).fingerprint
    assert out == [
        f"granted req-1 login=alice expires={LATER} role=target "
        f"from=10.0.0.0/8,2001:db8::/32,192.0.2.7/32 key={fingerprint}"
    ]
    path = config.keys_dir / "alice"
    assert path.read_text() == (
        f"{HEADER}\n"
        f'restrict,expiry-time="{LATER}",from="10.0.0.0/8,2001:db8::/32,192.0.2.7/32" '
        f"{key_words()} even:req-1\n"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(config.keys_dir.stat().st_mode) == 0o755
    assert path.stat().st_uid == os.geteuid()


def test_grant_on_a_bastion_only_allows_the_hop(odd: Runner, config: OddConfig) -> None:
    odd(grant(extra=" --jump-to db-1.prod.example.org --jump-to db-2.prod.example.org"))
    odd(grant("req-2", extra=" --jump-to db-1.prod.example.org --from 198.51.100.0/24"))
    assert key_lines(config.keys_dir / "alice") == [
        'restrict,port-forwarding,permitopen="db-1.prod.example.org:22",'
        'permitopen="db-2.prod.example.org:22",command="/usr/sbin/nologin",'
        f'expiry-time="{LATER}" {key_words()} even:req-1',
        'restrict,port-forwarding,permitopen="db-1.prod.example.org:22",'
        f'command="/usr/sbin/nologin",expiry-time="{LATER}",from="198.51.100.0/24" '
        f"{key_words()} even:req-2",
    ]


def test_regrant_replaces_and_other_grants_stay(odd: Runner, config: OddConfig) -> None:
    odd(grant("req-1"))
    odd(grant("req-2", key=key_words(RSA_2048)))
    odd(grant("req-1", expires="20300102060000Z", key=key_words(ECDSA["secp384r1"])))
    lines = key_lines(config.keys_dir / "alice")
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["even:req-2", "even:req-1"]
    assert '"20300102060000Z"' in lines[1]
    assert ECDSA["secp384r1"][1] in lines[1]


def test_revoke_removes_only_that_grant(odd: Runner, config: OddConfig) -> None:
    odd(grant("req-1"))
    odd(grant("req-2"))
    assert odd("revoke --grant-id req-1 --login alice") == ["revoked req-1 login=alice lines=1"]
    assert [line.rsplit(" ", 1)[1] for line in key_lines(config.keys_dir / "alice")] == [
        "even:req-2"
    ]
    # Idempotent: revoking again (Even retries) succeeds and removes nothing.
    assert odd("revoke --grant-id req-1 --login alice") == ["revoked req-1 login=alice lines=0"]
    odd("revoke --grant-id req-2 --login alice --end-sessions")
    assert not (config.keys_dir / "alice").exists()  # an empty file is removed


def test_revoke_end_sessions_of_a_login_without_sessions(odd: Runner) -> None:
    odd(grant())
    assert odd("revoke --grant-id req-1 --login alice --end-sessions") == [
        "revoked req-1 login=alice lines=1 sessions_ended=0"
    ]
    assert end_sessions("no-such-account-here") == 0
    assert end_sessions("nobody", grace=0.1) == 0  # exists, has no sessions


def test_one_syslog_line_per_action_without_key_material(
    odd: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged: list[tuple[int, str]] = []
    monkeypatch.setattr(
        "syslog.syslog", lambda priority, message: logged.append((priority, message))
    )
    odd(grant(), environ={"SSH_CLIENT": "192.0.2.9 50000 22"})
    odd("list")
    odd("revoke --grant-id req-1 --login alice")
    with pytest.raises(UsageError):
        odd(grant(login="alice;id"))
    messages = [message for _priority, message in logged]
    assert len(messages) == 3  # grant, revoke, refusal; list changes nothing
    assert messages[0].startswith("granted req-1 login=alice ")
    assert messages[0].endswith(" via 192.0.2.9")
    assert messages[1] == "revoked req-1 login=alice lines=1"
    assert messages[2] == "refused: character ';' is not allowed"
    assert not any(ED25519[1] in message for message in messages)


def test_list(odd: Runner) -> None:
    assert odd("list") == []
    odd(grant("req-1", "bob"))
    odd(grant("req-2", "alice", extra=" --jump-to db-1.prod.example.org"))
    fingerprint = parse_public_key(*ED25519).fingerprint
    assert odd("list") == [
        f"req-2 alice {LATER} bastion {fingerprint}",
        f"req-1 bob {LATER} target {fingerprint}",
    ]


def test_expired_lines_are_pruned_on_every_write(odd: Runner, config: OddConfig) -> None:
    odd(grant("old", expires="20300102030410Z"))  # NOW + 5 s
    odd(grant("new"), now=NOW + timedelta(seconds=5))  # sshd still accepts "old" this second
    assert len(key_lines(config.keys_dir / "alice")) == 2
    odd(grant("newer"), now=NOW + timedelta(seconds=6))
    assert [line.rsplit(" ", 1)[1] for line in key_lines(config.keys_dir / "alice")] == [
        "even:new",
        "even:newer",
    ]


def test_lines_odd_did_not_write_are_kept(odd: Runner, config: OddConfig) -> None:
    config.keys_dir.mkdir(mode=0o755)
    path = config.keys_dir / "alice"
    own = f"{key_words()} operator@laptop"
    tampered = f'restrict,expiry-time="{LATER}",agent-forwarding {key_words()} even:req-9'
    path.write_text(f"{own}\n{tampered}\n")
    odd(grant("req-1"))
    odd("revoke --grant-id req-9 --login alice")
    lines = key_lines(path)
    assert lines[1:] == [own, tampered]
    assert odd("list") == [f"req-1 alice {LATER} target {parse_public_key(*ED25519).fingerprint}"]


def test_parse_line_accepts_only_what_render_writes() -> None:
    line = f'restrict,expiry-time="{LATER}" {key_words()} even:req-1'
    parsed = parse_line(line)
    assert parsed is not None and parsed.render() == line
    for variant in [
        line.replace("restrict,", ""),
        line.replace("even:", "evan:"),
        line + " ",
        line.replace(f'expiry-time="{LATER}"', 'expiry-time="2030010203Z"'),
        f'restrict,expiry-time="{LATER}",command="/bin/sh" {key_words()} even:req-1',
    ]:
        assert parse_line(variant) is None, variant


TWO_KEYS = f"{key_words()} {key_words()}"


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (None, "no SSH_ORIGINAL_COMMAND"),
        ("", "empty word"),
        ("frobnicate", "unknown command"),
        ("list --all", "takes no arguments"),
        ("list ", "empty word"),
        (" list", "empty word"),
        ("grant  --grant-id x", "empty word"),
        (grant(key=f"restrict {key_words()}"), "unexpected argument"),
        (grant(key=f"restrict,pty {ED25519[1]}"), "not accepted"),
        (grant(key='command="/bin/sh" ' + key_words()), "not allowed"),
        (grant(key=f"no-pty,restrict {key_words()}"), "unexpected argument"),
        (grant(key=TWO_KEYS), "unexpected argument"),
        (grant() + " --key " + key_words(), "given twice"),
        (grant() + "\n" + grant("req-2"), "'\\\\n' is not allowed"),
        (grant() + "\r", "'\\\\r' is not allowed"),
        (grant(login="alice\0"), "'\\\\x00' is not allowed"),
        (grant(login="bob\tx"), "not allowed"),
        (grant(login="alice;id"), "';' is not allowed"),
        (grant(login="$(id)"), "'\\$' is not allowed"),
        (grant(login="a`id`"), "not allowed"),
        (grant(login="a|b"), "not allowed"),
        (grant(login="a&b"), "not allowed"),
        (grant(login="a>b"), "not allowed"),
        (grant(login="a'b"), "not allowed"),
        (grant(login="Alice"), "does not match"),
        (grant(login="-alice"), "needs 1 value"),
        (grant(login="a" * 33), "does not match"),
        (grant(login="al@ce"), "does not match"),
        (grant(login="pusher"), "push user"),
        (grant(login="root"), "'root' is not allowed"),
        (grant("--login"), "needs 1 value"),
        (grant("a" * 65), "grant id"),
        (grant("req_1"), "grant id"),
        (grant(expires="20300102050000"), "YYYYMMDDHHMMSSZ"),
        (grant(expires="2030010205000Z"), "YYYYMMDDHHMMSSZ"),
        (grant(expires="20301302050000Z"), "not a valid date"),
        (grant(expires="20300230050000Z"), "not a valid date"),
        (grant(expires="20300102030405Z"), "not in the future"),
        (grant(expires="20200101000000Z"), "not in the future"),
        (grant(extra=" --from 10.0.0.1/8"), "has host bits set"),
        (grant(extra=" --from 10.0.0.0/33"), "not a network"),
        (grant(extra=" --from 10.0.0.0/8,,192.0.2.0/24"), "not a network"),
        (grant(extra=" --from example.org"), "not a network"),
        (grant(extra=" --jump-to Db-1.example.org"), "lower case"),
        (grant(extra=" --jump-to db-1.example.org."), "dot"),
        (grant(extra=" --jump-to 10.0.0.1"), "IP address"),
        (grant(extra=" --jump-to db_1.example.org"), "letters, digits"),
        (grant(extra=" --end-sessions"), "unexpected argument"),
        ("grant --grant-id x --login alice --key " + key_words(), "--expires is required"),
        (f"grant --grant-id x --login alice --expires {LATER}", "--key is required"),
        (f"grant --grant-id x --login alice --expires {LATER} --key ssh-ed25519", "2 values"),
        ("revoke --grant-id x", "--login is required"),
        ("revoke --grant-id x --login alice --jump-to x.example.org", "unexpected"),
        ("revoke --grant-id x --login alice --end-sessions --end-sessions", "twice"),
        ("revoke --grant-id x --login Alice", "does not match"),
        ("grant " + "x" * 9000, "longer than"),
    ],
)
def test_refusals_exit_2_and_write_nothing(
    odd: Runner, config: OddConfig, command: str | None, reason: str
) -> None:
    odd(grant("existing", "alice"))  # something to not disturb
    before = snapshot(config.keys_dir)
    with pytest.raises(UsageError, match=reason) as caught:
        odd(command)
    assert caught.value.exit_code == 2
    assert snapshot(config.keys_dir) == before
    assert "\n" not in str(caught.value)  # the message is one line, whatever came in


def test_root_only_when_allowed(odd: Runner, config: OddConfig) -> None:
    odd(grant(login="root"), config=config._replace(allow_root_login=True))
    assert (config.keys_dir / "root").exists()
    # Root as the push user is never granted, whatever allow_root_login says.
    as_push_user = config._replace(allow_root_login=True, push_user="root")
    with pytest.raises(UsageError, match="push user"):
        odd(grant(login="root"), config=as_push_user)


def test_default_push_user_and_sudo_caller_are_refused(odd: Runner, config: OddConfig) -> None:
    with pytest.raises(UsageError, match="push user"):
        odd(grant(login="granting-service"), config=config._replace(push_user=None))
    with pytest.raises(UsageError, match="push user"):
        odd(grant(login="deployer"), environ={"SUDO_USER": "deployer"})


def test_unknown_account_is_refused(odd: Runner, config: OddConfig) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        odd(grant(), exists=lambda _login: False)
    assert snapshot(config.keys_dir) == {}


def test_unsafe_keys_dir_is_a_host_failure(odd: Runner, config: OddConfig) -> None:
    config.keys_dir.mkdir()
    config.keys_dir.chmod(0o777)
    try:
        with pytest.raises(Exception, match="writable by no one") as caught:
            odd(grant())
        assert getattr(caught.value, "exit_code", None) == 1
    finally:
        config.keys_dir.chmod(0o755)


def test_concurrent_grants_in_threads_keep_every_line(odd: Runner, config: OddConfig) -> None:
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            odd(grant(f"req-{number}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = {line.rsplit(" ", 1)[1] for line in key_lines(config.keys_dir / "alice")}
    assert ids == {f"even:req-{n}" for n in range(24)}


def test_concurrent_grants_in_processes_keep_every_line(tmp_path: Path) -> None:
    """Separate `odd` processes, as sshd starts them, for a login that exists (nobody)."""
    conf = tmp_path / "odd.conf"
    conf.write_text(f"[odd]\nkeys_dir = {tmp_path / 'keys'}\n")
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y%m%d%H%M%SZ")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "odd", "grant-ssh-access"],
            env={
                **os.environ,
                "ODD_CONFIG": str(conf),
                "SSH_ORIGINAL_COMMAND": grant(f"p-{n}", "nobody", expires),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        for n in range(8)
    ]
    results = [(*p.communicate(timeout=60), p.returncode) for p in processes]
    assert [r[2] for r in results] == [0] * 8, results
    ids = {line.rsplit(" ", 1)[1] for line in key_lines(tmp_path / "keys" / "nobody")}
    assert ids == {f"even:p-{n}" for n in range(8)}


# --- through the CLI: exit codes and streams ------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    conf = tmp_path / "odd.conf"
    conf.write_text(f"[odd]\nkeys_dir = {tmp_path / 'keys'}\n")
    monkeypatch.setenv("ODD_CONFIG", str(conf))
    return tmp_path / "keys"


def _cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str | None
) -> tuple[int, str, str]:
    if command is None:
        monkeypatch.delenv("SSH_ORIGINAL_COMMAND", raising=False)
    else:
        monkeypatch.setenv("SSH_ORIGINAL_COMMAND", command)
    code = main(["grant-ssh-access"])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_grant_list_revoke(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cli_env: Path
) -> None:
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y%m%d%H%M%SZ")
    code, out, err = _cli(capsys, monkeypatch, grant("req-1", "nobody", expires))
    assert (code, err) == (0, "")
    assert out.startswith("granted req-1 login=nobody ")
    code, out, _ = _cli(capsys, monkeypatch, "list")
    assert (code, out.split(" ")[:3]) == (0, ["req-1", "nobody", expires])
    code, out, _ = _cli(capsys, monkeypatch, "revoke --grant-id req-1 --login nobody")
    assert (code, out) == (0, "revoked req-1 login=nobody lines=1\n")


@pytest.mark.parametrize(
    "command",
    [
        None,
        "grant --login nobody;id",
        "grant --grant-id x --login no-such-user-here "
        f"--expires 20991231000000Z --key {key_words()}",
    ],
)
def test_cli_refusal_is_exit_2_on_stderr(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cli_env: Path,
    command: str | None,
) -> None:
    code, out, err = _cli(capsys, monkeypatch, command)
    assert (code, out) == (2, "")
    assert err.startswith("odd: error: ") and err.count("\n") == 1
    assert not cli_env.exists()


def test_cli_host_failure_is_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cli_env: Path
) -> None:
    cli_env.parent.joinpath("keys").write_text("not a directory")
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y%m%d%H%M%SZ")
    code, out, err = _cli(capsys, monkeypatch, grant("req-1", "nobody", expires))
    assert (code, out) == (1, "")
    assert err.startswith("odd: error: ")


# --- odd sshd-config --push -----------------------------------------------------------------


def _comments(text: str) -> list[str]:
    return [line.removeprefix("#").strip() for line in text.splitlines() if line.startswith("#")]


def test_push_key_options() -> None:
    odd = "/usr/local/sbin/odd"
    assert push_key_options("root", odd) == f'restrict,command="{odd} grant-ssh-access"'
    assert push_key_options("granting-service", odd) == (
        f'restrict,command="/usr/bin/sudo -n {odd} grant-ssh-access"'
    )
    assert push_key_options("root", odd, ["db-1.example.org", "db-2.example.org"]) == (
        'restrict,port-forwarding,permitopen="db-1.example.org:22",'
        f'permitopen="db-2.example.org:22",command="{odd} grant-ssh-access"'
    )
    with pytest.raises(InvalidHostname):
        push_key_options("root", odd, ['x",command="/bin/sh'])
    with pytest.raises(InvalidLogin):
        push_key_options("a b", odd)
    with pytest.raises(UsageError):
        push_key_options("root", "/usr/local/sbin/odd grant-ssh-access;sh")


def test_sshd_config_push_with_sudo_user_prints_the_sudoers_lines() -> None:
    text = render_sshd_config(
        "bastion.example.org", push_user="granting-service", bastion_for=["db-1.example.org"]
    )
    comments = _comments(text)
    assert 'Defaults!/usr/local/sbin/odd env_keep += "SSH_ORIGINAL_COMMAND"' in comments
    assert "granting-service ALL=(root) NOPASSWD: /usr/local/sbin/odd grant-ssh-access" in comments
    assert (
        'restrict,port-forwarding,permitopen="db-1.example.org:22",'
        'command="/usr/bin/sudo -n /usr/local/sbin/odd grant-ssh-access" '
        "<TYPE BASE64 of Even's push key>"
    ) in comments
    directives = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert "AuthorizedKeysFile /etc/ssh/even_authorized_keys/%u" in directives
    assert {"PasswordAuthentication no", "KbdInteractiveAuthentication no", "LogLevel VERBOSE"} <= (
        set(directives)
    )
    assert directives[-4:] == [
        "Match User granting-service",
        "    AuthorizedKeysFile /etc/ssh/even_push_keys",
        "    TrustedUserCAKeys none",
        "    SetEnv SHLVL=1",
    ]


def test_sshd_config_push_as_root() -> None:
    text = render_sshd_config("db-1.example.org", push_user="root")
    comments = _comments(text)
    assert (
        'restrict,command="/usr/local/sbin/odd grant-ssh-access" <TYPE BASE64 of Even\'s push key>'
        in comments
    )
    assert not any("sudo" in line for line in comments)
    assert text.splitlines()[-1] == "    PermitRootLogin forced-commands-only"


def test_cli_sshd_config_push_options(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sshd-config", "--hostname", "bastion.example.org", "--push"]
    assert main([*argv, "--bastion-for", "db-1.example.org", "--odd-command", "/opt/odd"]) == 0
    assert 'permitopen="db-1.example.org:22",command="/usr/bin/sudo -n /opt/odd' in (
        capsys.readouterr().out
    )
    # With --push the hosts are written into permitopen, which takes exact names only.
    assert main([*argv, "--bastion-for", "*.example.org"]) == 2
    assert "hostname" in capsys.readouterr().err


# --- /etc/odd.conf keys for push mode ------------------------------------------------------


def test_config_push_keys() -> None:
    assert parse_config("[odd]\n") == OddConfig(
        push_user=None, allow_root_login=False, keys_dir=DEFAULT_KEYS_DIR
    )
    parsed = parse_config(
        "[odd]\npush_user = root\nallow_root_login = yes\nkeys_dir = /srv/even/keys\n"
    )
    assert parsed == OddConfig(
        push_user="root", allow_root_login=True, keys_dir=Path("/srv/even/keys")
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[odd]\nallow_root_login = maybe\n", "allow_root_login"),
        ("[odd]\nkeys_dir = relative/keys\n", "absolute"),
        ("[odd]\nkeys_dir = /etc/ssh/keys # comment\n", "absolute"),
        ("[odd]\npush_user = Root\n", "does not match"),
    ],
)
def test_config_push_keys_are_validated(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)
