"""piu's entry point: `piu ssh` with a certificate already held, before click is imported.

Why: `piu ssh HOST` with a valid grant only has to find the grant, check its certificate and
exec ssh, yet importing click and every command module cost more than that work. So the
console script and `python -m piu` enter here. Exactly one shape of command line is taken
on this path: `ssh [LOGIN@]HOST`, optionally followed by `--` and ssh's own arguments, with
no global flags and no options; and only when piu holds a still-valid grant for it.

Two tiers, cheapest first. piu.held answers the common case importing almost nothing; when
it is unsure (see its contract) `held_grant` runs, which is what the click command runs too,
so the two cannot drift apart (and the tests hold piu.held to `held_grant`'s answers). The
note is the same function on every path, and a failed exec reads as the CLI's. Anything
else — another command, an option, no held grant, any error — goes to the full CLI
(piu.cli), which starts from scratch, so every message and exit code is still the CLI's own.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing alone costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable

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


def _held_ssh(args: list[str], runtime: Runtime | None = None) -> None:
    if len(args) < 2 or args[0] != "ssh" or args[1].startswith("-"):
        return
    if len(args) > 2 and args[2] != "--":
        return
    import time

    from piu import held

    env = os.environ if runtime is None else runtime.env
    clock = time.time if runtime is None else runtime.clock
    execvp = os.execvp if runtime is None else runtime.execvp
    try:
        found = held.lookup(env, args[1], clock())
    except Exception:  # a bug there must not cost the user more than the slower tier
        found = None
    if found is not None:
        note, argv = held.using_note(found.id, found.valid_before, clock()), found.argv
    else:
        from piu.render import escape
        from piu.runtime import Runtime

        runtime = runtime or Runtime()
        try:
            answer = held_grant(runtime, args[1], None)
        except Exception:  # the full CLI runs again and reports it properly
            return
        if answer is None:
            return
        grant, argv = answer
        note = escape(held.using_note(grant.id, grant.valid_before, runtime.clock()))
    sys.stderr.write(f"piu: {note}\n")
    _exec([*argv, *args[3:]], execvp)


def _exec(command: list[str], execvp: Callable[[str, list[str]], object]) -> None:
    """Replace piu with ssh; if ssh cannot be run, say so and exit 1 (as the CLI would)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        execvp(command[0], command)
    except OSError as exc:  # as cmd_access.exec_ssh reports it, through the CLI's exit code
        from piu.render import escape

        sys.stderr.write(f"piu: cannot run {escape(command[0])}: {exc.strerror}\n")
        sys.stderr.write("piu: hint: is OpenSSH's ssh installed?\n")
        sys.exit(1)
