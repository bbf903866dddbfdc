"""The `even` command: init, serve, db upgrade, policy check, dev-token.

The only place in `even` that prints or exits. Errors are one line on stderr, no tracebacks.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from even.cli_ca import ca as ca_commands
from even.errors import ConfigError, EvenError

CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("EVEN_CONFIG_FILE", "even.yaml"),
    show_default="even.yaml",
    help="Path to even.yaml (env EVEN_CONFIG_FILE).",
)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"even: error: {message}", err=True)
    sys.exit(code)


@click.group()
@click.version_option(package_name="even-piu")
def main() -> None:
    """Even: audited just-in-time SSH access."""


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--issuer", help="OIDC issuer URL (exact).")
@click.option("--audience", help="Audience Even's access tokens carry.")
@click.option("--dev-issuer", is_flag=True, help="Create the loopback-only development issuer.")
@click.option("--base-url", default="http://127.0.0.1:8080", show_default=True)
@click.option(
    "--systemd",
    is_flag=True,
    help="Also write DIRECTORY/even.service, a hardened unit for `even serve` (on an existing"
    " directory: only the unit).",
)
@click.option("--systemd-user", default="even", show_default=True, help="The unit's user.")
def init(
    directory: Path,
    issuer: str | None,
    audience: str | None,
    dev_issuer: bool,
    base_url: str,
    systemd: bool,
    systemd_user: str,
) -> None:
    """Create keys, even.yaml and a sample policy in DIRECTORY."""
    from even.init import init_directory
    from even.systemd import write_unit

    try:
        if not (systemd and (directory / "even.yaml").exists()):
            config = init_directory(
                directory,
                issuer=issuer,
                audience=audience,
                dev_issuer=dev_issuer,
                base_url=base_url,
            )
            click.echo(f"wrote {config} (keys are 0600; edit policy.yaml, then `even db upgrade`)")
        if systemd:
            port = urlsplit(base_url).port or 8080
            unit = write_unit(directory, user=systemd_user, port=port)
            click.echo(f"wrote {unit} (copy it to /etc/systemd/system/; see the comment atop)")
    except ConfigError as exc:
        _fail(exc.message)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@main.command()
@CONFIG_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--pin-workers",
    is_flag=True,
    help="Pin each worker process to a CPU of its own (Linux; for a machine given to Even).",
)
def serve(
    config_file: Path, host: str, port: int, workers: int, log_level: str, pin_workers: bool
) -> None:
    """Run the HTTP API."""
    from even import metrics_dir
    from even.affinity import PIN_ENV
    from even.logs import log_config

    settings = _load(config_file)
    if pin_workers and not hasattr(os, "sched_setaffinity"):
        _fail("--pin-workers needs a system with CPU affinity (Linux)")
    if settings.identity.dev_issuer and not _is_loopback(host):
        _fail("the development issuer is loopback-only; refusing to serve on " + host)
    # uvicorn would otherwise trust X-Forwarded-For from loopback (see DESIGN.md).
    forwarded = ",".join(settings.trusted_proxies) or ""
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": forwarded,
        "server_header": False,
        # Named, not "auto": a missing uvloop or httptools is an error at start, not a quiet
        # fallback to the pure-Python parser and loop (each costs server CPU on every request).
        # uvicorn's httptools protocol whose small writes leave as one (one segment per answer).
        "http": "even.api.http_protocol:CoalescingHttpToolsProtocol",
        "loop": "uvloop",
        # Even writes the access line itself (even.api.observe), in `log_format`.
        "access_log": False,
        "log_config": log_config(settings.log_format, log_level),
    }
    os.environ.pop(PIN_ENV, None)  # only this flag asks for it
    with tempfile.TemporaryDirectory(prefix="even-serve-") as scratch:
        if pin_workers:
            os.environ[PIN_ENV] = str(Path(scratch) / "pinned-cpus.json")
        # Before anything imports prometheus_client: this start's own metrics directory.
        metrics_dir.prepare(Path(scratch))
        from even.api.app import CONFIG_ENV

        os.environ[CONFIG_ENV] = str(config_file.resolve())
        _serve(config_file, workers, common)


def _serve(config_file: Path, workers: int, common: dict[str, Any]) -> None:
    import uvicorn

    from even.affinity import pin_if_asked
    from even.api.app import create_app
    from even.api.tuning import settle_heap, tune_interpreter
    from even.config import load_settings
    from even.supervisor import serve_workers

    if workers > 1:
        config = uvicorn.Config(
            "even.api.app:app_from_environment", factory=True, workers=workers, **common
        )
        serve_workers(config)  # SIGHUP there reloads the policy in every worker
        return
    # Until the app's lifespan installs the reload handler, SIGHUP must not end the server.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    tune_interpreter()
    pin_if_asked()
    try:
        app = create_app(load_settings(config_file))
    except EvenError as exc:
        _fail(exc.message)
    settle_heap()
    uvicorn.run(app, **common)


@main.group()
def db() -> None:
    """Database schema."""


@db.command()
@CONFIG_OPTION
@click.option(
    "--app-role",
    help="PostgreSQL: also grant this role what Even serves with (docs/postgresql.md).",
)
def upgrade(config_file: Path, app_role: str | None) -> None:
    """Migrate the schema to this version's head (alembic; the only command that runs DDL).

    Uses `database_admin_url` (the owner role) when set, else `database_url`.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from even.config import resolve_sqlite_url
    from even.store.db import make_engine
    from even.store.schema import upgrade as upgrade_schema

    settings = _load(config_file)
    url = resolve_sqlite_url(
        settings.database_admin_url or settings.database_url, Path(settings.config_dir)
    )
    try:
        engine = make_engine(url, for_migrations=True)
    except SQLAlchemyError as exc:
        _fail(f"database URL not usable: {type(exc).__name__}")
    try:
        revision = upgrade_schema(engine, app_role=app_role)
    except ValueError as exc:
        _fail(str(exc), 2)
    except SQLAlchemyError as exc:
        # The driver's first line says what failed (it names no password).
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _fail(f"schema upgrade failed: {type(exc).__name__}: {reason}")
    finally:
        engine.dispose()
    granted = f"; privileges granted to {app_role}" if app_role else ""
    click.echo(f"schema at revision {revision} (head){granted}")


@main.group()
def policy() -> None:
    """Policy tools."""


@policy.command("check")
@CONFIG_OPTION
@click.option("--user", required=True)
@click.option("--groups", multiple=True, help="Repeat or separate with spaces/commas.")
@click.option("--host", "hostname", required=True)
@click.option("--login", required=True)
@click.option("--mode", type=click.Choice(["certificate", "push"]), default="certificate")
def policy_check(
    config_file: Path, user: str, groups: tuple[str, ...], hostname: str, login: str, mode: str
) -> None:
    """Print ALLOW rule=<name> (exit 0) or DENY <code> (exit 1).

    Warnings about rules whose approvers may be too few (or only the requesters' peers) go to
    stderr first; they never change the answer or the exit code.
    """
    from even.policy import Subject
    from even.policy_approval import approval_warnings
    from even.wiring import load_settings_policy

    settings = _load(config_file)
    try:
        loaded = load_settings_policy(settings)
    except ConfigError as exc:
        _fail(exc.message, 2)
    for rule in loaded.document.rules:
        for warning in approval_warnings(rule):
            click.echo(f"warning: {warning}", err=True)
    names = tuple(g for item in groups for g in item.replace(",", " ").split())
    try:
        rule = loaded.decide(
            Subject(user, names),
            hostname=hostname,
            login=login,
            mode="push" if mode == "push" else "certificate",
        )
    except EvenError as exc:
        click.echo(f"DENY {exc.code}")
        sys.exit(1)
    click.echo(f"ALLOW rule={rule.name}")


@main.command("dev-token")
@CONFIG_OPTION
@click.option("--user", required=True)
@click.option("--groups", multiple=True)
@click.option("--lifetime", default=3600, show_default=True, type=click.IntRange(1, 86400))
def dev_token(config_file: Path, user: str, groups: tuple[str, ...], lifetime: int) -> None:
    """Print an access token from the development issuer (local use only)."""
    from even.identity.dev_issuer import DevIssuer

    settings = _load(config_file)
    if not settings.identity.dev_issuer:
        _fail("the development issuer is not enabled in this config")
    try:
        issuer = DevIssuer.from_file(
            settings.path(settings.identity.dev_issuer_key), settings.dev_issuer_url
        )
    except ConfigError as exc:
        _fail(exc.message)
    names = [g for item in groups for g in item.replace(",", " ").split()]
    click.echo(issuer.mint(user, names, lifetime_seconds=lifetime))


def _load(config_file: Path) -> Any:
    from even.config import load_settings

    try:
        return load_settings(config_file)
    except ConfigError as exc:
        _fail(exc.message, 2)


main.add_command(ca_commands)

if __name__ == "__main__":
    main()
