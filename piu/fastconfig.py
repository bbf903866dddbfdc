"""piu's settings for `piu ssh` with a held grant, read without yaml, re or urllib.

`piu ssh HOST` with a grant already held needs two settings (bastion, ssh_config), yet the
full loader (piu.config) costs more to import than the rest of that command. `settings`
answers them from the same sources in the same order (defaults < piu.yaml < PIU_* variables)
and only when it is sure the full loader would give the same answer; that includes every
*other* setting being valid too, because the full CLI refuses to run with an invalid one.
Whenever it cannot tell cheaply it returns None and the caller falls back to piu.config,
which then decides and reports. It never answers for something the full loader rejects.

What it reads of piu.yaml: `key: value` lines (what `piu config set` writes), blank lines and
whole-line comments, in printable ASCII; each value a plain YAML scalar that starts with a
letter or `/`, so YAML can only read it as that very string (never a bool, null or number).
Anything else (quotes, indentation, `~`, a value starting with a digit, a duplicate key, an
unknown key) is left to the YAML loader. Values are checked by conservative versions of
piu.config's checks: a value passes here only if it passes there.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing alone costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Mapping

KEYS = (
    "even_url",
    "bastion",
    "cacert",
    "issuer",
    "client_id",
    "resource",
    "audience",
    "scope",
    "ssh_config",
)
DEFAULTS: dict[str, str] = {
    "client_id": "piu",
    "audience": "even",
    # offline_access asks for a refresh token, so a login lasts longer than one access token.
    "scope": "openid offline_access",
}

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
_ALNUM = frozenset(_LETTERS + _DIGITS)
_HOST_CHARS = frozenset(_LETTERS + _DIGITS + ".-")
_PLAIN = frozenset(_LETTERS + _DIGITS + "-._~/:@+=%,?&")  # inside a plain scalar: no indicators
_YAML_WORDS = frozenset(("yes", "no", "true", "false", "on", "off", "null", "y", "n"))
_SCHEME = frozenset(_LETTERS + _DIGITS + "+-.")
_SCOPE = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}  # RFC 6749 §3.3


def settings(env: Mapping[str, str], config_file: str) -> tuple[str | None, str | None] | None:
    """(bastion, ssh_config) as piu.config.load_settings gives them (no flags), or None."""
    try:
        with open(config_file, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        from_file: dict[str, str] | None = {}
    except OSError:
        return None
    else:
        from_file = plain_yaml(data)
    if from_file is None:
        return None
    values: dict[str, str | None] = {key: DEFAULTS.get(key) for key in KEYS}
    explicit: set[str] = set(from_file)
    values.update(from_file)
    if "cacert" in from_file and not config_file.isprintable():
        return None  # it becomes a path next to the file, which must then be printable
    for key in KEYS:
        value = env.get("PIU_" + key.upper())
        if value:
            values[key] = value
            explicit.add(key)
    for key in explicit - {"ssh_config"}:  # ssh_config is checked as a file below
        value = values[key]
        if value is None or not _valid(key, value):
            return None
    ssh_config = values["ssh_config"]
    if ssh_config is not None:
        ssh_config = _existing_file(ssh_config)
        if ssh_config is None:
            return None
    return values["bastion"], ssh_config


def plain_yaml(data: bytes) -> dict[str, str] | None:
    """What yaml.safe_load gives for a file of plain `key: value` lines, or None if unsure."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not all(" " <= c <= "~" or c == "\n" for c in text):
        return None  # tabs, CR, control characters: the YAML loader's business
    values: dict[str, str] = {}
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(": ")
        if not sep or key not in KEYS or key in values or not _plain_scalar(value):
            return None
        values[key] = value
    return values


def _plain_scalar(value: str) -> bool:
    """A YAML plain scalar that can only be read as the string itself."""
    if not value or value[0] not in _LETTERS + "/" or value.lower() in _YAML_WORDS:
        return False
    if value.endswith((":", " ")) or "  " in value or ": " in value:
        return False
    return all(c in _PLAIN or c == " " for c in value)


def _valid(key: str, value: str) -> bool:
    if key in ("even_url", "issuer"):
        return _url(value)
    if key == "bastion":
        return _bastion(value)
    if key == "cacert":
        return bool(value.strip()) and value.isprintable()
    if key == "resource":
        return _visible(value) and _resource(value)
    if key == "scope":
        return all(part and all(c in _SCOPE for c in part) for part in value.split(" "))
    return _visible(value)  # client_id, audience


def _visible(value: str) -> bool:
    return 1 <= len(value) <= 512 and all("!" <= c <= "~" for c in value)


def _bastion(value: str) -> bool:
    """piu.models.BASTION_RE: a host name of ASCII letters, digits, dots and hyphens."""
    return (
        1 <= len(value) <= 253
        and value[0] in _ALNUM
        and value[-1] in _ALNUM
        and all(c in _HOST_CHARS for c in value)
    )


def _url(url: str) -> bool:
    """piu.config.check_url passes: https to a host, or http to localhost / 127.x.y.z."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https") or not _visible(url):
        return False
    netloc = rest
    for delimiter in "/?#":
        netloc = netloc.partition(delimiter)[0]
    if any(c in netloc for c in "[]@%"):
        return False  # IPv6 literals, user info, zone ids: urllib's rules, not repeated here
    host = netloc.partition(":")[0].lower()
    if not host:
        return False
    return scheme == "https" or host == "localhost" or _loopback_v4(host)


def _loopback_v4(host: str) -> bool:
    """ipaddress.ip_address(host).is_loopback for a dotted quad (127.0.0.0/8)."""
    octets = host.split(".")
    if len(octets) != 4 or octets[0] != "127":
        return False
    for octet in octets:
        if not (1 <= len(octet) <= 3 and all(c in _DIGITS for c in octet)):
            return False
        if (octet[0] == "0" and octet != "0") or int(octet) > 255:
            return False  # ipaddress refuses leading zeros
    return True


def _resource(value: str) -> bool:
    """urlsplit(value) has a scheme and no fragment (RFC 8707); brackets left to urllib."""
    colon = value.find(":")
    if colon <= 0 or value[0] not in _LETTERS or any(c not in _SCHEME for c in value[:colon]):
        return False
    return "[" not in value and "]" not in value and not value.partition("#")[2]


def _existing_file(value: str) -> str | None:
    """piu.config's ssh_config check: the resolved path of an existing file, or None."""
    if value.startswith("~") or not value.strip():
        return None  # home directories: pathlib's rules, not repeated here
    resolved = os.path.realpath(value)
    if not os.path.isfile(resolved):
        return None
    return resolved
