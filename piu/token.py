"""Where piu's bearer token comes from: --token-command, then PIU_TOKEN, then `piu login`.

`--token-command CMD` is split like a shell would (shlex) but run without one, so nothing in
CMD is expanded or interpreted; its stdout is the token, its stderr and stdin stay the
user's (so the command can prompt). The cached `piu login` token (`piu.login`) comes last,
passed in as a function so this module stays free of HTTP. The token is never part of an
error message, and each one is registered with `piu.debug` so `-v` masks it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from piu.debug import add_secret
from piu.errors import NotAuthenticated, NotLoggedIn, TokenCommandFailed, UsageProblem

TOKEN_COMMAND_TIMEOUT = 120.0  # seconds; long enough for a command that prompts
# One line of visible ASCII: what a bearer token is, and nothing that could split a header.
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Credential:
    token: str = field(repr=False)  # never in a repr, so never in a traceback either
    source: str  # "--token-command", "PIU_TOKEN" or "login": decides the hint after a 401


def resolve_credential(
    env: Mapping[str, str],
    token_command: str | None = None,
    cached: Callable[[], str] | None = None,
) -> Credential:
    if token_command is not None:
        credential = Credential(_run_token_command(token_command), "--token-command")
    elif env.get("PIU_TOKEN", "").strip():
        credential = Credential(_checked(env["PIU_TOKEN"].strip(), "PIU_TOKEN"), "PIU_TOKEN")
    elif cached is not None:
        credential = Credential(_checked(cached(), "the cached login token"), "login")
    else:
        raise NotLoggedIn(
            "not logged in: run `piu login`", hint="or set PIU_TOKEN, or pass --token-command CMD"
        )
    add_secret(credential.token)
    return credential


def resolve_token(
    env: Mapping[str, str],
    token_command: str | None = None,
    cached: Callable[[], str] | None = None,
) -> str:
    return resolve_credential(env, token_command, cached).token


def _run_token_command(command: str) -> str:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageProblem(f"--token-command: {exc}") from exc
    if not argv:
        raise UsageProblem("--token-command is empty")
    name = argv[0]
    try:
        proc = subprocess.run(  # shell=False: argv, never a shell string
            argv, stdout=subprocess.PIPE, check=False, timeout=TOKEN_COMMAND_TIMEOUT
        )
    except FileNotFoundError as exc:
        raise TokenCommandFailed(f"token command not found: {name}") from exc
    except subprocess.TimeoutExpired as exc:
        raise TokenCommandFailed(
            f"token command {name} did not finish within {TOKEN_COMMAND_TIMEOUT:.0f} s"
        ) from exc
    except OSError as exc:
        raise TokenCommandFailed(f"cannot run token command {name}: {exc.strerror}") from exc
    if proc.returncode != 0:
        raise TokenCommandFailed(
            f"token command {name} exited with status {proc.returncode}",
            hint="run it yourself to see why",
        )
    try:
        token = proc.stdout.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise TokenCommandFailed(f"token command {name} printed non-ASCII output") from exc
    if not token:
        raise TokenCommandFailed(f"token command {name} printed nothing")
    return _checked(token, f"the output of token command {name}")


def _checked(token: str, source: str) -> str:
    if not _TOKEN_RE.fullmatch(token):
        raise NotAuthenticated(
            f"{source} is not a bearer token (expected one line of printable ASCII)"
        )
    return token
