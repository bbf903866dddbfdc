"""Helpers for notification tests against real `even serve` processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from harness.even_server import run_even

GRANT_PATH = "/v1/access-requests"


def user_key(directory: Path) -> str:
    key = directory / "user_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_name("user_key.pub").read_text().strip()


def bearer(
    config: Path, user: str, *groups: str, env: dict[str, str] | None = None
) -> dict[str, str]:
    args = ["dev-token", "--user", user]
    if groups:
        args += ["--groups", ",".join(groups)]
    return {"Authorization": f"Bearer {run_even(config, *args, env=env)}"}


def grant(
    url: str, headers: dict[str, str], public_key: str, reason: str = "debug INC-42 now"
) -> str:
    body = {"hostname": "db-1.prod.even.test", "reason": reason, "public_key": public_key}
    answer = httpx.post(url + GRANT_PATH, json=body, headers=headers, timeout=30, trust_env=False)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def export_lines(url: str, headers: dict[str, str]) -> list[bytes]:
    answer = httpx.get(url + "/v1/audit/export", headers=headers, timeout=60, trust_env=False)
    assert answer.status_code == 200, answer.text
    return [line for line in answer.content.split(b"\n") if line]
