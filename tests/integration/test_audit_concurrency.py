"""Issue 3, must-show 4: 200 concurrent grant requests against one running Even: every one
granted, seq 1..N without gap or duplicate, and the exported chain verifies."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from audit.checkpoint import load_public_keys, parse_receipt
from audit.verify import Valid, verify_jsonl
from harness.even_server import even_command, start_even
from harness.ports import free_port
from tests.conftest import make_live_even_dir

pytestmark = [pytest.mark.even_server]

GRANTS = 200


def _token(config: Path, user: str, *groups: str) -> str:
    argv = [*even_command(), "dev-token", "--config", str(config), "--user", user]
    for group in groups:
        argv += ["--groups", group]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def test_200_concurrent_grants_make_one_gapless_valid_chain(tmp_path: Path) -> None:
    port = free_port()
    config = make_live_even_dir(tmp_path / "even", port, generous_limits=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    public_key = (tmp_path / "k.pub").read_text().strip()
    server = start_even(config, log_path=tmp_path / "even.log", port=port)
    try:
        headers = {"Authorization": f"Bearer {_token(config, 'alice')}"}
        body = {
            "hostname": "db-1.prod.even.test",
            "reason": "load INC-200 test",
            "public_key": public_key,
        }
        with httpx.Client(
            base_url=server.url,
            timeout=60,
            trust_env=False,
            limits=httpx.Limits(max_connections=GRANTS),
        ) as client:

            def one(_: int) -> httpx.Response:
                return client.post("/v1/access-requests", json=body, headers=headers)

            with ThreadPoolExecutor(max_workers=GRANTS) as pool:
                answers = list(pool.map(one, range(GRANTS)))
            assert [a.status_code for a in answers] == [201] * GRANTS
            serials = {a.json()["serial"] for a in answers}
            assert len(serials) == GRANTS
            auditor = {"Authorization": f"Bearer {_token(config, 'audrey', 'audit')}"}
            export = client.get("/v1/audit/export", headers=auditor)
            keys = load_public_keys(client.get("/v1/audit/public-key").content)
    finally:
        server.stop()
    assert export.status_code == 200
    receipts = [parse_receipt(a.json()["receipt"]) for a in answers]
    verdict = verify_jsonl([export.content], keys, receipts=receipts)
    assert isinstance(verdict, Valid), verdict
    # policy.loaded + (requested, granted) per grant + audit.exported, seq 1..N (verify checks
    # there is no gap or duplicate; the count proves none was lost).
    assert verdict.records == 1 + 2 * GRANTS + 1
    seqs = sorted(receipt.seq for receipt in receipts)
    assert len(set(seqs)) == GRANTS


def test_even_audit_cli_exports_over_http_and_verifies(tmp_path: Path) -> None:
    port = free_port()
    config = make_live_even_dir(tmp_path / "even", port)
    server = start_even(config, log_path=tmp_path / "even.log", port=port)
    audit_cli = [sys.executable, "-m", "audit.cli"]
    try:
        token_file = tmp_path / "token"
        token_file.write_text(_token(config, "audrey", "audit"))
        export = tmp_path / "audit.jsonl"
        done = subprocess.run(
            [
                *audit_cli,
                "export",
                "--url",
                server.url,
                "--token-file",
                str(token_file),
                "-o",
                str(export),
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        key = tmp_path / "audit.pem"
        key.write_bytes(httpx.get(server.url + "/v1/audit/public-key", trust_env=False).content)
        refused = subprocess.run(
            [*audit_cli, "export", "--url", server.url],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin"},
        )
    finally:
        server.stop()
    verdict = subprocess.run(
        [*audit_cli, "verify", str(export), "--public-key", str(key)],
        capture_output=True,
        text=True,
    )
    assert verdict.returncode == 0 and verdict.stdout.startswith("VALID: "), verdict.stdout
    assert refused.returncode == 2 and "no token" in refused.stderr
