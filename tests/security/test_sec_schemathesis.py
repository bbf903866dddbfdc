"""schemathesis against the live OpenAPI schema of a running `even serve`: every endpoint,
with a valid token, a bounded number of examples; no 5xx and no schema violation.

Runs the `schemathesis run` CLI (its pytest plugin does not support this pytest yet) with all
checks, positive and negative generation, and a fixed seed so a failure reproduces.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.even_server import even_command
from tests.integration.test_hostile_input import start_backend

pytestmark = [pytest.mark.even_server]

MAX_EXAMPLES = 40
# A schema-valid body may still be refused with 422 by policy (reason_rejected,
# lifetime_too_long are SPEC §3/§7 answers), so "valid data must be accepted" cannot hold.
EXCLUDED_CHECKS = "positive_data_acceptance"
SEED = 9457


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """On both database backends: PostgreSQL refuses input SQLite stores (NUL in text)."""
    server, config = start_backend(backend, tmp_path, request)
    try:
        token = subprocess.run(
            [
                *even_command(),
                "dev-token",
                "--config",
                str(config),
                "--user",
                "alice",
                "--groups",
                "audit",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                EXCLUDED_CHECKS,
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--header",
                f"Authorization: Bearer {token}",
                "--request-timeout",
                "10",
                "--max-failures",
                "20",
                "--report-dir",
                str(tmp_path / "report"),
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    finally:
        server.stop()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]
