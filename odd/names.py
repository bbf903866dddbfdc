"""Validation of hostnames and login names (SPEC §1); pure functions, no I/O.

Invariants:
- A hostname is lowercase ASCII LDH labels of 1–63 characters without a leading or trailing
  hyphen, at most 253 characters in all, no trailing dot, and not an IP literal.
- A host *identity* (what principals are bound to) is also fully qualified and not a name that
  every machine gives itself (`localhost`), because a principal `login@localhost` would be
  accepted by every host that trusts Even's CA.
- A login matches `^[a-z_][a-z0-9_.-]{0,31}$` (checked with `re.fullmatch`, so a trailing
  newline never slips through as it would with `re.match(r"…$")`).
"""

import re

from odd.errors import InvalidHostname, InvalidLogin

MAX_HOSTNAME_LENGTH = 253

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_LOGIN_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
# IPv4 parsers (inet_aton, browsers) read "127.1", "0x7f.1" or "2130706433" as addresses: a name
# whose last label is a number is treated as an IP literal, as the WHATWG URL standard does.
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*")
# Names every machine gives itself (RFC 6761 reserves .localhost as well).
_SELF_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6"}
)


def check_hostname(name: str) -> str:
    """Return `name` if it is a valid hostname (SPEC §1), else raise `InvalidHostname`."""
    if not name:
        raise InvalidHostname("hostname is empty")
    if len(name) > MAX_HOSTNAME_LENGTH:
        raise InvalidHostname(f"hostname is longer than {MAX_HOSTNAME_LENGTH} characters")
    if name.endswith("."):
        raise InvalidHostname(f"hostname {name!r} must not end with a dot")
    if name != name.lower():
        raise InvalidHostname(f"hostname {name!r} must be lower case")
    if _HOSTNAME_RE.fullmatch(name) is None:
        raise InvalidHostname(
            f"hostname {name!r} is not made of letters, digits and hyphens in dot-separated "
            "labels of 1-63 characters (no leading or trailing hyphen)"
        )
    if _NUMERIC_LABEL_RE.fullmatch(name.rsplit(".", 1)[-1]) is not None:
        raise InvalidHostname(f"hostname {name!r} is an IP address, not a name")
    return name


def check_host_identity(name: str) -> str:
    """Return `name` if it can identify this host in a principal, else raise `InvalidHostname`.

    Stricter than `check_hostname`: the name must be fully qualified and must not be one that
    every machine calls itself, or a certificate for it would open every such host.
    """
    check_hostname(name)
    if name in _SELF_NAMES or name.endswith(".localhost"):
        raise InvalidHostname(
            f"hostname {name!r} names every machine; use this host's fully qualified name"
        )
    if "." not in name:
        raise InvalidHostname(
            f"hostname {name!r} is not fully qualified; use a name like {name}.example.org"
        )
    return name


def check_login(name: str) -> str:
    """Return `name` if it is a valid login, else raise `InvalidLogin`."""
    if _LOGIN_RE.fullmatch(name) is None:
        raise InvalidLogin(f"login {name!r} does not match ^[a-z_][a-z0-9_.-]{{0,31}}$")
    return name
