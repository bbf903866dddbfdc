"""`even-audit`: export the log, verify an export offline, read it as a table.

The only module in `audit` that parses arguments or prints; it also reads the files for
`verify`, so `audit.verify` stays bytes in, verdict out. Exit codes keep the security verdict
apart from everything else: `verify` exits 0 for VALID and 1 for INVALID (both on standard
output), and 2 for usage and I/O errors (on standard error), so a script can never mistake
"could not check" for "checked and tampered" or the reverse.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from audit.progress import Progress
from audit.reconcile.command import reconcile

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from audit.checkpoint import Checkpoint, PublicKeys, Receipt

READ_CHUNK = 1024 * 1024


@click.group()
@click.version_option(package_name="even-piu")
def main() -> None:
    """Export and inspect Even's hash-chained audit log."""


main.add_command(reconcile)


@main.command()
@click.option(
    "--url", help="Export from a running Even (audited there), e.g. https://even.example.com"
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding an auditor's access token (or set EVEN_AUDIT_TOKEN).",
)
@click.option("--token", help="The token itself (visible to other users: prefer --token-file).")
@click.option(
    "--cacert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CA bundle for Even's TLS certificate.",
)
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
)
@click.option("--since", help="CSV only: records at or after this RFC 3339 time.")
@click.option("--until", help="CSV only: records before this RFC 3339 time.")
@click.option(
    "--database",
    "database_url",
    help="Read the store directly (read-only, unaudited), e.g. sqlite:////path/even.db",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of standard output.",
)
def export(
    url: str | None,
    token_file: Path | None,
    token: str | None,
    cacert: Path | None,
    export_format: str,
    since: str | None,
    until: str | None,
    database_url: str | None,
    output: Path | None,
) -> None:
    """Export the log: from Even's API (--url), or read-only from its database (--database)."""
    if (url is None) == (database_url is None):
        _fail("name exactly one source: --url URL or --database URL")
    if url is not None:
        _export_remote(url, token_file, token, cacert, export_format, since, until, output)
    else:
        _export_database(str(database_url), output)


def _export_remote(
    url: str,
    token_file: Path | None,
    token: str | None,
    cacert: Path | None,
    export_format: str,
    since: str | None,
    until: str | None,
    output: Path | None,
) -> None:
    from audit import remote

    if token is not None:
        click.echo(
            "even-audit: warning: --token is visible in the process list; "
            "prefer --token-file or EVEN_AUDIT_TOKEN",
            err=True,
        )
    try:
        secret = remote.read_token(token_file, token)
        sink = output.open("wb") if output else sys.stdout.buffer
        progress = Progress("even-audit: export", sys.stderr)
        try:
            remote.export(
                url,
                secret,
                sink,
                export_format=export_format,
                since=since,
                until=until,
                cacert=cacert,
                on_chunk=progress.chunk,
            )
        finally:
            progress.done()
            if output:
                sink.close()
    except remote.RemoteExportError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the export: {exc.strerror}")


def _export_database(database_url: str, output: Path | None) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    from audit import store
    from audit.export import jsonl_lines

    click.echo(
        "even-audit: exporting straight from the database: read-only and NOT audited", err=True
    )
    url = database_url
    if url.startswith(("postgresql://", "postgres://")):
        # psycopg 3 is the driver Even installs (SQLAlchemy's default would be psycopg2).
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        url = f"sqlite:///file:{url[len('sqlite:///') :]}?mode=ro&uri=true"
    try:
        engine = create_engine(url)
        # Records and checkpoints are append-only, so bounding every read by `up_to` keeps
        # the file consistent even if the server appends while the batches are read.
        with engine.connect() as conn:
            up_to = _export_size(store.head(conn)[0], store.latest_checkpoint(conn))
            sink = output.open("wb") if output else sys.stdout.buffer
            progress = Progress("even-audit: export", sys.stderr, total_records=up_to)
            try:
                for line in jsonl_lines(conn, up_to=up_to):
                    sink.write(line)
                    progress.advance(1, len(line))
            finally:
                progress.done()
                if output:
                    sink.close()
    except (SQLAlchemyError, OSError) as exc:
        _fail(f"export failed: {type(exc).__name__}: {exc}")


def _export_size(last_seq: int, latest: dict[str, Any] | None) -> int:
    # Without the audit key this command cannot sign the head, so it stops at the newest
    # stored checkpoint (as the server's export stops at the one it makes) and says what is
    # left out; with no checkpoint at all it exports everything, which `verify` will refuse.
    if latest is None:
        click.echo(
            f"even-audit: no checkpoint stored yet: records 1..{last_seq} exported unsigned; "
            "`even-audit verify` will report them INVALID",
            err=True,
        )
        return last_seq
    size = int(latest["size"])
    if last_seq > size:
        click.echo(
            f"even-audit: records {size + 1}..{last_seq} are newer than the latest checkpoint "
            "and are left out",
            err=True,
        )
    return size


_EXISTING = click.Path(exists=True, dir_okay=False, path_type=Path)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--public-key",
    "key_files",
    multiple=True,
    required=True,
    type=_EXISTING,
    help="Audit public key: PEM or an ssh-ed25519 line. Repeat for rotated keys.",
)
@click.option(
    "--receipt",
    "receipt_files",
    multiple=True,
    type=_EXISTING,
    help="Receipts kept by piu (one JSON object per line). Repeatable.",
)
@click.option(
    "--checkpoint",
    "checkpoint_files",
    multiple=True,
    type=_EXISTING,
    help="A checkpoint saved earlier (GET /v1/audit/checkpoint). Repeatable.",
)
def verify(
    file: str,
    key_files: tuple[Path, ...],
    receipt_files: tuple[Path, ...],
    checkpoint_files: tuple[Path, ...],
) -> None:
    """Verify an exported JSONL log offline: chain, checkpoints, and anchors.

    Exit 0: VALID. Exit 1: INVALID (naming a record). Exit 2: usage or I/O error.
    Receipts and saved checkpoints are anchors: they catch a log cut back to an earlier
    checkpoint, or rewritten by whoever holds the audit key.
    """
    from audit.verify import Valid, verify_jsonl

    keys = _load_keys(key_files)
    receipts, saved = _load_anchors(receipt_files, checkpoint_files)
    progress = Progress("even-audit: verify", sys.stderr)
    try:
        with click.open_file(file, "rb") as handle:
            progress = Progress("even-audit: verify", sys.stderr, total_bytes=_size(handle))
            chunks = _chunks(handle, progress)
            verdict = verify_jsonl(chunks, keys, receipts=receipts, checkpoints=saved)
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror or exc}")
    finally:
        progress.done()
    click.echo(str(verdict))
    sys.exit(0 if isinstance(verdict, Valid) else 1)


def _chunks(handle: IO[bytes], progress: Progress) -> Iterator[bytes]:
    while chunk := handle.read(READ_CHUNK):
        progress.chunk(chunk)
        yield chunk


def _size(handle: IO[bytes]) -> int | None:
    """The file's size when it is a regular file (not stdin or a pipe), for a percentage."""
    try:
        info = os.fstat(handle.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _load_keys(paths: tuple[Path, ...]) -> PublicKeys:
    from audit.checkpoint import KeyFormatError, load_public_keys

    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            keys.update(load_public_keys(path.read_bytes()))
        except OSError as exc:
            _fail(f"cannot read {path}: {exc.strerror or exc}")
        except KeyFormatError as exc:
            _fail(f"{path}: {exc}")
    return keys


def _load_anchors(
    receipt_files: tuple[Path, ...], checkpoint_files: tuple[Path, ...]
) -> tuple[list[Receipt], list[Checkpoint]]:
    from audit.checkpoint import MalformedSignedObject, parse_checkpoint, parse_receipt

    # A file that is not what the flag says is a usage error (exit 2), not a verdict; a
    # well-formed anchor whose signature fails is a verdict (INVALID at its seq), in verify.
    receipts: list[Receipt] = []
    saved: list[Checkpoint] = []
    for path in receipt_files:
        try:
            receipts += [parse_receipt(obj) for obj in _json_objects(path)]
        except MalformedSignedObject as exc:
            _fail(f"{path}: not a receipt: {exc}")
    for path in checkpoint_files:
        try:
            saved += [parse_checkpoint(obj, line=False) for obj in _json_objects(path)]
        except MalformedSignedObject as exc:
            _fail(f"{path}: not a checkpoint: {exc}")
    return receipts, saved


def _json_objects(path: Path) -> list[Any]:
    """One JSON document (as `curl` saves it) or JSON Lines; anchors are few, so a list."""
    import orjson

    try:
        data = path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        return whole if isinstance(whole, list) else [whole]
    objects = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            try:
                objects.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                _fail(f"{path} line {number}: not JSON ({exc})")
    return objects


def _fail(message: str) -> NoReturn:
    click.echo(f"even-audit: error: {message}", err=True)
    sys.exit(2)


@main.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--username")
@click.option("--hostname")
@click.option("--since", help="RFC 3339 time; records at or after it.")
def show(file: IO[str], username: str | None, hostname: str | None, since: str | None) -> None:
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
