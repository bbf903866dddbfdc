"""`piu ssh HOST` with a grant already held, answered with the cheapest modules there are.

Why: that command only has to find the grant, check its certificate and exec ssh, but the
general code path (Runtime, piu.config, piu.access, piu.grants) imports dataclasses, typing,
pathlib, json and re, which together cost more than the work. `lookup` does the same work
importing only os, sys and binascii (through piu.sshwire, whose parsers it shares).

Contract: `lookup` answers only when it is sure, and then exactly what the general path
(piu.launch.held_grant) answers for the same environment: the same grant, valid_before and
ssh argv. Whenever anything is unusual it returns None and the caller runs the general path,
which decides, repairs or reports: settings it cannot check cheaply (piu.fastconfig), a key
file or directory piu would fix first (mode, missing .pub), a path pathlib would spell
differently, a grants index not in the plain shape piu writes, a name ssh would mangle.
The certificate checks are the general path's own (piu.grants): each certificate file is
read again and must be an Ed25519 user certificate for piu's current key, valid for at
least REUSE_MARGIN more seconds by its own valid_before. So no path here can hand ssh an
expired, foreign or mismatched certificate.
"""

from __future__ import annotations

import os
import stat

from piu import fastconfig, sshwire

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing alone costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import TypeVar

    _T = TypeVar("_T")

REUSE_MARGIN = 60  # seconds; a certificate about to expire would end the session soon after
KEY_COMMENT = "piu"
SSH = "ssh"
# The grants index's fields (piu.grants.HeldGrant) and the JSON types piu writes for them.
FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "username": (str,),
    "login": (str,),
    "hostname": (str,),
    "bastion": (str, type(None)),
    "certificate_file": (str,),
    "bastion_certificate_file": (str, type(None)),
    "valid_before": (int,),
}
_SHELL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@%+=:,./-")


class Held:
    """A held grant to use: its id, when its certificates expire, and the ssh argv."""

    __slots__ = ("argv", "id", "valid_before")

    def __init__(self, grant_id: str, valid_before: int, argv: list[str]) -> None:
        self.id, self.valid_before, self.argv = grant_id, valid_before, argv


def using_note(grant_id: str, valid_before: float, now: float) -> str:
    return f"using grant {grant_id} (valid for {minutes(valid_before - now)})"


def minutes(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def lookup(env: Mapping[str, str], target: str, now: float) -> Held | None:
    """The grant `piu ssh TARGET` (no options) would use, or None: no grant, or unsure."""
    login, sep, hostname = target.rpartition("@")
    if not hostname or (sep and not login):
        return None  # piu.access.split_target's error: the CLI reports it
    home = env.get("HOME") or ""
    if not _clean(home):
        return None
    config_home = _xdg(env, "XDG_CONFIG_HOME", _join(home, ".config"))
    state_home = _xdg(env, "XDG_STATE_HOME", _join(home, ".local/state"))
    if config_home is None or state_home is None:
        return None
    config_file = env.get("PIU_CONFIG") or _join(config_home, "piu/piu.yaml")
    settings = fastconfig.settings(env, config_file)
    if settings is None:
        return None
    bastion, ssh_config = settings
    ssh_dir = _join(home, ".ssh/piu")
    public = _key(ssh_dir)
    entries = _index(_join(state_home, "piu/grants.json"))
    if public is None or entries is None:
        return None
    best, best_end = None, 0
    for grant in entries:
        if (grant["hostname"], grant["login"]) != (hostname, login or grant["username"]):
            continue
        if bastion is not None and grant["bastion"] != bastion:
            continue
        end = _still_valid(grant, public, now)
        if end is not None and (best is None or end > best_end):
            best, best_end = grant, end
    if best is None:
        return None
    grant_id = str(best["id"])
    if not grant_id.isprintable() or "\\" in grant_id:
        return None  # the note would need escaping (piu.render.escape)
    argv = _argv(_join(ssh_dir, "id_ed25519"), best, ssh_config)
    return None if argv is None else Held(grant_id, best_end, argv)


def _key(ssh_dir: str) -> bytes | None:
    """piu's public key, if piu.keys.ensure_key_pair would find everything in order."""
    try:
        if stat.S_IMODE(os.stat(ssh_dir).st_mode) != 0o700:
            return None  # ensure_key_pair tightens it first
        mode = os.stat(_join(ssh_dir, "id_ed25519")).st_mode
        if not stat.S_ISREG(mode) or mode & 0o077:
            return None  # not a file, or one ensure_key_pair would chmod
        with open(_join(ssh_dir, "id_ed25519"), "rb") as f:
            key = sshwire.read_private_key(f.read())
        with open(_join(ssh_dir, "id_ed25519.pub"), "rb") as f:
            public_line = f.read().decode("ascii").strip()
    except (OSError, ValueError):
        return None
    if public_line != key.public_line(KEY_COMMENT):
        return None  # ensure_key_pair writes the .pub again
    return key.public


def _index(path: str) -> list[dict[str, object]] | None:
    """The grants index's entries, if it is in the plain shape piu.grants writes."""
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8")
    except (OSError, ValueError):
        return None
    parsed = _Json(data).document()
    if not isinstance(parsed, dict) or set(parsed) != {"grants"}:
        return None
    entries = parsed["grants"]
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != set(FIELDS):
            return None
        for name, types in FIELDS.items():
            if type(entry[name]) not in types:  # not isinstance: a bool is no valid_before
                return None
        if entry["certificate_file"] == "" or entry["bastion_certificate_file"] == "":
            return None
    return entries


def _still_valid(grant: dict[str, object], public: bytes, now: float) -> int | None:
    """piu.grants._still_valid: valid_before of the grant's certificates if all are usable."""
    files = [grant["certificate_file"], grant["bastion_certificate_file"]]
    if grant["bastion"] is not None and files[1] is None:
        return None
    ends = []
    for name in files:
        if name is None:
            continue
        try:
            with open(str(name), "rb") as f:
                certificate = sshwire.read_certificate(f.read().decode("ascii"))
        except (OSError, ValueError):
            return None
        if certificate.cert_type != sshwire.USER_CERT or certificate.public != public:
            return None
        ends.append(certificate.valid_before)
    valid_before = min(ends)
    return valid_before if valid_before - now >= REUSE_MARGIN else None


def _argv(identity: str, grant: dict[str, object], ssh_config: str | None) -> list[str] | None:
    """piu.sshcmd.ssh_argv for the grant, or None where that would refuse a path."""
    config = ["-F", ssh_config] if ssh_config else []
    paths = [identity, *config[1:], grant["certificate_file"]]
    jump = grant["bastion"] is not None and grant["bastion_certificate_file"] is not None
    if jump:
        paths.append(grant["bastion_certificate_file"])
    if not all(isinstance(p, str) and _clean(p) and passable_to_ssh(p) for p in paths):
        return None
    argv = [SSH, *config, *_identity(identity, str(grant["certificate_file"]))]
    if jump:
        inner = [SSH, *config, *_identity(identity, str(grant["bastion_certificate_file"]))]
        inner += ["-W", "%h:%p", f"{grant['username']}@{grant['bastion']}"]
        argv += ["-o", "ProxyCommand=" + " ".join(_shell_quote(arg) for arg in inner)]
    return [*argv, f"{grant['login']}@{grant['hostname']}"]


def _identity(identity: str, certificate: str) -> list[str]:
    quoted = f'"{certificate}"' if " " in certificate else certificate
    return ["-i", identity, "-o", f"CertificateFile={quoted}", "-o", "IdentitiesOnly=yes"]


def passable_to_ssh(path: str) -> bool:
    """A path ssh takes as it is (piu.sshcmd passes no other): no %, quote or backslash,
    nothing unprintable."""
    return path.isprintable() and not any(c in path for c in '%"\\')


def _shell_quote(arg: str) -> str:
    """shlex.quote, without importing shlex (and re)."""
    if not arg:
        return "''"
    if all(c in _SHELL_SAFE for c in arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def _clean(path: str) -> bool:
    """str(pathlib.Path(path)) == path: no empty or `.` parts, no trailing slash."""
    if path == "/":
        return True
    parts = path.split("/")
    if parts[0] == "":
        parts = parts[1:]
    return bool(parts) and all(part not in ("", ".") for part in parts)


def _join(base: str, rest: str) -> str:
    return base + rest if base.endswith("/") else f"{base}/{rest}"


def _xdg(env: Mapping[str, str], name: str, default: str) -> str | None:
    """piu.paths._xdg; None where pathlib would spell the value differently."""
    value = env.get(name, "")
    if not value.startswith("/"):
        return default  # relative (or unset) values are ignored, as the XDG spec says
    return value if _clean(value) else None


class _Json:
    """A strict reader for the JSON piu writes (objects, arrays, strings without escapes,
    integers, true/false/null); `document` is json.loads's answer, or None for anything
    else (escapes, floats, unexpected bytes), which the general path then reads."""

    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0

    def document(self) -> object:
        try:
            value = self._value()
            self._space()
        except (_Unsure, IndexError, ValueError):  # ValueError: no closing quote
            return None
        return value if self.at == len(self.text) else None

    def _space(self) -> None:
        while self.at < len(self.text) and self.text[self.at] in " \t\n\r":
            self.at += 1

    def _value(self) -> object:
        self._space()
        c = self.text[self.at]
        if c == "{":
            return self._object()
        if c == "[":
            return self._array()
        if c == '"':
            return self._string()
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.at):
                self.at += len(word)
                return value
        return self._integer()

    def _object(self) -> dict[str, object]:
        return dict(self._items("}", self._member))  # a repeated key: the last wins, as in json

    def _array(self) -> list[object]:
        return self._items("]", self._value)

    def _items(self, close: str, item: Callable[[], _T]) -> list[_T]:
        """An object's members or an array's values, from its opening bracket to `close`."""
        found: list[_T] = []
        self.at += 1
        self._space()
        if self.text[self.at] == close:
            self.at += 1
            return found
        while True:
            found.append(item())
            self._space()
            if self._expect("," + close) == close:
                return found

    def _member(self) -> tuple[str, object]:
        self._space()
        if self.text[self.at] != '"':
            raise _Unsure
        key = self._string()
        self._space()
        self._expect(":")
        return key, self._value()

    def _string(self) -> str:
        end = self.text.index('"', self.at + 1)
        value = self.text[self.at + 1 : end]
        if "\\" in value or any(c < " " for c in value):
            raise _Unsure  # escapes are json's job; raw control characters are invalid
        self.at = end + 1
        return value

    def _integer(self) -> int:
        start = self.at
        if self.text[self.at] == "-":
            self.at += 1
        digits = self.at
        while self.at < len(self.text) and "0" <= self.text[self.at] <= "9":
            self.at += 1
        number = self.text[digits : self.at]
        if not number or (number[0] == "0" and len(number) > 1):
            raise _Unsure
        if self.at < len(self.text) and self.text[self.at] in ".eE":
            raise _Unsure  # a float
        return int(self.text[start : self.at])

    def _expect(self, allowed: str) -> str:
        c = self.text[self.at]
        if c not in allowed:
            raise _Unsure
        self.at += 1
        return c


class _Unsure(Exception):
    """The input is outside what _Json reads."""
