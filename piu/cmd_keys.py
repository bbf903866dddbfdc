"""`piu keys add FILE`, `piu keys list`: the public keys Even pushes for push-mode grants.

`add` reads OpenSSH public key lines from FILE (a `.pub` file; a private key is refused
before anything is sent — it must never leave this machine), merges them with the keys Even
already holds and replaces the set (GET, then PUT /v1/users/me/keys). Keys are compared by
type and base64, so adding a key twice changes nothing; Even checks each key for real.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path

import click

from piu.errors import LocalFileError, UsageProblem
from piu.render import escape
from piu.runtime import Runtime

MAX_FILE = 64 * 1024


def read_public_keys(path: Path) -> list[str]:
    """The `TYPE BASE64 [COMMENT]` lines of `path`; raises for anything else."""
    try:
        data = path.read_bytes()[: MAX_FILE + 1]
    except OSError as exc:
        raise LocalFileError(f"cannot read {path}: {exc.strerror}") from exc
    if b"PRIVATE KEY" in data:
        raise UsageProblem(
            f"{path} is a private key; it never leaves this machine",
            hint=f"pass the public key instead, e.g. {path}.pub",
        )
    if len(data) > MAX_FILE:
        raise UsageProblem(f"{path} is too large for a public key file")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise UsageProblem(f"{path} is not an OpenSSH public key file") from exc
    keys = [line.strip() for line in text.split("\n") if line.strip() and line[0] != "#"]
    if not keys:
        raise UsageProblem(f"{path} holds no public key")
    for line in keys:
        fingerprint(line)  # shape check: TYPE BASE64
    return keys


def fingerprint(line: str) -> str:
    parts = line.split()
    try:
        if len(parts) < 2 or parts[0].startswith("-") or "-cert-" in parts[0]:
            raise ValueError
        blob = base64.b64decode(parts[1], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise UsageProblem(
            f"not an OpenSSH public key line: {escape(line[:60])!r}",
            hint="expected 'TYPE BASE64 [COMMENT]', like the contents of ~/.ssh/id_ed25519.pub",
        ) from exc
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _identity(line: str) -> tuple[str, ...]:
    return tuple(line.split()[:2])


@click.group()
def keys() -> None:
    """Public keys Even pushes to bastions and hosts (push mode, classic grants)."""


@keys.command("add")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def keys_add(runtime: Runtime, file: Path) -> None:
    """Register the public key(s) in FILE, keeping the ones already registered."""
    new = read_public_keys(file)
    with runtime.client(runtime.settings()) as client:
        current = client.get_keys()
        held = {_identity(line) for line in current}
        merged = current + [line for line in new if _identity(line) not in held]
        stored = client.put_keys(merged) if len(merged) > len(current) else current
    for line in new:
        click.echo(f"registered {escape(line.split()[0])} {fingerprint(line)}")
    click.echo(f"{len(stored)} key{'s' if len(stored) != 1 else ''} registered with Even")


@keys.command("list")
@click.pass_obj
def keys_list(runtime: Runtime) -> None:
    """Show the registered keys (type and fingerprint)."""
    with runtime.client(runtime.settings()) as client:
        current = client.get_keys()
    if not current:
        click.echo("no keys registered (piu keys add ~/.ssh/id_ed25519.pub)")
    for line in current:
        click.echo(f"{escape(line.split()[0])} {fingerprint(line)}")


COMMANDS = (keys,)
