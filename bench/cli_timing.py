"""piu start-up, `piu request-access` and `piu ssh` overhead, wall time: the median of N runs.

Both run the installed `piu` console script with HOME (and the XDG directories) in a fresh
temporary directory, PIU_EVEN_URL at the benchmark's Even and PIU_TOKEN set, and no
SSH_AUTH_SOCK (adding to an agent is not what is timed), and bytecode caching allowed (as
for an installed package; the warm-up runs write the cache). The key pair is made by a warm-up
run, so each timed run is: process start, token, POST, certificate written 0600, exit.
hyperfine measures when installed (`-N`: no shell in between); otherwise a Python loop
with time.perf_counter around subprocess.run.

`piu ssh` overhead: with the certificate from the warm-up held, `piu ssh HOST -- true` finds
the grant, checks its certificate and execs `ssh`. PATH starts with a directory whose `ssh`
is /bin/true, so the exec'd "ssh" exits at once and the run measures piu's own work only
(no network, no sshd, nothing that varies with the remote side). The same stand-in is timed
alone; the overhead is the difference of the two medians. Real ssh would add the same
connection time with or without piu in front.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "db-1.prod.even.test"
REASON = "bench INC-1 piu"


@dataclass(frozen=True)
class Timing:
    label: str
    command: str
    runs: int
    median_s: float
    min_s: float
    max_s: float
    tool: str


def piu_argv() -> list[str]:
    """The console script beside the running interpreter (what users run), else `-m piu`."""
    script = Path(sys.executable).parent / "piu"
    return [str(script)] if script.exists() else [sys.executable, "-m", "piu"]


def piu_env(home: Path, even_url: str, token: str) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE (set on some build machines) would make every run recompile
    # piu's own modules; an installed piu has its bytecode cached, so let the warm-up cache it.
    dropped = ("PIU_", "XDG_", "SSH_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(
        HOME=str(home),
        PIU_EVEN_URL=even_url,
        PIU_TOKEN=token,
        NO_COLOR="1",
    )
    return env


def measure(label: str, argv: list[str], env: dict[str, str], runs: int, workdir: Path) -> Timing:
    command = shlex.join(argv)
    if shutil.which("hyperfine"):
        export = workdir / f"hyperfine-{re.sub(r'[^A-Za-z0-9]+', '-', label).strip('-')}.json"
        subprocess.run(
            [
                "hyperfine",
                "-N",
                "--style",
                "basic",
                "--warmup",
                "2",
                "--runs",
                str(runs),
                "--export-json",
                str(export),
                command,
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        result = json.loads(export.read_text())["results"][0]
        times = result["times"]
        return Timing(
            label,
            command,
            len(times),
            statistics.median(times),
            min(times),
            max(times),
            "hyperfine",
        )
    times = []
    for _ in range(runs + 2):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    times = times[2:]  # the two warm-up runs
    return Timing(
        label, command, len(times), statistics.median(times), min(times), max(times), "python loop"
    )


PIU_SSH_LABEL = "piu ssh (certificate held)"
STAND_IN_LABEL = "ssh stand-in (/bin/true)"


def ssh_overhead_ms(timings: list[Timing]) -> float | None:
    """Median `piu ssh` less the median of the ssh stand-in it execs, in ms."""
    by_label = {timing.label: timing for timing in timings}
    piu, stand_in = by_label.get(PIU_SSH_LABEL), by_label.get(STAND_IN_LABEL)
    if piu is None or stand_in is None:
        return None
    return (piu.median_s - stand_in.median_s) * 1000


def _stand_in_ssh(workdir: Path) -> Path:
    """A directory whose `ssh` exits at once (a symlink to `true`)."""
    directory = workdir / "fake-ssh"
    directory.mkdir()
    true = shutil.which("true") or "/bin/true"
    (directory / "ssh").symlink_to(true)
    return directory


def run(workdir: Path, even_url: str, token: str, runs: int) -> list[Timing]:
    home = workdir / "home"
    home.mkdir(parents=True)
    env = piu_env(home, even_url, token)
    request = [*piu_argv(), "request-access", HOST, REASON]
    first = subprocess.run(request, env=env, capture_output=True, text=True, check=False)
    certificates = list((home / ".ssh" / "piu").glob("*-cert.pub"))
    if first.returncode != 0 or not certificates:
        raise RuntimeError(
            f"piu request-access failed ({first.returncode}):\n{first.stdout}{first.stderr}"
        )
    stand_in = _stand_in_ssh(workdir)
    ssh_env = {**env, "PATH": f"{stand_in}{os.pathsep}{env.get('PATH', '')}"}
    piu_ssh = [*piu_argv(), "ssh", HOST, "--", "true"]
    check = subprocess.run(piu_ssh, env=ssh_env, capture_output=True, text=True, check=False)
    if check.returncode != 0 or "using grant" not in check.stderr:
        raise RuntimeError(f"piu ssh did not reuse the held grant:\n{check.stderr}")
    return [
        measure("piu --help", [*piu_argv(), "--help"], env, runs, workdir),
        measure("piu request-access", request, env, runs, workdir),
        measure(PIU_SSH_LABEL, piu_ssh, ssh_env, runs, workdir),
        measure(STAND_IN_LABEL, [str(stand_in / "ssh"), "true"], ssh_env, runs, workdir),
    ]


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.cli_timing [--runs N]`: these timings alone, against a throwaway Even."""
    import argparse
    import tempfile

    from bench import even_target
    from bench.procs import Processes
    from harness.ports import free_port

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per timing (default 20)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="piu-timing-"))
    try:
        with Processes() as processes:
            port = free_port()
            setup = even_target.configure(workdir / "even", port)
            server = even_target.start(
                setup, port=port, workers=1, log_path=workdir / "even" / "server.log"
            )
            processes.adopt(server.process)
            timings = run(workdir / "piu", server.url, even_target.token(setup), args.runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for timing in timings:
        print(
            f"{timing.label}: median {timing.median_s * 1000:.1f} ms"
            f" (min {timing.min_s * 1000:.1f}, max {timing.max_s * 1000:.1f};"
            f" {timing.runs} runs, {timing.tool})"
        )
    overhead = ssh_overhead_ms(timings)
    if overhead is not None:
        print(f"piu ssh overhead over the stand-in: {overhead:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
