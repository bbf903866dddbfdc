"""Where piu's bearer token comes from: --token-command, then PIU_TOKEN.

`--token-command CMD` is split like a shell would (shlex) but run without one, so nothing in
CMD is expanded or interpreted; its stdout is the token, its stderr and stdin stay the
user's (so the command can prompt). The cached `piu login` token slots in after PIU_TOKEN.
The token is never part of an error message.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping

from piu.errors import NotAuthenticated, NotLoggedIn, TokenCommandFailed, UsageProblem

TOKEN_COMMAND_TIMEOUT = 120.0  # seconds; long enough for a command that prompts
# One line of visible ASCII: what a bearer token is, and nothing that could split a header.
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")


def resolve_token(env: Mapping[str, str], token_command: str | None = None) -> str:
    if token_command is not None:
        return _run_token_command(token_command)
    token = env.get("PIU_TOKEN", "").strip()
    if token:
        return _checked(token, "PIU_TOKEN")
    raise NotLoggedIn("not logged in: set PIU_TOKEN or pass --token-command")


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
