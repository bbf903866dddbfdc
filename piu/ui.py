"""Messages for people on stderr: notes and warnings, escaped, prefixed with `piu:`.

stdout is kept for what a command produces (a table, JSON, the ssh command), so scripts can
read it while people still see what piu did and what went wrong.
"""

from __future__ import annotations

import click

from piu.render import escape


def note(message: str) -> None:
    click.echo(f"piu: {escape(message)}", err=True)


def warn(message: str, hint: str = "") -> None:
    click.echo(f"piu: warning: {escape(message)}", err=True)
    if hint:
        click.echo(f"piu: hint: {escape(hint)}", err=True)
