"""The parts of piu on their own: config precedence, token sources, keys, escaping, ssh argv."""

from __future__ import annotations

import ast
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from piu import errors, token
from piu.config import load_settings
from piu.keys import ensure_key_pair
from piu.paths import resolve_paths
from piu.render import escape
from piu.sshcmd import Hop, ssh_argv

# config


def write_config(home: Path, text: str) -> Path:
    path = resolve_paths({"HOME": str(home)}).config_file
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def test_config_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, "even_url: https://file.example\nbastion: odd-file\ncacert: ca.pem\n"
    )
    settings = load_settings(path, {}, {})
    assert settings.even_url == "https://file.example"
    assert settings.cacert == str(path.parent / "ca.pem")  # relative to the file
    env = {"PIU_EVEN_URL": "https://env.example/", "PIU_BASTION": "odd-env"}
    settings = load_settings(path, env, {})
    assert (settings.even_url, settings.bastion) == ("https://env.example", "odd-env")
    settings = load_settings(path, env, {"even_url": "https://flag.example"})
    assert (settings.even_url, settings.bastion) == ("https://flag.example", "odd-env")


def test_config_honours_xdg_config_home(tmp_path: Path) -> None:
    paths = resolve_paths({"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "x")})
    assert paths.config_file == tmp_path / "x" / "piu" / "piu.yaml"
    relative = resolve_paths({"HOME": str(tmp_path), "XDG_STATE_HOME": "rel"})
    assert relative.receipts_file == tmp_path / ".local" / "state" / "piu" / "receipts.jsonl"


@pytest.mark.parametrize(
    "text", ["even-url: https://x.example\n", "even_url: [1]\n", "- a\n", "even_url: 'x\n"]
)
def test_bad_config_is_a_config_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(errors.ConfigError):
        load_settings(write_config(tmp_path, text), {}, {})


def test_http_allowed_for_loopback_only(tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    for url in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:2"):
        assert load_settings(missing, {}, {"even_url": url}).even_url == url
    with pytest.raises(errors.ConfigError, match="unencrypted"):
        load_settings(missing, {}, {"even_url": "http://10.0.0.1"})


# token


def test_token_from_env_is_stripped() -> None:
    assert token.resolve_token({"PIU_TOKEN": " abc.def\n"}) == "abc.def"


def test_token_with_whitespace_inside_is_refused() -> None:
    with pytest.raises(errors.NotAuthenticated):
        token.resolve_token({"PIU_TOKEN": "abc\r\nX-Evil: 1"})


def test_token_command_runs_argv_without_a_shell() -> None:
    # A shell would expand $HOME and run the `;` part; piu passes both literally.
    script = "import sys; print(sys.argv[1] + sys.argv[2])"
    command = f"{sys.executable} -c '{script}' '$HOME' ';touch-nothing'"
    assert token.resolve_token({}, command) == "$HOME;touch-nothing"


def test_token_command_is_split_with_shlex(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []

    def fake_run(argv: Any, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append((argv, kwargs))
        return subprocess.CompletedProcess(argv, 0, stdout=b"tok\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert token.resolve_token({"PIU_TOKEN": "ignored"}, "even dev-token --user 'a b'") == "tok"
    [(argv, kwargs)] = calls
    assert argv == ["even", "dev-token", "--user", "a b"]
    assert not kwargs.get("shell")


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        ("/nonexistent/piu-token", errors.TokenCommandFailed),
        (f"{sys.executable} -c 'raise SystemExit(3)'", errors.TokenCommandFailed),
        (f"{sys.executable} -c 'pass'", errors.TokenCommandFailed),
        ("'unbalanced", errors.UsageProblem),
        ("", errors.UsageProblem),
    ],
)
def test_token_command_failures(command: str, kind: type[errors.PiuError]) -> None:
    with pytest.raises(kind):
        token.resolve_token({}, command)


def test_token_command_failure_exits_3(run: Any) -> None:
    result = run("--token-command", f"{sys.executable} -c 'raise SystemExit(1)'", "whoami")
    assert result.exit_code == 3
    assert "exited with status 1" in result.stderr


# keys


def test_key_pair_made_once_with_private_modes(tmp_path: Path) -> None:
    ssh_dir = tmp_path / ".ssh" / "piu"
    first = ensure_key_pair(ssh_dir)
    assert stat.S_IMODE(ssh_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / ".ssh").stat().st_mode) == 0o700
    assert stat.S_IMODE(first.private_path.stat().st_mode) == 0o600
    assert first.public_line.startswith("ssh-ed25519 ") and first.public_line.endswith(" piu")
    first.public_path.unlink()
    first.private_path.chmod(0o644)
    again = ensure_key_pair(ssh_dir)
    assert again.public_line == first.public_line
    assert first.public_path.read_text().strip() == first.public_line
    assert stat.S_IMODE(first.private_path.stat().st_mode) == 0o600


def test_unusable_existing_key_is_reported_not_replaced(tmp_path: Path) -> None:
    ssh_dir = tmp_path / "piu"
    ssh_dir.mkdir()
    (ssh_dir / "id_ed25519").write_text("not a key")
    with pytest.raises(errors.KeyProblem) as caught:
        ensure_key_pair(ssh_dir)
    assert "move the file away" in caught.value.hint
    assert (ssh_dir / "id_ed25519").read_text() == "not a key"


def test_key_works_with_ssh_keygen(tmp_path: Path) -> None:
    keygen = "/usr/bin/ssh-keygen"
    if not Path(keygen).exists():
        pytest.skip("ssh-keygen not installed")
    pair = ensure_key_pair(tmp_path / "piu")
    derived = subprocess.run(
        [keygen, "-y", "-f", str(pair.private_path)], capture_output=True, text=True, check=True
    )
    assert derived.stdout.split()[:2] == pair.public_line.split()[:2]


# render


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("INC-1 plain", "INC-1 plain"),
        ("\x1b[31mred", r"\x1b[31mred"),
        ("abc\u202edef", r"abc\u202edef"),
        ("a\u2028b\x00c\x7f", r"a\u2028b\x00c\x7f"),
        ("back\\slash", r"back\\slash"),
        ("emoji \U0001f600 ok", "emoji \U0001f600 ok"),
        ("tag \U000e0041", r"tag \U000e0041"),
    ],
)
def test_escape(raw: str, shown: str) -> None:
    assert escape(raw) == shown


# ssh argv


def test_ssh_argv_through_a_bastion(tmp_path: Path) -> None:
    key, cert, bcert = tmp_path / "id", tmp_path / "h-cert.pub", tmp_path / "b-cert.pub"
    argv = ssh_argv(key, Hop("deploy", "db.example.org", cert), Hop("alice", "odd-eu", bcert))
    assert argv[:6] == ["ssh", "-i", str(key), "-o", f"CertificateFile={cert}", "-o"]
    assert argv[-1] == "deploy@db.example.org"
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    assert proxy == (
        f"ProxyCommand=ssh -i {key} -o CertificateFile={bcert} -o IdentitiesOnly=yes"
        " -W %h:%p alice@odd-eu"
    )


def test_ssh_argv_quotes_spaces_and_refuses_percent(tmp_path: Path) -> None:
    spaced = tmp_path / "my home" / "cert"
    argv = ssh_argv(tmp_path / "id", Hop("a", "h.example.org", spaced))
    assert f'CertificateFile="{spaced}"' in argv
    with pytest.raises(errors.LocalFileError):
        ssh_argv(tmp_path / "100%" / "id", Hop("a", "h.example.org", None))


# the dependency rule: piu talks HTTP only


def test_piu_imports_neither_even_nor_audit() -> None:
    package = Path(__file__).resolve().parents[2] / "piu"
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in {"even", "audit", "odd"}, (source, name)
