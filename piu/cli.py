"""piu's command line: the group, its global flags, and errors → messages and exit codes.

Exit codes (SPEC §9): 0 ok, 1 error, 2 usage or configuration, 3 not authenticated, 4 denied,
5 still pending (waiting for approvers), 6 unavailable. Every PiuError becomes one message
plus a hint on stderr, never a traceback (PIU_DEBUG=1 shows one for unexpected errors). The
commands live in `cmd_access`, `cmd_approvals`, `cmd_login` and `cmd_config`; they import
httpx and cryptography only when they run, so `piu --help`, `--version` and shell completion
start fast.

`piu HOST REASON…` is `piu request-access HOST REASON…` when HOST is not a command and looks
like a host (contains `.` or `@`), so a mistyped command is still reported as one.
"""

from __future__ import annotations

from typing import Any, NoReturn

import click

from piu import __version__, cmd_access, cmd_approvals, cmd_config, cmd_keys, cmd_login, errors
from piu.render import escape
from piu.runtime import Runtime

__all__ = ["Runtime", "cli", "main"]

EXIT_CODES: tuple[tuple[type[errors.PiuError], int], ...] = (
    (errors.UsageProblem, 2),
    (errors.ConfigError, 2),
    (errors.NotAuthenticated, 3),
    (errors.Denied, 4),
    (errors.StillPending, 5),
    (errors.Unavailable, 6),
)


def exit_code(err: errors.PiuError) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(err, kind)), 1)


def fail(err: errors.PiuError) -> NoReturn:
    from piu.debug import redact

    # redact: a message may quote an IdP or server answer; a token must not leak through it.
    click.echo(f"piu: {escape(redact(str(err)))}", err=True)
    if err.hint:
        click.echo(f"piu: hint: {escape(err.hint)}", err=True)
    raise click.exceptions.Exit(exit_code(err))


class PiuGroup(click.Group):
    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        first = args[0] if args else ""
        is_host = not first.startswith("-") and ("." in first or "@" in first)
        if is_host and self.get_command(ctx, first) is None:
            args = ["request-access", *args]
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.PiuError as err:
            fail(err)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:
            # The CLI boundary: users get one line, developers can ask for the traceback.
            runtime = ctx.find_object(Runtime)
            if runtime is not None and runtime.env.get("PIU_DEBUG"):
                raise
            from piu.debug import redact

            message = escape(redact(str(err)))
            click.echo(f"piu: unexpected error: {type(err).__name__}: {message}", err=True)
            click.echo("piu: hint: run again with PIU_DEBUG=1 for details", err=True)
            raise click.exceptions.Exit(1) from err


@click.group(cls=PiuGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="piu")
@click.option("--even-url", metavar="URL", help="Even's base URL (over PIU_EVEN_URL, piu.yaml).")
@click.option("--cacert", metavar="FILE", help="CA bundle for Even's TLS certificate.")
@click.option(
    "--token-command",
    metavar="CMD",
    help="Run CMD (split like a shell, run without one) and use its output as the token.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug output on stderr (tokens masked).")
@click.pass_context
def cli(
    ctx: click.Context,
    even_url: str | None,
    cacert: str | None,
    token_command: str | None,
    verbose: bool,
) -> None:
    """piu: just-in-time SSH access through Even.

    \b
    piu login                                  log in with your identity provider
    piu request-access [LOGIN@]HOST REASON…    (or just: piu HOST REASON…)
    piu ssh [LOGIN@]HOST [-- SSH-ARGS…]        reuse or request a grant, then ssh
    piu list-access | piu whoami | piu revoke ID | piu config show
    piu wait ID | piu cancel ID                waiting for approvers
    piu approvals | piu approve ID | piu deny ID -m WHY | piu review ID
    piu keys add FILE                          register a public key for push mode
    """
    runtime = ctx.ensure_object(Runtime)
    runtime.even_url, runtime.cacert = even_url, cacert
    runtime.token_command = token_command
    runtime.verbose = verbose
    if verbose:
        from piu import debug

        debug.enable()
        ctx.call_on_close(debug.disable)


for _command in (
    *cmd_login.COMMANDS,
    *cmd_access.COMMANDS,
    *cmd_approvals.COMMANDS,
    *cmd_keys.COMMANDS,
    *cmd_config.COMMANDS,
):
    cli.add_command(_command)


def main() -> None:
    cli.main(prog_name="piu")
