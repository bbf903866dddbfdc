"""Validation of names that end up in certificates, sshd logs and shell-adjacent places (SPEC §1).

Everything uses `re.fullmatch` (a `$` would accept a trailing newline) on ASCII-only patterns,
so homoglyphs, fullwidth letters and control characters never pass.
"""

from __future__ import annotations

import re

LOGIN_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_BASTION_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62})")


def is_login(value: str) -> bool:
    """Logins and usernames: `^[a-z_][a-z0-9_.-]{0,31}$`."""
    return LOGIN_RE.fullmatch(value) is not None


def is_hostname(value: str) -> bool:
    """Lowercase LDH labels, ≤253 chars, no trailing dot, no IP literal."""
    if not value or len(value) > 253 or not value.isascii():
        return False
    labels = value.split(".")
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        return False
    # An all-numeric last label means an IPv4 literal in some spelling (127.1, 010.0.0.1).
    return not labels[-1].isdigit()


def is_bastion_name(value: str) -> bool:
    return value.isascii() and _BASTION_RE.fullmatch(value) is not None
