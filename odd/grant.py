"""`odd grant-ssh-access`: the forced command Even's push key runs on bastions and hosts (SPEC §5).

sshd runs it with the client's command in `SSH_ORIGINAL_COMMAND`, one of

    grant --grant-id ID --login LOGIN --expires YYYYMMDDHHMMSSZ [--from CIDR,…]
          [--jump-to HOST]… --key TYPE BASE64
    revoke --grant-id ID --login LOGIN [--end-sessions]
    list

The command is split on single spaces, without any quoting. Invariants:
- Every word must be non-empty and made of `[A-Za-z0-9+/=,.:_@-]` only, so no CR, LF, NUL,
  quote or shell character ever reaches a file or a log line.
- Everything is validated (syntax, values, the push user and root rules, the expiry being in
  the future, the account existing) before anything is written: a refusal writes nothing.
- Refusals are `UsageError`s (exit 2); failures of the host itself are exit 1.
- Each action, refused or done, leaves one syslog line (facility auth) naming the grant id,
  login and key fingerprint; never the key itself.
"""

from __future__ import annotations

import contextlib
import ipaddress
import pwd
import re
import syslog
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import NamedTuple

from odd.authorized_keys import (
    KeyLine,
    KeyStore,
    check_grant_id,
    check_jump_hosts,
    format_expiry,
    parse_expiry,
    parse_sources,
)
from odd.config import OddConfig
from odd.errors import OddError, UsageError
from odd.names import check_login
from odd.paths import DEFAULT_PUSH_USER
from odd.sshkey import parse_public_key

COMMAND_ENV_VAR = "SSH_ORIGINAL_COMMAND"
SYSLOG_IDENT = "odd-grant-ssh-access"
# A 16384-bit RSA key is about 2.8 KB of base64; nothing legitimate comes near this.
MAX_COMMAND_LENGTH = 8192
_WORD_RE = re.compile(r"[A-Za-z0-9+/=,.:_@-]+")
# option -> (number of values, may repeat)
_GRANT_OPTIONS = {
    "--grant-id": (1, False),
    "--login": (1, False),
    "--expires": (1, False),
    "--from": (1, False),
    "--jump-to": (1, True),
    "--key": (2, False),
}
_REVOKE_OPTIONS = {"--grant-id": (1, False), "--login": (1, False), "--end-sessions": (0, False)}


class BadCommand(UsageError):
    """SSH_ORIGINAL_COMMAND is missing, malformed, or asks for something refused."""


class GrantRequest(NamedTuple):
    login: str
    line: KeyLine


class RevokeRequest(NamedTuple):
    grant_id: str
    login: str
    end_sessions: bool


class ListRequest:
    """`list`: it has no arguments."""


Request = GrantRequest | RevokeRequest | ListRequest


def account_exists(login: str) -> bool:
    try:
        pwd.getpwnam(login)
    except KeyError:
        return False
    return True


def run(
    command: str | None,
    config: OddConfig,
    *,
    environ: Mapping[str, str],
    now: datetime | None = None,
    exists: Callable[[str], bool] = account_exists,
) -> list[str]:
    """Validate and carry out `command`; return the lines to print. Raises `OddError`."""
    moment = now or datetime.now(UTC)
    caller = _caller(environ)
    try:
        request = parse_command(command)
        check_request(request, config, environ=environ, now=moment, exists=exists)
        output = execute(request, KeyStore(config.keys_dir), now=moment)
    except UsageError as exc:
        _log(syslog.LOG_WARNING, f"refused{caller}: {exc}")
        raise
    except (OddError, OSError) as exc:
        _log(syslog.LOG_ERR, f"failed{caller}: {exc}")
        raise
    if not isinstance(request, ListRequest):
        _log(syslog.LOG_INFO, f"{output[0]}{caller}")
    return output


def parse_command(command: str | None) -> Request:
    """Parse SSH_ORIGINAL_COMMAND into a request whose every value is valid on its own."""
    if command is None:
        raise BadCommand(f"no {COMMAND_ENV_VAR}: run only as the forced command of Even's push key")
    if len(command) > MAX_COMMAND_LENGTH:
        raise BadCommand(f"command longer than {MAX_COMMAND_LENGTH} characters")
    words = command.split(" ")
    for word in words:
        if not word:
            raise BadCommand("empty word: words are separated by exactly one space")
        if _WORD_RE.fullmatch(word) is None:
            bad = next(c for c in word if _WORD_RE.fullmatch(c) is None)
            raise BadCommand(f"character {bad!r} is not allowed")
    name, rest = words[0], words[1:]
    if name == "grant":
        return _grant_request(_options(rest, _GRANT_OPTIONS))
    if name == "revoke":
        options = _options(rest, _REVOKE_OPTIONS)
        return RevokeRequest(
            grant_id=check_grant_id(_required(options, "--grant-id")[0]),
            login=check_login(_required(options, "--login")[0]),
            end_sessions="--end-sessions" in options,
        )
    if name == "list":
        if rest:
            raise BadCommand("list takes no arguments")
        return ListRequest()
    raise BadCommand(f"unknown command {name[:40]!r} (grant, revoke, list)")


def check_request(
    request: Request,
    config: OddConfig,
    *,
    environ: Mapping[str, str],
    now: datetime,
    exists: Callable[[str], bool] = account_exists,
) -> None:
    """The checks that depend on this host: who may get a key, and until when."""
    if not isinstance(request, GrantRequest):
        return  # revoking or listing never opens anything
    login = request.login
    # The push user's own file is not the managed one (sshd's Match block), and a key for it
    # would be a login that can run odd itself; via sudo, SUDO_USER is the push user.
    push_users = {config.push_user or DEFAULT_PUSH_USER, environ.get("SUDO_USER")}
    if login in push_users:
        raise BadCommand(f"login {login!r} is Even's push user and is never granted a key")
    if login == "root" and not config.allow_root_login:
        raise BadCommand("login 'root' is not allowed (allow_root_login in /etc/odd.conf)")
    if request.line.expires <= now:
        raise BadCommand(f"expiry {format_expiry(request.line.expires)} is not in the future")
    if not exists(login):
        raise BadCommand(f"login {login!r} does not exist on this host")


def execute(request: Request, store: KeyStore, *, now: datetime) -> list[str]:
    """Carry out a validated request against the managed files."""
    if isinstance(request, ListRequest):
        return [
            f"{line.grant_id} {login} {format_expiry(line.expires)} {line.role} "
            f"{line.key.fingerprint}"
            for login in store.logins()
            for line in store.read(login).managed
        ]
    if isinstance(request, GrantRequest):
        new = request.line
        store.change(
            request.login,
            lambda lines: [line for line in lines if line.grant_id != new.grant_id] + [new],
            now,
        )
        hops = f" jump_to={','.join(new.jump_to)}" if new.jump_to else ""
        sources = f" from={','.join(new.sources)}" if new.sources else ""
        return [
            f"granted {new.grant_id} login={request.login} expires={format_expiry(new.expires)} "
            f"role={new.role}{hops}{sources} key={new.key.fingerprint}"
        ]
    grant_id = request.grant_id
    before, _after = store.change(
        request.login,
        lambda lines: [line for line in lines if line.grant_id != grant_id],
        now,
    )
    removed = sum(1 for line in before.managed if line.grant_id == grant_id)
    message = f"revoked {grant_id} login={request.login} lines={removed}"
    if request.end_sessions:
        # After the lines are gone, so a session ended here cannot simply log in again.
        from odd.sessions import end_sessions  # only here: no other action needs it

        message += f" sessions_ended={end_sessions(request.login)}"
    return [message]


def _grant_request(options: dict[str, list[str]]) -> GrantRequest:
    key_type, key_data = _required(options, "--key")
    line = KeyLine(
        grant_id=check_grant_id(_required(options, "--grant-id")[0]),
        key=parse_public_key(key_type, key_data),
        expires=parse_expiry(_required(options, "--expires")[0]),
        sources=parse_sources(options["--from"][0]) if "--from" in options else (),
        jump_to=check_jump_hosts(tuple(dict.fromkeys(options.get("--jump-to", [])))),
    )
    return GrantRequest(login=check_login(_required(options, "--login")[0]), line=line)


def _options(words: list[str], spec: Mapping[str, tuple[int, bool]]) -> dict[str, list[str]]:
    """Read `--option value…` words by `spec`; repeatable options collect their values."""
    found: dict[str, list[str]] = {}
    position = 0
    while position < len(words):
        option = words[position]
        if option not in spec:
            raise BadCommand(f"unexpected argument {option[:40]!r}")
        arity, repeatable = spec[option]
        if option in found and not repeatable:
            raise BadCommand(f"{option} given twice")
        values = words[position + 1 : position + 1 + arity]
        # A value never starts with '-': `--grant-id --login x` is a missing value, not an id.
        if len(values) != arity or any(value.startswith("-") for value in values):
            raise BadCommand(f"{option} needs {arity} value{'s' if arity > 1 else ''}")
        found.setdefault(option, []).extend(values)
        position += 1 + arity
    return found


def _required(options: Mapping[str, list[str]], name: str) -> list[str]:
    if name not in options:
        raise BadCommand(f"{name} is required")
    return options[name]


def _caller(environ: Mapping[str, str]) -> str:
    """` via ADDRESS[ as USER]` for the log, from what sshd and sudo set (validated)."""
    text = ""
    address = environ.get("SSH_CLIENT", "").split(" ")[0]
    with contextlib.suppress(ValueError):  # absent or not an address: leave it out
        text += f" via {ipaddress.ip_address(address)}"
    sudo_user = environ.get("SUDO_USER", "")
    if re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", sudo_user):
        text += f" as {sudo_user}"
    return text


def _log(priority: int, message: str) -> None:
    # openlog each time is cheap and keeps the ident right whoever else used syslog before.
    syslog.openlog(SYSLOG_IDENT, syslog.LOG_PID, syslog.LOG_AUTH)
    syslog.syslog(priority, message)
