"""What the benchmark ran on: CPU, memory, kernel, tool versions, and the load around it."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path


def _first(pattern: str, text: str, default: str = "unknown") -> str:
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(1).strip() if match else default


def _version(argv: list[str]) -> str:
    """First line a tool prints about its version (some print it on stderr or exit non-zero)."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def describe(bao_version: str) -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    meminfo = Path("/proc/meminfo").read_text()
    mem_kib = int(_first(r"^MemTotal:\s+(\d+)", meminfo, "0"))
    model = _first(r"^model name\s*:\s*(.+)$", cpuinfo)
    return {
        "CPU": f"{os.cpu_count()} × {model}",
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "OS": _first(r'^PRETTY_NAME="?([^"\n]+)', Path("/etc/os-release").read_text()),
        "Python": platform.python_version() + f" ({platform.python_implementation()})",
        "OpenSSH": _version(["ssh", "-V"]),
        "OpenBao": bao_version,
        "wrk": _version(["wrk", "--version"]).split(" Copyright")[0],
        "SQLite": _sqlite_version(),
    }


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
