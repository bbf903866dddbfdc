"""`even-audit`: export the log and read it (verification with checkpoints comes with SPEC §8).

The only module in `audit` that parses arguments or prints. Exit 2 on usage or I/O errors.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import click


@click.group()
@click.version_option(package_name="even-piu")
def main() -> None:
    """Export and inspect Even's hash-chained audit log."""


@main.command()
@click.option(
    "--database",
    "database_url",
    required=True,
    help="Read the store directly (read-only, unaudited), e.g. sqlite:////path/even.db",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of standard output.",
)
def export(database_url: str, output: Path | None) -> None:
    """Export the whole log as JSONL."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    from audit.export import jsonl_lines

    click.echo(
        "even-audit: exporting straight from the database: read-only and NOT audited", err=True
    )
    url = database_url
    if url.startswith("sqlite:///"):
        url = f"sqlite:///file:{url[len('sqlite:///') :]}?mode=ro&uri=true"
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            sink = output.open("wb") if output else sys.stdout.buffer
            try:
                for line in jsonl_lines(conn):
                    sink.write(line)
            finally:
                if output:
                    sink.close()
    except (SQLAlchemyError, OSError) as exc:
        click.echo(f"even-audit: error: export failed: {type(exc).__name__}: {exc}", err=True)
        sys.exit(2)


@main.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--username")
@click.option("--hostname")
@click.option("--since", help="RFC 3339 time; records at or after it.")
def show(
    file: IO[str], username: str | None, hostname: str | None, since: str | None
) -> None:
    """Who had access to what, when and why, as a table (text escaped)."""
    import json

    from audit.show import read_jsonl, table

    try:
        records = [
            r
            for r in read_jsonl(file)
            if (username is None or r.get("username") == username)
            and (hostname is None or r.get("hostname") == hostname)
            and (since is None or str(r.get("time", "")) >= since)
        ]
    except (json.JSONDecodeError, OSError) as exc:
        click.echo(f"even-audit: error: cannot read {file.name}: {exc}", err=True)
        sys.exit(2)
    for line in table(records):
        click.echo(line)


if __name__ == "__main__":
    main()
