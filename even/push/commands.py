"""The `odd grant-ssh-access` command lines Even sends (SPEC §5), built and checked here.

odd splits `SSH_ORIGINAL_COMMAND` on single spaces without any quoting and accepts only the
characters `[A-Za-z0-9+/=,.:_@-]`, so the command is the argv joined with single spaces and
every word is checked against that alphabet before anything is sent: Even never relies on
the host to catch a bad value, and a value that would need quoting cannot exist.

Expiry: sshd's `expiry-time` has whole seconds, so the grant's end is rounded *down*; the key
stops working at or before the moment Even recorded, never after it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

_WORD_RE = re.compile(r"[A-Za-z0-9+/=,.:_@-]+")
EXPIRY_FORMAT = "%Y%m%d%H%M%SZ"
# What odd accepts as a grant id (odd.authorized_keys): 1-64 letters, digits, '-'.
_GRANT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")


class UnsafeCommand(ValueError):
    """A word would not survive odd's split-on-spaces parsing unchanged."""


def floor_seconds(moment: datetime) -> datetime:
    """`moment` in UTC without its fraction of a second (never later than `moment`)."""
    return moment.astimezone(UTC).replace(microsecond=0)


def odd_expiry(moment: datetime) -> str:
    """`YYYYMMDDHHMMSSZ` for sshd's expiry-time, rounded down to the second."""
    return floor_seconds(moment).strftime(EXPIRY_FORMAT)


def grant_id(request_id: str, index: int) -> str:
    """The managed line's id for the `index`-th key of a request (one line per key)."""
    value = request_id if index == 0 else f"{request_id}-k{index + 1}"
    if _GRANT_ID_RE.fullmatch(value) is None:
        raise UnsafeCommand(f"grant id {value[:80]!r} is not acceptable to odd")
    return value


def grant_argv(
    *,
    grant_id: str,
    login: str,
    expires: datetime,
    key_type: str,
    key_base64: str,
    sources: Sequence[str] = (),
    jump_to: Sequence[str] = (),
) -> list[str]:
    argv = ["grant", "--grant-id", grant_id, "--login", login, "--expires", odd_expiry(expires)]
    if sources:
        argv += ["--from", ",".join(sources)]
    for host in jump_to:
        argv += ["--jump-to", host]
    return [*argv, "--key", key_type, key_base64]


def revoke_argv(*, grant_id: str, login: str, end_sessions: bool = False) -> list[str]:
    argv = ["revoke", "--grant-id", grant_id, "--login", login]
    return [*argv, "--end-sessions"] if end_sessions else argv


def command_line(argv: Sequence[str]) -> str:
    """The argv as odd will split it back: words joined by single spaces, each one checked."""
    for word in argv:
        if _WORD_RE.fullmatch(word) is None:
            raise UnsafeCommand(f"word {word[:40]!r} has characters odd does not accept")
    return " ".join(argv)
