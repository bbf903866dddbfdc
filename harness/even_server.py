"""A real `even serve` process on a free loopback port, ready when `/readyz` says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

# A ceiling, not a wait: on a shared 2-CPU machine (load 10+) two workers importing the app
# took over 20 s to answer /readyz.
START_TIMEOUT = 60.0


class EvenStartError(RuntimeError):
    pass


@dataclass
class EvenServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def even_command() -> list[str]:
    """`even` from the running interpreter's environment (the venv), not whatever is on PATH."""
    return [sys.executable, "-m", "even.cli"]


def run_even(config: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run one `even` command against `config`; its output, stripped (raises if it fails)."""
    done = subprocess.run(
        [*even_command(), *args, "--config", str(config)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"even {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout.strip()


def start_even(
    config: Path,
    *,
    log_path: Path,
    port: int,
    workers: int = 1,
    env: dict[str, str] | None = None,
    serve_args: Sequence[str] = (),
) -> EvenServer:
    """Serve `config` on `port`; its `base_url` should name that port (the dev issuer's URL)."""
    url = f"http://127.0.0.1:{port}"
    argv = [
        *even_command(),
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        *serve_args,
    ]
    environment = {**os.environ, **(env or {})}
    log = log_path.open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environment)
    log.close()
    server = EvenServer(process, url, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EvenStartError(
                f"even serve exited with {process.returncode}:\n{server.log_text()}"
            )
        try:
            if httpx.get(url + "/readyz", timeout=1.0, trust_env=False).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise EvenStartError(
        f"even serve was not ready within {START_TIMEOUT:.0f}s:\n{server.log_text()}"
    )
