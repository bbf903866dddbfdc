"""`even serve --workers 2 --pin-workers`: each worker on a CPU of its own, and it serves."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from even.affinity import usable_cpus
from harness.even_server import even_command, start_even
from harness.ports import free_port
from tests.conftest import make_live_even_dir

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only"),
    pytest.mark.even_server,
]


def _workers(parent: int) -> list[int]:
    """uvicorn's worker processes under `parent` (spawned; not the resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def test_two_pinned_workers_take_different_cpus_and_grant(tmp_path: Path) -> None:
    port = free_port()
    config = make_live_even_dir(tmp_path / "even", port)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    server = start_even(
        config, log_path=tmp_path / "even.log", port=port, workers=2, serve_args=["--pin-workers"]
    )
    try:
        # /readyz answered from one worker; the other may still be starting.
        deadline = time.monotonic() + 30
        while True:
            workers = _workers(server.process.pid)
            masks = [os.sched_getaffinity(pid) for pid in workers]
            pinned = len(workers) == 2 and all(len(mask) == 1 for mask in masks)
            if pinned or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert pinned, (masks, server.log_text())
        cpus = usable_cpus()
        if len(cpus) > 1:
            assert masks[0] != masks[1], masks
        token = subprocess.run(
            [*even_command(), "dev-token", "--config", str(config), "--user", "alice"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        answer = httpx.post(
            server.url + "/v1/access-requests",
            json={
                "hostname": "db-1.prod.even.test",
                "reason": "pinned INC-8 check",
                "public_key": (tmp_path / "k.pub").read_text().strip(),
            },
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
    finally:
        server.stop()
