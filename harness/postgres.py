"""A throwaway PostgreSQL cluster for tests and benchmarks, or a server named by the env.

`start_postgres()` either
- runs `initdb` and `pg_ctl start` as the `postgres` user (initdb refuses root) into a fresh
  temporary directory, listening on 127.0.0.1:<free port> and a Unix socket in that directory,
  with `fsync=on` (durability is what we test); or
- uses the server in `EVEN_TEST_DATABASE_URL` (a role that may create roles and databases).

Either way it creates an owner role (runs migrations, owns the tables), an app role (what Even
serves with) and a database owned by the owner, and returns their URLs. Host connections need
passwords (scram); only the superuser connects, through the socket in the private directory.
Everything started is ended by PID (`pg_ctl stop -m fast`, then SIGQUIT/SIGKILL to the
postmaster's PID), never by process name. `stop()`/`start()` take the same cluster down and up
again for outage tests.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from harness.ports import free_port

EXTERNAL_URL_ENV = "EVEN_TEST_DATABASE_URL"
PG_ROOT = Path("/usr/lib/postgresql")
SYSTEM_USER = "postgres"
START_TIMEOUT_S = 30


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here (not installed, not root, …): skip or fail."""


@dataclass(frozen=True)
class PostgresDatabase:
    name: str
    owner_role: str
    owner_url: str
    app_role: str
    app_url: str


@dataclass
class PostgresCluster:
    host: str
    port: int
    admin_conninfo: dict[str, object]
    database: PostgresDatabase
    base_dir: Path | None = None  # None: an external server we must not stop
    bin_dir: Path | None = None
    _extra: list[PostgresDatabase] = field(default_factory=list)

    @property
    def external(self) -> bool:
        return self.base_dir is None

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "data"

    def pid(self) -> int | None:
        """The postmaster's PID, from its pid file (None when not running)."""
        if self.external:
            return None
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def create_database(self, name: str) -> PostgresDatabase:
        """Another empty database with its own owner and app roles (e.g. a migration test)."""
        database = _create_database(self.admin_conninfo, self.host, self.port, name)
        self._extra.append(database)
        return database

    def start(self) -> None:
        """Start the (stopped) local cluster again on the same port."""
        if self.external or self.bin_dir is None or self.base_dir is None:
            raise PostgresUnavailable(f"cannot start a server given by {EXTERNAL_URL_ENV}")
        options = (
            f"-p {self.port} -k {self.base_dir} -c listen_addresses=127.0.0.1 -c fsync=on "
            "-c synchronous_commit=on -c max_connections=200"
        )
        _as_postgres(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.base_dir / "postgres.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
            cwd=self.base_dir,
        )

    def stop(self) -> None:
        """Stop the local cluster: `pg_ctl stop -m fast`, then the postmaster's PID."""
        if self.external or self.bin_dir is None:
            raise PostgresUnavailable(f"cannot stop a server given by {EXTERNAL_URL_ENV}")
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            _as_postgres(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "20",
                    "stop",
                ],
                cwd=self.base_dir,
            )
        # SIGQUIT is PostgreSQL's immediate shutdown; SIGKILL only if even that hangs.
        for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            if not _alive(pid):
                return
            os.kill(pid, sig)
            _wait_gone(pid, wait)

    def close(self) -> None:
        """End everything this harness started or created."""
        if self.external:
            for database in [*self._extra, self.database]:
                _drop_database(self.admin_conninfo, database)
            return
        self.stop()
        assert self.base_dir is not None
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_text(self) -> str:
        if self.base_dir is None:
            return ""
        return (self.base_dir / "postgres.log").read_text(errors="replace")


def start_postgres(database: str = "even") -> PostgresCluster:
    """A cluster with `database`, its owner and app roles; see the module docstring."""
    external = os.environ.get(EXTERNAL_URL_ENV)
    if external:
        return _use_external(external, database)
    bin_dir = _bin_dir()
    _check_can_run_as_postgres()
    base = Path(tempfile.mkdtemp(prefix="even-pg-"))
    postgres = pwd.getpwnam(SYSTEM_USER)
    os.chown(base, postgres.pw_uid, postgres.pw_gid)
    try:
        _as_postgres(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(base / "data"),
                "-U",
                SYSTEM_USER,
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=base,
        )
        cluster = _start_on_free_port(base, bin_dir)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return cluster


def _start_on_free_port(base: Path, bin_dir: Path) -> PostgresCluster:
    admin: dict[str, object] = {"host": str(base), "user": SYSTEM_USER, "dbname": "postgres"}
    last: Exception | None = None
    for _ in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        placeholder = PostgresDatabase("", "", "", "", "")
        cluster = PostgresCluster(
            "127.0.0.1", port, {**admin, "port": port}, placeholder, base_dir=base, bin_dir=bin_dir
        )
        try:
            cluster.start()
        except subprocess.CalledProcessError as exc:
            last = exc
            continue
        try:
            cluster.database = _create_database(cluster.admin_conninfo, "127.0.0.1", port, "even")
        except BaseException:
            cluster.stop()
            raise
        return cluster
    log_file = base / "postgres.log"
    log = log_file.read_text(errors="replace") if log_file.exists() else ""
    raise PostgresUnavailable(f"PostgreSQL did not start: {last}\n{log[-2000:]}")


def _use_external(url: str, database: str) -> PostgresCluster:
    parsed = make_url(url)
    admin: dict[str, object] = {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username or "postgres",
        "dbname": parsed.database or "postgres",
    }
    if parsed.password:
        admin["password"] = parsed.password
    suffix = secrets.token_hex(4)
    host, port = str(admin["host"]), int(str(admin["port"]))
    try:
        created = _create_database(admin, host, port, f"{database}_{suffix}", suffix=suffix)
    except psycopg.Error as exc:
        raise PostgresUnavailable(
            f"{EXTERNAL_URL_ENV}: cannot create roles/database: {exc}"
        ) from exc
    return PostgresCluster(host, port, admin, created)


def _create_database(
    admin: dict[str, object], host: str, port: int, name: str, *, suffix: str = ""
) -> PostgresDatabase:
    owner, app = f"{name}_owner{suffix}", f"{name}_app{suffix}"
    owner_password, app_password = secrets.token_hex(16), secrets.token_hex(16)
    with psycopg.connect(**admin, autocommit=True) as conn:  # type: ignore[arg-type]
        for role, password in ((owner, owner_password), (app, app_password)):
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
        # The owner owns the database and so (PostgreSQL 15) its `public` schema: it may
        # create tables there; the app role may not.
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
    return PostgresDatabase(
        name=name,
        owner_role=owner,
        owner_url=f"postgresql://{owner}:{owner_password}@{host}:{port}/{name}",
        app_role=app,
        app_url=f"postgresql://{app}:{app_password}@{host}:{port}/{name}",
    )


def _drop_database(admin: dict[str, object], database: PostgresDatabase) -> None:
    with psycopg.connect(**admin, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database.name))
        )
        for role in (database.app_role, database.owner_role):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _bin_dir() -> Path:
    candidates = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise PostgresUnavailable(
            f"PostgreSQL server binaries not found under {PG_ROOT} "
            "(Debian: apt-get install postgresql, or `make system-deps`)"
        )
    return candidates[-1]


def _check_can_run_as_postgres() -> None:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError as exc:
        raise PostgresUnavailable(f"no `{SYSTEM_USER}` system user to run initdb as") from exc
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != SYSTEM_USER:
        raise PostgresUnavailable(
            f"a throwaway PostgreSQL needs root (initdb runs as `{SYSTEM_USER}`); "
            f"or set {EXTERNAL_URL_ENV}"
        )


def _as_postgres(argv: list[str], *, cwd: Path | None) -> None:
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"  # util-linux; sbin may be off PATH
    prefix = [runuser, "-u", SYSTEM_USER, "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *argv], check=True, cwd=cwd, capture_output=True, timeout=60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
