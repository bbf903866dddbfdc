"""piu's command line: parse arguments, run a flow, print, exit. The only module that does so.

Exit codes (SPEC §9): 0 ok, 1 error, 2 usage or configuration, 3 not authenticated, 4 denied,
6 unavailable. Every PiuError becomes one message plus a hint on stderr, never a traceback
(PIU_DEBUG=1 shows one for unexpected errors). httpx and cryptography are imported inside the
commands, so `piu --help` and `piu --version` start fast.

`piu HOST REASON…` is `piu request-access HOST REASON…` when HOST is not a command and looks
like a host (contains `.` or `@`), so a mistyped command is still reported as one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import click

from piu import __version__, errors
from piu.render import escape

if TYPE_CHECKING:
    import httpx

    from piu.client import EvenClient
    from piu.config import Settings
    from piu.paths import Paths

EXIT_CODES: tuple[tuple[type[errors.PiuError], int], ...] = (
    (errors.UsageProblem, 2),
    (errors.ConfigError, 2),
    (errors.NotAuthenticated, 3),
    (errors.Denied, 4),
    (errors.Unavailable, 6),
)
STATUS_CHOICE = click.Choice(
    ["PUSHING", "GRANTED", "DENIED", "FAILED", "EXPIRED", "REVOKED", "PENDING_APPROVAL"],
    case_sensitive=False,
)


@dataclass
class Runtime:
    """The outside world the commands use, plus the global flags; tests pass their own."""

    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    transport: httpx.BaseTransport | None = None  # None: real network
    sleep: Callable[[float], None] | None = None  # None: time.sleep
    execvp: Callable[[str, list[str]], Any] = os.execvp
    even_url: str | None = None
    cacert: str | None = None
    token_command: str | None = None

    def paths(self) -> Paths:
        from piu.paths import resolve_paths

        return resolve_paths(self.env)

    def settings(self) -> Settings:
        from pathlib import Path

        from piu.config import load_settings

        config_file = self.env.get("PIU_CONFIG") or self.paths().config_file
        flags = {"even_url": self.even_url, "cacert": self.cacert}
        return load_settings(Path(config_file), self.env, flags)

    def client(self, settings: Settings) -> EvenClient:
        from piu.client import EvenClient
        from piu.token import resolve_token

        base_url = settings.require_even_url()
        token = resolve_token(self.env, self.token_command)
        return EvenClient(
            base_url, token, cacert=settings.cacert, transport=self.transport, sleep=self.sleep
        )


def exit_code(err: errors.PiuError) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(err, kind)), 1)


def fail(err: errors.PiuError) -> NoReturn:
    click.echo(f"piu: {escape(str(err))}", err=True)
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
            click.echo(f"piu: unexpected error: {type(err).__name__}: {escape(str(err))}", err=True)
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
@click.pass_context
def cli(
    ctx: click.Context, even_url: str | None, cacert: str | None, token_command: str | None
) -> None:
    """piu: just-in-time SSH access through Even.

    \b
    piu request-access [LOGIN@]HOST REASON…   (or just: piu HOST REASON…)
    piu list-access | piu whoami | piu revoke ID
    """
    runtime = ctx.ensure_object(Runtime)
    runtime.even_url, runtime.cacert = even_url, cacert
    runtime.token_command = token_command


output_option = click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)


@cli.command("request-access")
@click.argument("target", metavar="[LOGIN@]HOST")
@click.argument("reason", nargs=-1, required=True)
@click.option("-t", "--lifetime", type=click.IntRange(min=1), metavar="MIN", help="Minutes.")
@click.option("-O", "--bastion", metavar="NAME", help="Jump through this bastion.")
@click.option(
    "--remote",
    metavar="[LOGIN@]HOST",
    help="Classic form: the first argument is the bastion, this is the host behind it.",
)
@click.option(
    "--mode", type=click.Choice(["certificate", "push"]), default="certificate", show_default=True
)
@click.option("--connect", is_flag=True, help="Run ssh right away.")
@output_option
@click.pass_obj
def request_access(
    runtime: Runtime,
    target: str,
    reason: tuple[str, ...],
    lifetime: int | None,
    bastion: str | None,
    remote: str | None,
    mode: str,
    connect: bool,
    output: str,
) -> None:
    """Ask Even for access to HOST, giving REASON (e.g. a ticket id); print the ssh command."""
    from piu import access, render

    text = " ".join(reason)
    if not text.strip():
        raise click.BadParameter("must not be empty", param_hint="REASON")
    if remote is not None:  # classic form: request-access BASTION REASON --remote HOST
        if "@" in target:
            raise click.BadParameter("with --remote, this is the bastion", param_hint="TARGET")
        if bastion is not None and bastion != target:
            raise click.UsageError("--bastion and the bastion before --remote disagree")
        bastion, target = target, remote
    login, hostname = access.split_target(target)
    settings = runtime.settings()
    spec = access.AccessSpec(
        hostname=hostname,
        reason=text,
        login=login,
        bastion=bastion or settings.bastion,
        lifetime_minutes=lifetime,
        mode=mode,
    )
    with runtime.client(settings) as client:
        outcome = access.request_access(client, runtime.paths(), spec)
    if output == "json":
        click.echo(render.to_json(outcome.as_json()))
    else:
        click.echo(render.grant_text(outcome), err=connect)
    if connect:
        sys.stdout.flush()
        try:
            runtime.execvp(outcome.ssh_argv[0], outcome.ssh_argv)
        except OSError as exc:
            raise errors.PiuError(f"cannot run ssh: {exc.strerror}") from exc


@cli.command("list-access")
@click.option(
    "-o", "--output", type=click.Choice(["text", "json", "tsv"]), default="text", show_default=True
)
@click.option("--status", type=STATUS_CHOICE)
@click.option("--hostname", metavar="HOST")
@click.option("--username", metavar="USER", help="Auditors and admins only.")
@click.option("--login", metavar="LOGIN")
@click.option("--limit", type=click.IntRange(min=1), metavar="N")
@click.option("--offset", type=click.IntRange(min=0), metavar="N")
@click.pass_obj
def list_access(
    runtime: Runtime,
    output: str,
    status: str | None,
    hostname: str | None,
    username: str | None,
    login: str | None,
    limit: int | None,
    offset: int | None,
) -> None:
    """List access requests (yours; everyone's for auditors and admins)."""
    from piu import render

    filters: dict[str, str | int | None] = {
        "status": status.upper() if status else None,
        "hostname": hostname,
        "username": username,
        "login": login,
        "limit": limit,
        "offset": offset,
    }
    with runtime.client(runtime.settings()) as client:
        page = client.list_access(filters)
    if output == "json":
        click.echo(render.to_json(page.raw))
        return
    click.echo(render.access_tsv(page) if output == "tsv" else render.access_table(page))
    if page.next is not None:
        click.echo(f"piu: more results: --offset {page.next}", err=True)


@cli.command()
@output_option
@click.pass_obj
def whoami(runtime: Runtime, output: str) -> None:
    """Show who Even thinks you are and what the policy lets you request."""
    from piu import render

    with runtime.client(runtime.settings()) as client:
        identity = client.whoami()
    click.echo(render.to_json(identity.raw) if output == "json" else render.identity_text(identity))


@cli.command()
@click.argument("request_id", metavar="ID")
@click.option("--reason", help="Why (kept in the audit log).")
@output_option
@click.pass_obj
def revoke(runtime: Runtime, request_id: str, reason: str | None, output: str) -> None:
    """End grant ID now: its certificates stop working, pushed keys are removed."""
    from piu import render
    from piu.models import REQUEST_ID_RE

    if not REQUEST_ID_RE.fullmatch(request_id):
        raise click.BadParameter("not a request id", param_hint="ID")
    with runtime.client(runtime.settings()) as client:
        answer = client.revoke(request_id, reason)
    if output == "json":
        click.echo(render.to_json(answer.raw if answer else {"id": request_id}))
    else:
        click.echo(render.revoked_text(request_id, answer.status if answer else None))


def main() -> None:
    cli.main(prog_name="piu")
