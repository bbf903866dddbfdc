"""piu.held and piu.fastconfig, the cheap tier of `piu ssh` with a held grant, held to the
general path: whenever they answer, it is the general path's answer (held_grant, load_settings,
json, yaml, shlex, pathlib); they answer in the common cases; they never answer with an
expired, foreign or edited certificate; and they import no heavy module."""

from __future__ import annotations

import ast
import json
import os
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from piu_fakes import REQUEST_ID, Piu

import piu
from piu import errors, fastconfig, held
from piu.config import check_value
from piu.keys import ensure_key_pair
from piu.launch import held_grant
from piu.runtime import Runtime

HOST = "db-1.prod.example.org"


def answers(target: str = HOST, now: float | None = None) -> tuple[object, object]:
    """(piu.held's answer, the general path's answer): (id, valid_before, argv), None for no
    grant, or the general path's error class name."""
    now = time.time() if now is None else now
    env = dict(os.environ)
    fast = held.lookup(env, target, now)
    general_answer: object = None
    try:
        general = held_grant(Runtime(env=env, clock=lambda: now), target, None)
    except errors.PiuError as exc:
        general_answer = type(exc).__name__
    else:
        if general is not None:
            general_answer = (general[0].id, general[0].valid_before, general[1])
    fast_answer = None if fast is None else (fast.id, fast.valid_before, fast.argv)
    return fast_answer, general_answer


def assert_agrees(target: str = HOST, now: float | None = None) -> object:
    fast, general = answers(target, now)
    assert fast is None or fast == general
    return fast


@pytest.fixture
def granted(run: Piu) -> Piu:
    assert run("ssh", HOST, "-r", "INC-1 debug").exit_code == 0
    return run


def test_answers_as_the_general_path_for_a_held_grant(granted: Piu) -> None:
    fast, general = answers()
    assert fast is not None
    assert fast == general
    assert fast[0] == REQUEST_ID  # type: ignore[index]


def test_answers_for_a_login_and_through_a_bastion(run: Piu) -> None:
    assert run("ssh", f"deploy@{HOST}", "-O", "odd-eu", "-r", "INC-1 debug").exit_code == 0
    fast = assert_agrees(f"deploy@{HOST}")
    assert fast is not None
    argv = fast[2]  # type: ignore[index]
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    assert proxy.endswith("-W %h:%p alice@odd-eu")
    assert assert_agrees(HOST) is None  # no grant for alice@HOST
    assert assert_agrees("other@" + HOST) is None


@pytest.mark.parametrize(
    ("text", "fast_answers"),
    [
        ("even_url: https://even.example.com\nbastion: odd-eu\n", True),
        ("# piu\n\nclient_id: piu-cli\nscope: openid offline_access profile\n", True),
        ("cacert: ca.pem\nissuer: http://127.0.0.1:9000/realms/x\n", True),
        ("resource: https://even.example.com/\naudience: even-prod\n", True),
        ("bastion: 'odd-eu'\n", False),  # quoted: left to yaml
        ("bastion: yes\n", False),  # a bool: the general path refuses it
        ("issuer: http://idp.example.com\n", False),  # plain http off loopback
        ("even_url: https://even.example.com\neven-url: x\n", False),  # unknown key
        ("  bastion: odd-eu\n", False),
        ("scope: openid  profile\n", False),
        ("bastion: other-bastion\n", False),  # asks for another bastion: no grant held for it
    ],
)
def test_config_file_agrees(granted: Piu, text: str, fast_answers: bool) -> None:
    granted.config_dir.mkdir(parents=True, exist_ok=True)
    (granted.config_dir / "piu.yaml").write_text(text)
    if "bastion: odd-eu" in text:
        assert granted("ssh", HOST, "-O", "odd-eu", "-r", "INC-2 debug").exit_code == 0
    fast = assert_agrees()
    assert (fast is not None) is fast_answers


@pytest.mark.parametrize(
    ("name", "value", "fast_answers"),
    [
        ("PIU_EVEN_URL", "http://localhost:8080", True),
        ("PIU_EVEN_URL", "http://127.0.0.1:8080/", True),
        ("PIU_EVEN_URL", "http://127.0.0.01:8080", False),  # ipaddress refuses it
        ("PIU_EVEN_URL", "http://10.0.0.1", False),
        ("PIU_EVEN_URL", "HTTPS://even.example.com", False),  # fine, but urllib's to judge
        ("PIU_EVEN_URL", "https://[::1]:8080", False),
        ("PIU_CLIENT_ID", "two words", False),
        ("PIU_BASTION", "-bad", False),
        ("PIU_CACERT", " ", False),
        ("PIU_RESOURCE", "even#frag", False),
        ("PIU_SSH_CONFIG", "/nonexistent/ssh_config", False),
        ("XDG_STATE_HOME", "relative/state", False),  # ignored: then no index there
        ("HOME_SLASH", "", False),
    ],
)
def test_environment_agrees(
    granted: Piu, monkeypatch: pytest.MonkeyPatch, name: str, value: str, fast_answers: bool
) -> None:
    if name == "HOME_SLASH":
        monkeypatch.setenv("HOME", os.environ["HOME"] + "/")  # pathlib drops it: left to it
    else:
        monkeypatch.setenv(name, value)
    fast = assert_agrees()
    assert (fast is not None) is fast_answers


def test_ssh_config_is_passed_resolved(
    granted: Piu, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "ssh config"
    config.write_text("Host *\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIU_SSH_CONFIG", "ssh config")
    fast = assert_agrees()
    assert fast is not None
    assert fast[2][1:3] == ["-F", str(config)]  # type: ignore[index]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda p: (p.ssh_dir / "id_ed25519").chmod(0o644),  # the general path fixes the mode
        lambda p: p.ssh_dir.chmod(0o755),
        lambda p: (p.ssh_dir / "id_ed25519.pub").unlink(),  # ... and writes the .pub again
        lambda p: (p.ssh_dir / "id_ed25519.pub").write_text("ssh-ed25519 AAAA other\n"),
    ],
)
def test_leaves_repairs_to_the_general_path(granted: Piu, spoil: Callable[[Piu], None]) -> None:
    spoil(granted)
    assert held.lookup(dict(os.environ), HOST, time.time()) is None
    assert answers()[1] is not None  # which repairs, and answers
    assert assert_agrees() is not None  # after which the cheap tier answers again


def test_never_answers_with_an_expiring_edited_or_foreign_certificate(granted: Piu) -> None:
    index = granted.home / "state" / "piu" / "grants.json"
    cert = Path(json.loads(index.read_text())["grants"][0]["certificate_file"])
    assert assert_agrees(now=time.time() + 3600 - 30) is None  # inside the reuse margin
    assert assert_agrees(now=time.time() + 7200) is None
    original = cert.read_text()
    cert.write_text(original.replace("AAAA", "BBBB", 1))
    assert assert_agrees() is None
    cert.write_text(original)
    (granted.ssh_dir / "id_ed25519").unlink()
    (granted.ssh_dir / "id_ed25519.pub").unlink()
    assert answers() == (None, None)  # no key: no grant
    ensure_key_pair(granted.ssh_dir)
    assert answers() == (None, None)  # a new key: the certificate is not for it


@pytest.mark.parametrize(
    "edit",
    [
        lambda g: {**g, "id": "caf\u00e9"},  # written as \u00e9 by json.dumps: left to json
        lambda g: {**g, "extra": 1},
        lambda g: {**g, "valid_before": True},
        lambda g: {**g, "certificate_file": g["certificate_file"].replace("/", "//", 1)},
        lambda g: {**g, "login": 7},
    ],
)
def test_index_shapes_it_does_not_read(
    granted: Piu, edit: Callable[[dict[str, object]], object]
) -> None:
    index = granted.home / "state" / "piu" / "grants.json"
    data = json.loads(index.read_text())
    data["grants"] = [edit(data["grants"][0])]
    index.write_text(json.dumps(data, indent=2))
    assert held.lookup(dict(os.environ), HOST, time.time()) is None
    # The general path reads these its own way (a grant or none), without an error.
    general = answers()[1]
    assert general is None or isinstance(general, tuple), general


def test_picks_the_longest_valid_grant_like_the_general_path(granted: Piu) -> None:
    index = granted.home / "state" / "piu" / "grants.json"
    data = json.loads(index.read_text())
    first = data["grants"][0]
    data["grants"] = [{**first, "id": "a-older"}, first, {**first, "id": "z-same"}]
    index.write_text(json.dumps(data, indent=2))
    fast = assert_agrees()
    assert fast is not None and fast[0] == "a-older"  # type: ignore[index]  # ties: the first


# the cheap parsers against the libraries they stand in for

_JSON_TOKENS = [
    "{", "}", "[", "]", ",", ":", " ", "\n", '"a"', '"grants"', '"x\\"y"', '"\u00e9"', "0",
    "-1", "12", "01", "1.5", "1e3", "true", "false", "null", "nul", '"', "\t", "\ufeff", "-0",
]  # fmt: skip


def test_json_reader_agrees_with_json() -> None:
    rng = random.Random(21)
    documents = [json.dumps({"grants": [{"a": 1, "b": None, "c": "d e", "f": [True, False]}]})]
    documents += ["".join(rng.choices(_JSON_TOKENS, k=rng.randint(1, 14))) for _ in range(20000)]
    answered = 0
    for text in documents:
        mine = held._Json(text).document()
        if mine is None:
            continue
        answered += 1
        assert mine == json.loads(text), text
    assert answered > 500


_YAML_PIECES = [
    "even_url", "bastion", "scope", "client_id", "cacert", ": ", ":", " ", "\n", "#", "a", "Yes",
    "no", "on", "null", "~", "/etc/x", "1", "0x1", "1.5", "2024-01-01", "'q'", '"q"', "- ", "&a",
    "*a", "!!str ", "[x]", "{x}", "https://h:1/p?q=1&r", " #c", "a:b", "\t", "---", "x,y", "%",
]  # fmt: skip


def test_plain_yaml_agrees_with_yaml() -> None:
    rng = random.Random(21)
    answered = 0
    for _ in range(20000):
        text = "".join(rng.choices(_YAML_PIECES, k=rng.randint(1, 10)))
        mine = fastconfig.plain_yaml(text.encode())
        if mine is None:
            continue
        answered += 1
        assert mine == (yaml.safe_load(text) or {}), text
    assert answered > 200


@pytest.mark.parametrize("key", [k for k in fastconfig.KEYS if k != "ssh_config"])
def test_value_checks_pass_only_what_piu_config_passes(key: str) -> None:
    rng = random.Random(key)
    pieces = [
        "https://", "http://", "localhost", "127.0.0.1", "127.0.0.256", "[::1]", "a", "Z", "-",
        ".", ":80", "/", "#", "@", "%", " ", '"', "\\", "\x00", "é", "0", "x" * 300, "?q",
    ]  # fmt: skip
    for _ in range(3000):
        value = "".join(rng.choices(pieces, k=rng.randint(1, 6)))
        if fastconfig._valid(key, value):
            check_value(key, value, where="the test")  # raises if piu.config disagrees


def test_shell_quote_and_clean_paths_agree_with_the_stdlib() -> None:
    rng = random.Random(21)
    for _ in range(5000):
        text = "".join(rng.choices("ab/ ./'\"$%_-:@~", k=rng.randint(0, 8)))
        assert held._shell_quote(text) == shlex.quote(text)
        if held._clean(text):
            assert str(Path(text)) == text


def test_the_cheap_tier_imports_nothing_heavy(granted: Piu) -> None:
    code = (
        "import os, sys, time\n"
        "before = set(sys.modules)\n"
        "from piu import held\n"
        "found = held.lookup(os.environ, sys.argv[1], time.time())\n"
        "assert found is not None\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    root = str(Path(piu.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root}
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, HOST],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    imported = set(ast.literal_eval(out.stdout))
    allowed = {"__future__", "binascii", "piu", "piu.fastconfig", "piu.held", "piu.sshwire"}
    assert imported <= allowed, imported


def test_answers_with_what_piu_config_set_writes(granted: Piu, tmp_path: Path) -> None:
    ca, ssh_config = tmp_path / "ca.pem", tmp_path / "ssh_config"
    ca.write_text("not read by piu ssh\n")
    ssh_config.write_text("Host *\n")
    for key, value in (
        ("even_url", "https://even.example.com"),
        ("issuer", "https://idp.example.com/realms/acme"),
        ("scope", "openid offline_access profile"),
        ("cacert", str(ca)),
        ("ssh_config", str(ssh_config)),
    ):
        assert granted("config", "set", key, value).exit_code == 0
    fast = assert_agrees()
    assert fast is not None
    assert fast[2][1:3] == ["-F", str(ssh_config)]  # type: ignore[index]
