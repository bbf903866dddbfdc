"""The one grammar for names that end up in certificates, sshd logs and shell-adjacent places.

SPEC §1 and §4: hostnames, logins (and usernames), bastion names, principals and bastion
targets. The regex sources here also feed the pydantic schemas (even.api.schemas), so the
OpenAPI document and the decision agree; the functions make the final decision.
odd keeps a stdlib copy (odd.names) and piu a client-side one (piu.models): the test vectors
in tests/name_vectors.py hold all of them to the same answers.

Invariants:
- Everything uses `re.fullmatch` (a `$` would accept a trailing newline) on ASCII-only
  patterns, so homoglyphs, fullwidth letters and control characters never pass.
- A hostname is lowercase LDH labels of 1–63 characters (no leading or trailing hyphen), at
  most 253 characters, no trailing dot, and not an IP literal: a name whose last label is a
  number (decimal or 0x-hex) is one, as inet_aton and the WHATWG URL standard read it.
- A grant target is a hostname that is not a name every machine gives itself (`localhost`,
  `*.localhost`): a principal `login@localhost` would open every host that trusts the CA.
"""

from __future__ import annotations

import re

MAX_HOSTNAME_LENGTH = 253
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOSTNAME_PATTERN = rf"^{LABEL}(?:\.{LABEL})*$"
LOGIN_PATTERN = r"^[a-z_][a-z0-9_.-]{0,31}$"
BASTION_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"

_HOSTNAME_RE = re.compile(HOSTNAME_PATTERN[1:-1])
LOGIN_RE = re.compile(LOGIN_PATTERN[1:-1])
_BASTION_RE = re.compile(BASTION_PATTERN[1:-1])
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*")
SELF_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6"}
)


def is_login(value: str) -> bool:
    """Logins and usernames: `^[a-z_][a-z0-9_.-]{0,31}$`."""
    return LOGIN_RE.fullmatch(value) is not None


def is_hostname(value: str) -> bool:
    """Lowercase LDH labels, ≤253 chars, no trailing dot, no IP literal."""
    if not value or len(value) > MAX_HOSTNAME_LENGTH or not value.isascii():
        return False
    if _HOSTNAME_RE.fullmatch(value) is None:
        return False
    return _NUMERIC_LABEL_RE.fullmatch(value.rsplit(".", 1)[-1]) is None


def is_self_name(value: str) -> bool:
    """A name every machine gives itself (RFC 6761 reserves .localhost as well)."""
    return value in SELF_NAMES or value.endswith(".localhost")


def is_grant_target(value: str) -> bool:
    """A hostname a grant may name: one host, not every machine."""
    return is_hostname(value) and not is_self_name(value)


def is_bastion_name(value: str) -> bool:
    return value.isascii() and _BASTION_RE.fullmatch(value) is not None


def host_principal(login: str, hostname: str) -> str:
    """The principal that opens `login` on `hostname` only (principal mode `login@hostname`)."""
    return f"{login}@{hostname}"


def bastion_principal(username: str, bastion: str, target: str) -> str:
    """The bastion certificate's principal (SPEC §4): this user, this bastion, one target."""
    return f"{username}@{bastion}/{target}"


def parse_bastion_principal(value: str) -> tuple[str, str, str] | None:
    """(username, bastion, target) of a well-formed bastion principal, else None."""
    user, at, rest = value.partition("@")
    bastion, slash, target = rest.partition("/")
    if not (at and slash and is_login(user) and is_bastion_name(bastion)):
        return None
    return (user, bastion, target) if is_grant_target(target) else None
