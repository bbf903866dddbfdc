"""The access commands: request-access, ssh, list-access, whoami, revoke.

Each parses its arguments, calls `piu.access` / `piu.client` through the Runtime, prints, and
(for --connect and `piu ssh`) replaces itself with ssh via exec, argv only. Optional extras
(ssh-agent, clipboard) never fail a grant: they warn. A reason is asked for interactively only
when stdin is a terminal; scripts must pass it, so a pipe never hangs on a prompt.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import TYPE_CHECKING

import click

from piu import errors
from piu.runtime import Runtime
from piu.ui import note, warn

if TYPE_CHECKING:
    from piu.access import AccessSpec, Outcome
    from piu.models import Page

STATUS_CHOICE = click.Choice(
    [
        "PENDING_APPROVAL",
        "PUSHING",
        "GRANTED",
        "DENIED",
        "CANCELLED",
        "FAILED",
        "EXPIRED",
        "REVOKED",
    ],
    case_sensitive=False,
)
WATCH_INTERVAL = 5.0
CLEAR_SCREEN = "\x1b[H\x1b[2J"

output_option = click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
no_agent_option = click.option(
    "--no-agent", is_flag=True, help="Do not add the certificate to ssh-agent."
)


def complete_host(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Hosts piu holds grants for (completion runs in its own process: real env)."""
    from piu import grants
    from piu.paths import resolve_paths

    login, sep, partial = incomplete.rpartition("@")
    prefix = f"{login}@" if sep else ""
    return [
        click.shell_completion.CompletionItem(prefix + host)
        for host in grants.hostnames(resolve_paths(os.environ))
        if host.startswith(partial)
    ]


def ask_reason(runtime: Runtime, given: str | None) -> str:
    if given is not None and given.strip():
        return given
    if given is None and runtime.stdin_isatty():
        text: str = click.prompt("Reason (e.g. a ticket id)", err=True)
        if text.strip():
            return text
    raise click.UsageError("a reason is required (e.g. a ticket id): pass REASON or --reason")


@click.command("request-access")
@click.argument("target", metavar="[LOGIN@]HOST", shell_complete=complete_host)
@click.argument("reason", nargs=-1)
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
@click.option(
    "--tunnel",
    metavar="L:R",
    help="Forward 127.0.0.1:L here to port R on HOST (ssh -N -L); use with --connect to open it.",
)
@click.option("--connect", is_flag=True, help="Run ssh right away.")
@click.option("--clip", is_flag=True, help="Copy the ssh command to the clipboard.")
@click.option(
    "--no-wait", is_flag=True, help="If approvers must decide, do not wait (exit 5; piu wait ID)."
)
@click.option(
    "--emergency", is_flag=True, help="Break-glass: granted now where allowed, reviewed later."
)
@no_agent_option
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
    tunnel: str | None,
    connect: bool,
    clip: bool,
    no_wait: bool,
    emergency: bool,
    no_agent: bool,
    output: str,
) -> None:
    """Ask Even for access to HOST, giving REASON (e.g. a ticket id); print the ssh command.

    Without REASON, piu asks for one when run in a terminal. Where the host needs approvers,
    piu says who and waits (Ctrl-C leaves the request pending: `piu wait ID`).
    """
    from piu import access, render
    from piu.cmd_approvals import left_pending, obtain
    from piu.models import Grant
    from piu.sshcmd import tunnel_options
    from piu.wait import pending_line

    options = tunnel_options(tunnel) if tunnel else []
    if remote is not None:  # classic form: request-access BASTION REASON --remote HOST
        if "@" in target:
            raise click.BadParameter("with --remote, this is the bastion", param_hint="TARGET")
        if bastion is not None and bastion != target:
            raise click.UsageError("--bastion and the bastion before --remote disagree")
        bastion, target = target, remote
    login, hostname = access.split_target(target)
    settings = runtime.settings()
    text = ask_reason(runtime, " ".join(reason) if reason else None)
    spec = access.AccessSpec(
        hostname=hostname,
        reason=text,
        login=login,
        bastion=bastion or settings.bastion,
        lifetime_minutes=lifetime,
        mode=mode,
        emergency=emergency,
    )
    with runtime.client(settings) as client:
        outcome = obtain(runtime, client, spec, no_wait=no_wait, ssh_options=options)
    if isinstance(outcome, Grant):  # still pending and --no-wait: say so, exit 5
        if output == "json":
            click.echo(render.to_json(outcome.raw))
        note(pending_line(outcome, waiting=False))
        raise left_pending(outcome.id)
    if not no_agent:
        load_into_agent(runtime, outcome)
    if output == "json":
        click.echo(render.to_json(outcome.as_json()))
    else:
        click.echo(render.grant_text(outcome), err=connect)
    if clip:
        copy_command(runtime, outcome.ssh_argv)
    if connect:
        if tunnel:
            local = tunnel.split(":", 1)[0]
            note(f"tunnel at 127.0.0.1:{local} while ssh runs; Ctrl-C closes it")
        exec_ssh(runtime, outcome.ssh_argv)


@click.command("ssh")
@click.argument("target", metavar="[LOGIN@]HOST", shell_complete=complete_host)
@click.argument("ssh_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- SSH-ARGS…]")
@click.option("-r", "--reason", help="Why, if a new grant is needed (asked for in a terminal).")
@click.option("-t", "--lifetime", type=click.IntRange(min=1), metavar="MIN", help="Minutes.")
@click.option("-O", "--bastion", metavar="NAME", help="Jump through this bastion.")
@click.option("--new", is_flag=True, help="Ask for a new grant even if a valid one is held.")
@no_agent_option
@click.pass_obj
def ssh(
    runtime: Runtime,
    target: str,
    ssh_args: tuple[str, ...],
    reason: str | None,
    lifetime: int | None,
    bastion: str | None,
    new: bool,
    no_agent: bool,
) -> None:
    """Log in to HOST with a certificate piu holds, or a new grant; then run ssh.

    Anything after `--` goes to ssh: `piu ssh db-1.example.org -- uptime`.
    """
    from piu import access
    from piu.held import using_note
    from piu.launch import held_grant

    # The held-grant branch is shared with piu.launch, which takes it before click loads.
    held = None if new else held_grant(runtime, target, bastion)
    if held is not None:
        grant, argv = held
        note(using_note(grant.id, grant.valid_before, runtime.clock()))
    else:
        login, hostname = access.split_target(target)
        settings = runtime.settings()
        wanted = access.AccessSpec(
            hostname=hostname, reason="", login=login, bastion=bastion or settings.bastion
        )
        outcome = new_grant(runtime, wanted, reason=reason, lifetime=lifetime)
        if not no_agent:
            load_into_agent(runtime, outcome)
        note(f"granted {outcome.grant.id}, valid until {outcome.grant.valid_before or '?'}")
        argv = outcome.ssh_argv
    exec_ssh(runtime, [*argv, *ssh_args])


def new_grant(
    runtime: Runtime, wanted: AccessSpec, *, reason: str | None, lifetime: int | None
) -> Outcome:
    from dataclasses import replace

    from piu.cmd_approvals import obtain
    from piu.models import Grant

    spec = replace(wanted, reason=ask_reason(runtime, reason), lifetime_minutes=lifetime)
    with runtime.client(runtime.settings()) as client:
        outcome = obtain(runtime, client, spec)
    if isinstance(outcome, Grant):  # only with no_wait, which piu ssh never asks for
        raise errors.BadResponse(f"request {outcome.id} is unexpectedly still pending")
    return outcome


def load_into_agent(runtime: Runtime, outcome: Outcome) -> None:
    """Add the grant's certificates to ssh-agent when one runs; warn, never fail."""
    from piu import access
    from piu.agent import AgentError

    socket_path = runtime.env.get("SSH_AUTH_SOCK")
    if not socket_path or outcome.grant.certificate is None:
        return
    try:
        lifetime = access.add_to_agent(outcome, socket_path, runtime.clock())
    except AgentError as exc:
        warn(f"not added to ssh-agent: {exc}", "the printed ssh command works without it")
        return
    from piu.held import minutes

    note(f"added to ssh-agent for {minutes(lifetime)}")


def copy_command(runtime: Runtime, argv: list[str]) -> None:
    from piu.clip import ClipboardUnavailable, copy

    try:
        tool = copy(shlex.join(argv), runtime.env)
    except ClipboardUnavailable as exc:
        warn(str(exc), exc.hint)
        return
    note(f"ssh command copied to the clipboard ({tool})")


def exec_ssh(runtime: Runtime, argv: list[str]) -> None:
    from piu.debug import debug

    debug("exec %s", shlex.join(argv))  # paths and names only: no secret is ever in it
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        runtime.execvp(argv[0], argv)
    except OSError as exc:
        raise errors.PiuError(
            f"cannot run {argv[0]}: {exc.strerror}", hint="is OpenSSH's ssh installed?"
        ) from exc


@click.command("list-access")
@click.option(
    "-o", "--output", type=click.Choice(["text", "json", "tsv"]), default="text", show_default=True
)
@click.option("--status", type=STATUS_CHOICE)
@click.option("--pending", is_flag=True, help="Only requests waiting for approvers.")
@click.option("--hostname", metavar="HOST")
@click.option("--username", metavar="USER", help="Auditors and admins only.")
@click.option("--login", metavar="LOGIN")
@click.option("--limit", type=click.IntRange(min=1), metavar="N")
@click.option("--offset", type=click.IntRange(min=0), metavar="N")
@click.option("--watch", is_flag=True, help=f"Refresh every {WATCH_INTERVAL:.0f} s until Ctrl-C.")
@click.pass_obj
def list_access(
    runtime: Runtime,
    output: str,
    status: str | None,
    pending: bool,
    hostname: str | None,
    username: str | None,
    login: str | None,
    limit: int | None,
    offset: int | None,
    watch: bool,
) -> None:
    """List access requests (yours; everyone's for auditors and admins).

    Requests waiting for approvers show as PENDING_APPROVAL with their approvals so far.
    """
    import time

    if pending:
        if status is not None and status.upper() != "PENDING_APPROVAL":
            raise click.UsageError("--pending and --status disagree")
        status = "PENDING_APPROVAL"
    filters: dict[str, str | int | None] = {
        "status": status.upper() if status else None,
        "hostname": hostname,
        "username": username,
        "login": login,
        "limit": limit,
        "offset": offset,
    }
    colour, sleep = runtime.colour(), runtime.sleep or time.sleep
    with runtime.client(runtime.settings()) as client:
        try:
            while True:
                page = client.list_access(filters)
                if watch and runtime.stdout_isatty():
                    click.echo(CLEAR_SCREEN, nl=False, color=True)
                # color=: click strips escape codes unless told they are wanted.
                click.echo(_page_text(page, output, colour), color=colour)
                if page.next is not None:
                    click.echo(f"piu: more results: --offset {page.next}", err=True)
                if not watch:
                    return
                sleep(WATCH_INTERVAL)
        except KeyboardInterrupt:
            if not watch:
                raise
            # Ctrl-C is how --watch ends: not an error.


def _page_text(page: Page, output: str, colour: bool) -> str:
    from piu import render

    if output == "json":
        return render.to_json(page.raw)
    if output == "tsv":
        return render.access_tsv(page)
    return render.access_table(page, colour=colour)


@click.command()
@output_option
@click.pass_obj
def whoami(runtime: Runtime, output: str) -> None:
    """Show who Even thinks you are and what the policy lets you request."""
    from piu import render

    with runtime.client(runtime.settings()) as client:
        identity = client.whoami()
    click.echo(render.to_json(identity.raw) if output == "json" else render.identity_text(identity))


@click.command()
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


COMMANDS = (request_access, ssh, list_access, whoami, revoke)
