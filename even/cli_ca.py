"""`even ca list|rotate|activate`: the operator's side of CA rotation (SPEC §6).

Rotation is two steps so hosts can learn a key before it signs: `rotate` adds a `next` key
(published by GET /v1/ca at once), `activate` promotes it once `odd sync` has run everywhere.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from even.errors import EvenError

if TYPE_CHECKING:
    from even.service.ca_registry import CaRegistry


def _registry(config_file: Path) -> CaRegistry:
    from even.clock import SystemClock
    from even.config import load_settings
    from even.service.ca_registry import CaRegistry
    from even.store.db import make_engine
    from even.store.outbox_hook import attach_outbox

    settings = load_settings(config_file)
    engine = make_engine(settings.resolved_database_url)
    attach_outbox(engine, settings)  # a rotation's records notify like the server's
    return CaRegistry(settings=settings, engine=engine, clock=SystemClock())


CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("EVEN_CONFIG_FILE", "even.yaml"),
    help="Path to even.yaml (env EVEN_CONFIG_FILE).",
)


def _fail(message: str) -> None:
    click.echo(f"even: error: {message}", err=True)
    sys.exit(1)


@click.group("ca")
def ca() -> None:
    """User-CA keys: list, rotate (add a `next` key), activate."""


@ca.command("list")
@CONFIG_OPTION
def list_keys(config_file: Path) -> None:
    """Show every CA key with its state."""
    try:
        keys = _registry(config_file).list_keys()
    except EvenError as exc:
        _fail(exc.message)
    for key in keys:
        until = f" published-until={key.last_valid_before}" if key.state == "retired" else ""
        click.echo(f"{key.state:8} {key.fingerprint} {key.key_file}{until}")


@ca.command("rotate")
@CONFIG_OPTION
def rotate(config_file: Path) -> None:
    """Add a new `next` key (published, not signing yet). Audited as ca.rotated."""
    try:
        key = _registry(config_file).rotate(actor=getpass.getuser())
    except EvenError as exc:
        _fail(exc.message)
    click.echo(
        f"added next key {key.fingerprint} ({key.key_file}); once every host has "
        f"synced /v1/ca, run `even ca activate`"
    )


@ca.command("activate")
@CONFIG_OPTION
@click.argument("fingerprint", required=False)
def activate(config_file: Path, fingerprint: str | None) -> None:
    """Promote the `next` key; the active one retires. Audited as ca.rotated."""
    try:
        key = _registry(config_file).activate(fingerprint, actor=getpass.getuser())
    except EvenError as exc:
        _fail(exc.message)
    click.echo(f"active key is now {key.fingerprint}")
