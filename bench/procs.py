"""Processes the benchmark starts, and CPU accounting from /proc (Linux).

Every process started here is registered with a `Processes` stack and ended by PID (with its
descendants, via harness.proctree) when the stack closes: at the end, on an error and on
Ctrl-C or SIGTERM, which run.py turns into KeyboardInterrupt. Nothing is found or signalled
by name.

CPU figures are clock ticks read from /proc/<pid>/stat (utime + stime) and /proc/stat, turned
into seconds; a process tree is the PID and its descendants at the moment of reading.
"""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from harness.proctree import end_process_tree

TICKS = os.sysconf("SC_CLK_TCK")


class Processes(ExitStack):
    """An ExitStack that also ends the processes it started, newest first."""

    def start(
        self,
        argv: list[str],
        *,
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        self.adopt(process)
        return process

    def adopt(self, process: subprocess.Popen[bytes]) -> None:
        """End `process` (and what it forked) when the stack closes."""
        self.callback(end_process_tree, process)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may contain spaces.
    return text[text.rindex(")") + 2 :].split()


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants now alive."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [root], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def tree_cpu_seconds(root: int) -> float:
    """user + system CPU seconds of `root` and its live descendants (ticks → seconds).

    Includes the CPU of children they already reaped (cutime, cstime), so a worker that
    uvicorn restarted still counts."""
    ticks = 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields is not None:
            # utime, stime, cutime, cstime are fields 14-17 of stat, 11-14 after the name.
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / TICKS


def machine_busy_seconds() -> float:
    """CPU seconds spent not idle by the whole machine since boot, all cores (from /proc/stat)."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    values = [int(value) for value in first[1:9]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICKS


@dataclass(frozen=True)
class CpuWindow:
    """CPU used during one measured interval: by the server's trees, and by the whole machine."""

    wall: float
    server: float
    machine: float


class CpuMeter:
    """Start/stop CPU accounting of a server (one or more process trees, e.g. Even and its
    PostgreSQL) and of the machine."""

    def __init__(self, server_pids: tuple[int, ...]) -> None:
        self.server_pids = tuple(pid for pid in server_pids if pid > 1)  # never the whole machine
        self._start = (time.monotonic(), self._server(), machine_busy_seconds())

    def _server(self) -> float:
        return sum(tree_cpu_seconds(pid) for pid in self.server_pids)

    def stop(self) -> CpuWindow:
        wall0, server0, machine0 = self._start
        return CpuWindow(
            wall=time.monotonic() - wall0,
            server=self._server() - server0,
            machine=machine_busy_seconds() - machine0,
        )


def wait_for_exit(process: subprocess.Popen[bytes]) -> float:
    """Reap `process` and return the user + system CPU seconds it used (from wait4)."""
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def wait_until_quiet(max_wait_s: float, threshold_cores: float = 0.3) -> float:
    """Wait (up to `max_wait_s`) for a 1 s window in which the machine is nearly idle.

    The machine may be shared (other test runs); measuring while it is busy would charge
    their CPU to our servers' latency. Returns the busy cores of the last window seen, so the
    caller can say when it measured anyway."""
    deadline = time.monotonic() + max_wait_s
    while True:
        before = machine_busy_seconds()
        time.sleep(1.0)
        busy = machine_busy_seconds() - before
        if busy <= threshold_cores or time.monotonic() >= deadline:
            return busy
