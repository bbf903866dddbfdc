"""Optional: sample Even with py-spy during one extra load run and summarise where time goes.

Sampling ptrace-stops the server, so the profiled run is never one of the measured runs.
py-spy writes collapsed stacks (`--format raw`: `frame;frame;… count` per line); the summary
ranks functions by self time (the leaf frame) and by inclusive time (anywhere on the stack).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.procs import Processes

OWN_CODE = ("(even/", "(audit/")
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(
    processes: Processes, pid: int, output: Path, duration_s: float
) -> subprocess.Popen[bytes]:
    binary = py_spy()
    if binary is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    argv = [
        binary,
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--rate",
        "200",
        "--duration",
        str(max(1, round(duration_s))),
        "--format",
        "raw",
        "--nonblocking",
        "-o",
        str(output),
    ]
    process = processes.start(argv, log=output.with_suffix(".log"))
    return process


REPO_ROOT = str(Path(__file__).resolve().parent.parent)


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", f"{REPO_ROOT}/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['name']} ({file})"


def summarise(raw: Path, top: int = 15) -> str:
    """Self time of any function; inclusive time of Even's own (even/, audit/) functions."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";") if "(" in frame]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            if any(marker in frame for marker in OWN_CODE):
                inclusive[frame] += count
    if not total:
        return "py-spy recorded no samples."
    lines = [
        f"{total:,} samples. py-spy counts a thread blocked on a lock (`Condition.wait`, the "
        "write lock taken inside `transaction`) or in a system call (`do_commit`: fsync) as "
        "active: those rows are waiting, not computing.",
        "",
        "| self | function |",
        "|---:|---|",
    ]
    lines += [f"| {n / total:.1%} | `{name}` |" for name, n in self_time.most_common(top)]
    lines += ["", "| inclusive | Even's own function |", "|---:|---|"]
    lines += [f"| {n / total:.1%} | `{name}` |" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)
