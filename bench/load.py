"""The load generator: pre-generated keys, request files, and one `wrk` run per measurement.

wrk (C, epoll) drives the servers so the generator is not the bottleneck; bench/wrk/sign.lua
formats every request once and only rotates through them. A request file has one request per
line, `PATH<TAB>Header: value<TAB>…<TAB>BODY`, each line with its own fresh public key and
tokens taken in turn; JSON bodies never contain a tab or a newline (json.dumps escapes them).

A run's own CPU time comes from wait4() on the wrk process, so the report can show that wrk
stayed well below the machine's capacity.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.procs import CpuMeter, CpuWindow, Processes, wait_for_exit

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "sign.lua"
RESULT_PREFIX = "BENCH-RESULT "


class LoadError(RuntimeError):
    """wrk failed or printed no result."""


def public_keys(count: int) -> list[str]:
    """`count` fresh Ed25519 public keys as OpenSSH lines (`ssh-ed25519 AAAA…`)."""
    return [
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode("ascii")
        for _ in range(count)
    ]


def write_requests(
    path: Path, url_path: str, headers: Sequence[dict[str, str]], bodies: Iterable[dict[str, Any]]
) -> Path:
    """Write one request per body; header sets (e.g. one per token) are used in turn."""
    with path.open("w", encoding="ascii") as out:
        for index, body in enumerate(bodies):
            header_set = headers[index % len(headers)]
            fields = [url_path, *(f"{name}: {value}" for name, value in header_set.items())]
            fields.append(json.dumps(body, separators=(",", ":")))
            if any("\t" in field or "\n" in field for field in fields):
                raise ValueError("a request field contains a tab or newline")
            out.write("\t".join(fields) + "\n")
    return path


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: counts from the Lua hooks, latencies in µs, CPU of wrk and the server."""

    connections: int
    threads: int
    requests: int
    duration_s: float
    ok2xx: int
    created: int
    non2xx: int
    status4xx: int
    status5xx: int
    serials: int
    socket_errors: dict[str, int]
    latency_us: dict[str, float]
    wrk_cpu_s: float
    cpu: CpuWindow
    output: str

    @property
    def ok_per_second(self) -> float:
        return self.ok2xx / self.duration_s

    @property
    def failures(self) -> int:
        return self.non2xx + sum(self.socket_errors.values())


def run_wrk(
    processes: Processes,
    url: str,
    requests_file: Path,
    *,
    connections: int,
    duration_s: float,
    server_pids: tuple[int, ...],
    serial_prefix: Path | None = None,
    max_threads: int = 2,
    timeout_s: float = 10.0,
) -> WrkResult:
    """Run wrk against `url` and measure it; serials of 201 answers go to `serial_prefix`.N."""
    threads = min(max_threads, connections)  # wrk needs at least one connection per thread
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        f"--timeout={timeout_s:g}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(requests_file),
        str(serial_prefix or ""),
    ]
    meter = CpuMeter(server_pids)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    processes.adopt(process)
    assert process.stdout is not None
    output = process.stdout.read().decode("utf-8", errors="replace")
    wrk_cpu = wait_for_exit(process)
    cpu = meter.stop()
    if process.returncode != 0:
        raise LoadError(f"wrk exited with {process.returncode}:\n{output}")
    return _parse(output, connections=connections, threads=threads, wrk_cpu=wrk_cpu, cpu=cpu)


def _parse(
    output: str, *, connections: int, threads: int, wrk_cpu: float, cpu: CpuWindow
) -> WrkResult:
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise LoadError(f"wrk printed no {RESULT_PREFIX.strip()} line:\n{output}")
    data = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return WrkResult(
        connections=connections,
        threads=threads,
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        ok2xx=data["ok2xx"],
        created=data["created"],
        non2xx=data["non2xx"],
        status4xx=data["status4xx"],
        status5xx=data["status5xx"],
        serials=data["serials"],
        socket_errors=data["socket_errors"],
        latency_us=data["latency_us"],
        wrk_cpu_s=wrk_cpu,
        cpu=cpu,
        output=output,
    )
