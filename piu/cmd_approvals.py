"""Approval commands: wait, approvals, approve, deny, cancel, review; and `obtain`, the
request-then-wait-then-keep flow `piu request-access` and `piu ssh` share.

A 202 answer prints one line saying who must approve and until when, then waits
(`piu.wait`); a granted answer is kept exactly like a direct grant (`piu.access.complete`).
`--no-wait` and Ctrl-C leave the request pending and exit 5 with `piu wait ID`. Deciding
commands print what the request is now; Even's refusals (self-approval, not an approver, no
longer pending, …) come back as PiuErrors with a hint, like every other command.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from piu import errors
from piu.runtime import Runtime
from piu.ui import note

if TYPE_CHECKING:
    from piu.access import AccessSpec, Outcome
    from piu.client import EvenClient
    from piu.models import AccessRequest, Grant, Page

PENDING = "PENDING_APPROVAL"
output_option = click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)


def obtain(
    runtime: Runtime,
    client: EvenClient,
    spec: AccessSpec,
    *,
    no_wait: bool = False,
    ssh_options: Sequence[str] = (),
) -> Outcome | Grant:
    """Request access; wait for approvers when asked to; keep the grant. A still-pending
    answer (only with `no_wait`) is returned as is for the caller to show before exit 5."""
    from piu import access, pending

    paths, settings = runtime.paths(), runtime.settings()
    key, grant = access.submit(client, paths, spec)
    if grant.status == PENDING:
        pending.remember(paths, grant)
        if no_wait:
            return grant
        grant = wait_for(runtime, client, grant)
    if grant.emergency:
        note("break-glass access: granted now, and an approver or admin will review it")
    return access.complete(
        paths,
        key,
        grant,
        now=runtime.clock(),
        ssh_options=ssh_options,
        ssh_config=settings.ssh_config,
    )


def wait_for(runtime: Runtime, client: EvenClient, grant: Grant) -> Grant:
    """Wait until `grant` (pending) is decided; the granted answer, or the error why not."""
    import time

    from piu import pending, wait

    note(wait.pending_line(grant, waiting=True))
    spinner = wait.Spinner(_stderr_write, enabled=runtime.stderr_isatty())
    waiter = wait.Waiter(
        client=client,
        sleep=runtime.sleep or time.sleep,
        clock=runtime.clock,
        spinner=spinner,
        delays=wait.backoff(),
    )
    try:
        decided = waiter.until_decided(grant)
    except KeyboardInterrupt:
        spinner.clear()
        raise left_pending(grant.id) from None
    finally:
        spinner.clear()
    if decided.status != PENDING:
        pending.forget(runtime.paths(), grant.id)
    return wait.conclude(decided)


def left_pending(request_id: str) -> errors.StillPending:
    from piu.render import escape

    rid = escape(request_id)
    return errors.StillPending(f"request {rid} is still pending", hint=f"piu wait {rid}")


def _stderr_write(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def complete_pending(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Ids of requests piu left pending (completion runs in its own process: real env)."""
    from piu import pending
    from piu.paths import resolve_paths

    return [
        click.shell_completion.CompletionItem(rid)
        for rid in pending.ids(resolve_paths(os.environ))
        if rid.startswith(incomplete)
    ]


def _checked_id(request_id: str) -> str:
    from piu.models import REQUEST_ID_RE

    if not REQUEST_ID_RE.fullmatch(request_id):
        raise click.BadParameter("not a request id", param_hint="ID")
    return request_id


def show_outcome(runtime: Runtime, outcome: Outcome, output: str, no_agent: bool) -> None:
    from piu import render
    from piu.cmd_access import load_into_agent

    if not no_agent:
        load_into_agent(runtime, outcome)
    text = render.to_json(outcome.as_json()) if output == "json" else render.grant_text(outcome)
    click.echo(text)


@click.command("wait")
@click.argument("request_id", metavar="ID", shell_complete=complete_pending)
@click.option("--no-agent", is_flag=True, help="Do not add the certificate to ssh-agent.")
@output_option
@click.pass_obj
def wait_command(runtime: Runtime, request_id: str, no_agent: bool, output: str) -> None:
    """Wait for approvers of your request ID, then keep the grant like request-access does."""
    from piu import access
    from piu.keys import ensure_key_pair

    _checked_id(request_id)
    settings = runtime.settings()
    with runtime.client(settings) as client:
        grant = client.get_access_request(request_id)
        if grant.status == PENDING:
            grant = wait_for(runtime, client, grant)
        else:
            grant = _conclude_now(runtime, grant)
    key = ensure_key_pair(runtime.paths().ssh_dir)
    outcome = access.complete(
        runtime.paths(), key, grant, now=runtime.clock(), ssh_config=settings.ssh_config
    )
    show_outcome(runtime, outcome, output, no_agent)


def _conclude_now(runtime: Runtime, grant: Grant) -> Grant:
    from piu import pending, wait

    pending.forget(runtime.paths(), grant.id)
    return wait.conclude(grant)


@click.command()
@output_option
@click.option("--reviews", is_flag=True, help="Break-glass grants to review instead.")
@click.option("--overdue", is_flag=True, help="With --reviews: only those past their deadline.")
@click.pass_obj
def approvals(runtime: Runtime, output: str, reviews: bool, overdue: bool) -> None:
    """List pending requests you may approve (or, with --reviews, break-glass to review)."""
    from piu import render

    with runtime.client(runtime.settings()) as client:
        page = client.reviews(overdue=overdue) if reviews else client.approvals()
    if output == "json":
        click.echo(render.to_json(page.raw))
    else:
        click.echo(approvals_table(page, reviews=reviews))


def approvals_table(page: Page, *, reviews: bool = False) -> str:
    from piu.render import escape, table

    if not page.items:
        return "nothing to review" if reviews else "no requests waiting for your approval"
    rows = [("ID", "REQUESTER", "TARGET", "APPROVALS", "EXPIRES", "REASON")]
    for item in page.items:
        approval = item.approval
        count = "-" if approval is None else f"{len(approval.approvals)}/{approval.needed}"
        expires = (approval.expires_at if approval else None) or item.raw.get("review_due")
        rows.append(
            (
                escape(item.id),
                escape(item.username or "-"),
                f"{escape(item.login or '-')}@{escape(item.hostname or '-')}",
                count,
                escape(str(expires or "-")),
                escape(item.reason or "-"),
            )
        )
    return table(rows)


def _decided(runtime: Runtime, request_id: str, verb: str, body: dict[str, str] | None) -> None:
    with runtime.client(runtime.settings()) as client:
        answer = client.decide(_checked_id(request_id), verb, body)
    click.echo(decision_text(verb, request_id, answer))
    if verb == "cancel":
        from piu import pending

        pending.forget(runtime.paths(), request_id)


def decision_text(verb: str, request_id: str, answer: AccessRequest) -> str:
    from piu.render import escape

    rid, status = escape(request_id), escape(answer.status)
    done = {"approve": "Approved", "deny": "Denied", "cancel": "Cancelled", "review": "Reviewed"}
    text = f"{done[verb]} {rid} (status {status})"
    approval = answer.approval
    if verb == "approve" and approval is not None and answer.status == PENDING:
        text += f"; {approval.remaining} more approval(s) needed"
    elif verb == "approve" and answer.status == "GRANTED":
        text += "; access is granted"
    return text


COMMENT_HELP = "Why (kept in the audit log)."


@click.command()
@click.argument("request_id", metavar="ID")
@click.option("-m", "--comment", metavar="COMMENT", help=COMMENT_HELP)
@click.pass_obj
def approve(runtime: Runtime, request_id: str, comment: str | None) -> None:
    """Approve request ID (you must be one of its rule's approvers, and not its requester)."""
    _decided(runtime, request_id, "approve", {"comment": comment} if comment else {})


@click.command()
@click.argument("request_id", metavar="ID")
@click.option("-m", "--comment", metavar="COMMENT", required=True, help=COMMENT_HELP)
@click.pass_obj
def deny(runtime: Runtime, request_id: str, comment: str) -> None:
    """Deny request ID, saying why; it ends at once."""
    _decided(runtime, request_id, "deny", {"comment": _non_blank(comment)})


@click.command()
@click.argument("request_id", metavar="ID", shell_complete=complete_pending)
@click.pass_obj
def cancel(runtime: Runtime, request_id: str) -> None:
    """Cancel your own pending request ID."""
    _decided(runtime, request_id, "cancel", None)


@click.command()
@click.argument("request_id", metavar="ID")
@click.option(
    "--verdict", type=click.Choice(["justified", "unjustified"]), required=True, help="Your call."
)
@click.option("-m", "--comment", metavar="COMMENT", required=True, help=COMMENT_HELP)
@click.pass_obj
def review(runtime: Runtime, request_id: str, verdict: str, comment: str) -> None:
    """Review break-glass access ID after the fact (an approver or admin, not its requester)."""
    _decided(runtime, request_id, "review", {"verdict": verdict, "comment": _non_blank(comment)})


def _non_blank(comment: str) -> str:
    if not comment.strip():
        raise click.BadParameter("must say something", param_hint="-m/--comment")
    return comment


COMMANDS = (wait_command, approvals, approve, deny, cancel, review)
