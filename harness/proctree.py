"""Ending a process we started and everything it forked, by PID (Linux /proc).

A daemon such as sshd forks a process per connection, and those outlive the daemon when it is
terminated; tests must end every process they start. Invariants: only the given child and its
descendants are signalled, never anything found by name, and a descendant is signalled only
while its PID still belongs to the same process (start time checked against reuse).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def end_process_tree(process: subprocess.Popen[bytes], *, timeout: float = 5.0) -> None:
    """SIGTERM `process` and its descendants; SIGKILL those still alive after `timeout` s."""
    # Collect the descendants first: once the parent exits they are reparented and lost.
    descendants = _descendants(process.pid)
    _end_child(process, timeout)
    _end_processes(descendants, timeout)


def _end_child(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM our child, wait, SIGKILL if it lingers; always reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of every process below `pid`, from /proc."""
    parents: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _proc_stat(int(entry.name))) is not None:
            _state, ppid, start = info
            parents.setdefault(ppid, []).append((int(entry.name), start))
    found: list[tuple[int, int]] = []
    queue = [pid]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child[0])
    return found


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a live process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces and ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _alive(pid: int, start: int) -> bool:
    """True while the same process (not a reused PID) exists and is not a zombie."""
    info = _proc_stat(pid)
    return info is not None and info[2] == start and info[0] != "Z"


def _end_processes(processes: list[tuple[int, int]], timeout: float) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL processes that are not our children."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        remaining = [p for p in processes if _alive(*p)]
        for pid, _start in remaining:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while any(_alive(*p) for p in remaining) and time.monotonic() < deadline:
            time.sleep(0.02)
