"""piu's entry point: `piu ssh` with a certificate already held, before click is imported.

Why: `piu ssh HOST` with a valid grant only has to find the grant, check its certificate and
exec ssh, yet importing click and every command module cost more than that work. So the
console script and `python -m piu` enter here. Exactly one shape of command line is taken
on this path: `ssh [LOGIN@]HOST`, optionally followed by `--` and ssh's own arguments, with
no global flags and no options; and only when piu holds a still-valid grant for it. That
branch runs the same functions as the click command's (`held_grant`, `using_note`, exec);
the click command calls them too, so the two cannot drift apart. Anything else — another
command, an option, no held grant, any error — goes to the full CLI (piu.cli), which starts
from scratch, so every message and exit code is still the CLI's own.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from piu.grants import HeldGrant
    from piu.runtime import Runtime


def main() -> None:
    _held_ssh(sys.argv[1:])  # execs ssh, or returns to let the CLI handle it
    from piu.cli import main as cli_main

    cli_main()


def held_grant(
    runtime: Runtime, target: str, bastion: str | None
) -> tuple[HeldGrant, list[str]] | None:
    """The held grant for `piu ssh TARGET` (and `-O BASTION`) and its ssh argv, or None."""
    from piu import access

    login, hostname = access.split_target(target)
    settings = runtime.settings()
    wanted = access.AccessSpec(
        hostname=hostname, reason="", login=login, bastion=bastion or settings.bastion
    )
    return access.held_connection(
        runtime.paths(), wanted, runtime.clock(), ssh_config=settings.ssh_config
    )


def using_note(grant: HeldGrant, now: float) -> str:
    return f"using grant {grant.id} (valid for {minutes(grant.valid_before - now)})"


def minutes(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def _held_ssh(args: list[str], runtime: Runtime | None = None) -> None:
    if len(args) < 2 or args[0] != "ssh" or args[1].startswith("-"):
        return
    if len(args) > 2 and args[2] != "--":
        return
    from piu.render import escape
    from piu.runtime import Runtime

    runtime = runtime or Runtime()
    try:
        held = held_grant(runtime, args[1], None)
    except Exception:  # the full CLI runs again and reports it properly
        return
    if held is None:
        return
    grant, argv = held
    sys.stderr.write(f"piu: {escape(using_note(grant, runtime.clock()))}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    command = [*argv, *args[3:]]
    try:
        runtime.execvp(command[0], command)
    except OSError as exc:  # as cmd_access.exec_ssh reports it, through the CLI's exit code
        sys.stderr.write(f"piu: cannot run {escape(command[0])}: {exc.strerror}\n")
        sys.stderr.write("piu: hint: is OpenSSH's ssh installed?\n")
        sys.exit(1)
