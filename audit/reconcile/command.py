"""`even-audit reconcile`: the command line (audit.reconcile.run does the work).

Kept light: `even-audit` imports this module for every subcommand, and the parsers and the
index are imported only when `reconcile` runs.
"""

from __future__ import annotations

from pathlib import Path

import click

_EXISTING = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command()
@click.argument("export", type=_EXISTING)
@click.argument("more_logs", nargs=-1, type=_EXISTING, metavar="[LOG]...")
@click.option(
    "--public-key",
    "key_files",
    multiple=True,
    required=True,
    type=_EXISTING,
    help="Audit public key: PEM or an ssh-ed25519 line. Repeat for rotated keys.",
)
@click.option(
    "--sshd-log",
    "log_files",
    multiple=True,
    type=_EXISTING,
    help="sshd log: syslog auth.log or `journalctl -o json` output, gzip or not. Repeatable; "
    "files after the options are logs too (`--sshd-log /var/log/auth.log*`).",
)
@click.option(
    "--host", help="The host of log lines that name none (syslog files written without one)."
)
@click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="A table, or JSON Lines (one object per login and unused grant, then a summary).",
)
@click.option(
    "--log-end",
    help="RFC 3339 time no log line is later than; places RFC 3164 stamps (which have no "
    "year) in a year. Default: each file's modification time.",
)
@click.option(
    "--timezone",
    "zone_name",
    default="UTC",
    show_default=True,
    help="The zone RFC 3164 stamps (which name none) were written in, e.g. Europe/Paris.",
)
def reconcile(
    export: Path,
    more_logs: tuple[Path, ...],
    key_files: tuple[Path, ...],
    log_files: tuple[Path, ...],
    host: str | None,
    output_format: str,
    log_end: str | None,
    zone_name: str,
) -> None:
    """Reconcile sshd logins with the grants of a verified export.

    Each login is explained, unexplained, outside_window or wrong_host; each grant never
    used is unused. Exit 0: every login explained. Exit 1: some are not. Exit 2: usage or
    I/O error, or the export is INVALID.
    """
    logs = (*log_files, *more_logs)
    if not logs:
        raise click.UsageError("name at least one sshd log: --sshd-log FILE")
    from audit.reconcile.run import run

    run(export, key_files, logs, host, output_format, log_end, zone_name)
