"""schemathesis against the live OpenAPI schema of a running `even serve`: every endpoint,
with a valid token, a bounded number of examples; no 5xx and no schema violation.

Runs the `schemathesis run` CLI (its pytest plugin does not support this pytest yet) with all
checks, positive and negative generation, and a fixed seed so a failure reproduces.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from even.config import load_settings
from even.store.db import make_engine
from even.store.schema import upgrade
from harness.even_server import even_command, start_even
from harness.ports import free_port
from tests.conftest import make_even_dir

MAX_EXAMPLES = 40
# A schema-valid body may still be refused with 422 by policy (reason_rejected,
# lifetime_too_long are SPEC §3/§7 answers), so "valid data must be accepted" cannot hold.
EXCLUDED_CHECKS = "positive_data_acceptance"
SEED = 9457


def _config(root: Path, port: int) -> Path:
    config = make_even_dir(root / "even")
    text = config.read_text().replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")
    # Generated traffic is one long burst by design; rate limits are tested on their own.
    for old, new in (
        ("per_user_per_second: 20", "per_user_per_second: 100000"),
        ("burst: 40", "burst: 100000"),
        ("failed_auth_per_ip_per_second: 10", "failed_auth_per_ip_per_second: 100000"),
    ):
        text = text.replace(old, new)
    config.write_text(text)
    upgrade(make_engine(load_settings(config).resolved_database_url))
    return config


def test_schemathesis_finds_no_5xx_and_no_schema_violation(tmp_path: Path) -> None:
    port = free_port()
    config = _config(tmp_path, port)
    server = start_even(config, log_path=tmp_path / "even.log", port=port)
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
