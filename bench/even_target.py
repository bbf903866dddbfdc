"""Even under load: a throwaway configuration, the server, tokens, and the audit check after.

The configuration is made through Even's own CLI (`even init --dev-issuer`, `even db
upgrade`, `even dev-token`), with a policy that lets user alice sign for her own login on
`*.prod.even.test` with `principals: login`, so Even's certificates carry the plain principal
`alice`, as OpenBao's do. Rate limits are raised out of the way: a benchmark's burst is the
point. SQLite (WAL, synchronous=FULL, Even's default) unless a `Database` is given: its URLs
go to `EVEN_DATABASE_URL` / `EVEN_DATABASE_ADMIN_URL` and the schema is created with `even db
upgrade [--app-role]`.

The audit check exports the whole log as an auditor, verifies it offline with
audit.verify.verify_jsonl under the key from /v1/audit/public-key, and looks up every serial
a client received among the `access.granted` records.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from audit.checkpoint import load_public_keys
from audit.verify import verify_jsonl
from harness.even_server import EvenServer, even_command, start_even

HOSTNAME = "db-1.prod.even.test"
USER = "alice"
AUDITOR = ("audrey", "audit")
REASON = "bench INC-1 load"
LIFETIME_MINUTES = 30
URL_PATH = "/v1/access-requests"
TOKEN_LIFETIME_S = 4 * 3600
CHUNK = 1 << 20

POLICY = r"""# Benchmark policy: alice may sign for her own login on *.prod.even.test.
defaults:
  max_lifetime_minutes: 60
  reason: {min_length: 10, pattern: '\b[A-Z][A-Z0-9]+-[0-9]+\b'}
roles:
  auditor: {groups: [audit]}
rules:
  - name: bench
    subjects: {users: [alice]}
    hosts: ["*.prod.even.test"]
    logins: ["{username}"]
    modes: [certificate]
    max_lifetime_minutes: 60
    principals: login
    extensions: [permit-pty]
"""


@dataclass(frozen=True)
class EvenSetup:
    config: Path
    env: dict[str, str]
    backend: str


@dataclass(frozen=True)
class Database:
    """Where Even keeps its state when not in the default SQLite file (e.g. PostgreSQL)."""

    url: str
    admin_url: str | None = None  # the owner role, used only by `even db upgrade`
    app_role: str | None = None  # granted what Even serves with, by `even db upgrade`


def configure(directory: Path, port: int, database: Database | None = None) -> EvenSetup:
    """`even init` + bench policy + raised rate limits + `even db upgrade`."""
    env = dict(os.environ)
    upgrade_args: list[str] = []
    if database:
        env["EVEN_DATABASE_URL"] = database.url
        if database.admin_url:
            env["EVEN_DATABASE_ADMIN_URL"] = database.admin_url
        if database.app_role:
            upgrade_args = ["--app-role", database.app_role]
    base_url = f"http://127.0.0.1:{port}"
    _even(["init", str(directory), "--dev-issuer", "--base-url", base_url], env)
    config = directory / "even.yaml"
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["rate_limits"] = {
        "per_user_per_second": 1_000_000,
        "burst": 1_000_000,
        "failed_auth_per_ip_per_second": 1_000_000,
    }
    config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    (directory / "policy.yaml").write_text(POLICY, encoding="utf-8")
    _even(["db", "upgrade", "--config", str(config), *upgrade_args], env)
    backend = database.url.split(":", 1)[0].split("+")[0] if database else "sqlite"
    return EvenSetup(config=config, env=env, backend=backend)


def start(
    setup: EvenSetup, *, port: int, workers: int, log_path: Path, pinned: bool = False
) -> EvenServer:
    """`even serve --workers N`, with `--pin-workers` (one CPU per worker) when `pinned`."""
    return start_even(
        setup.config,
        log_path=log_path,
        port=port,
        workers=workers,
        env=setup.env,
        serve_args=["--pin-workers"] if pinned else [],
    )


def token(setup: EvenSetup, user: str = USER, groups: tuple[str, ...] = ()) -> str:
    argv = ["dev-token", "--config", str(setup.config), "--user", user]
    argv += [arg for group in groups for arg in ("--groups", group)]
    argv += ["--lifetime", str(TOKEN_LIFETIME_S)]
    return _even(argv, setup.env).strip()


def request_body(public_key: str) -> dict[str, Any]:
    return {
        "hostname": HOSTNAME,
        "reason": REASON,
        "public_key": public_key,
        "lifetime_minutes": LIFETIME_MINUTES,
    }


def request_headers(tokens: list[str]) -> list[dict[str, str]]:
    return [
        {"Authorization": f"Bearer {value}", "Content-Type": "application/json"} for value in tokens
    ]


@dataclass(frozen=True)
class AuditCheck:
    verdict: str
    valid: bool
    records: int
    granted: int
    client_serials: int
    duplicate_client_serials: int
    missing: list[int]
    export_bytes: int

    @property
    def ok(self) -> bool:
        return self.valid and not self.missing and not self.duplicate_client_serials

    def summary(self) -> str:
        unseen = self.granted - (self.client_serials - self.duplicate_client_serials)
        state = "all found" if not self.missing else f"{len(self.missing)} MISSING"
        return (
            f"{self.verdict}; {self.client_serials} serials received by clients, {state} "
            f"among {self.granted} access.granted records ({unseen} granted but not seen by "
            f"wrk: answers in flight when a run stopped); duplicate client serials: "
            f"{self.duplicate_client_serials}"
        )


def check_audit(
    url: str, auditor_token: str, serial_files: list[Path], workdir: Path
) -> AuditCheck:
    """Export, verify the chain and checkpoints, and join client serials to grant records."""
    headers = {"Authorization": f"Bearer {auditor_token}"}
    with httpx.Client(base_url=url, timeout=300.0, trust_env=False) as client:
        keys = load_public_keys(client.get("/v1/audit/public-key").raise_for_status().content)
        export = workdir / "audit-export.jsonl"
        with (
            client.stream(
                "GET", "/v1/audit/export", params={"format": "jsonl"}, headers=headers
            ) as response,
            export.open("wb") as out,
        ):
            response.raise_for_status()
            for chunk in response.iter_bytes(CHUNK):
                out.write(chunk)
    verdict = verify_jsonl(_chunks(export), keys)
    received = [int(line) for path in serial_files for line in path.read_text().split()]
    granted = _granted_serials(export)
    return AuditCheck(
        verdict=str(verdict),
        valid=str(verdict).startswith("VALID"),
        records=getattr(verdict, "records", 0),
        granted=len(granted),
        client_serials=len(received),
        duplicate_client_serials=len(received) - len(set(received)),
        missing=sorted(set(received) - granted)[:20],
        export_bytes=export.stat().st_size,
    )


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _granted_serials(export: Path) -> set[int]:
    serials: set[int] = set()
    with export.open("rb") as handle:
        for line in handle:
            if b'"access.granted"' not in line:
                continue
            record = orjson.loads(line)
            if record.get("type") == "access.granted":
                serials.add(int(record["details"]["serial"]))
    return serials


def _even(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        [*even_command(), *args], capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"even {' '.join(args[:2])} failed:\n{result.stdout}{result.stderr}")
    return result.stdout
