"""even.affinity: each pinned worker claims the least-used CPU; gone workers free theirs.

Pinning runs in child processes, so the test run itself is never pinned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from even.affinity import usable_cpus

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")

# Pins itself, prints "CPU MASK", then waits for a line on stdin (so it stays alive).
_WORKER = """
import os, sys
from pathlib import Path
from even.affinity import pin_this_worker, usable_cpus
cpu = pin_this_worker(Path(sys.argv[1]), usable_cpus())
print(cpu, ",".join(map(str, sorted(os.sched_getaffinity(0)))), flush=True)
sys.stdin.readline()
"""


def _start(state: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    cpu, mask = process.stdout.readline().split()
    assert mask == cpu, "every thread of the worker runs on its CPU only"
    return process, int(cpu)


def _stop(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("\n")
    process.stdin.close()
    process.wait(timeout=10)


def test_live_workers_spread_over_the_cpus_and_a_gone_one_frees_its_cpu(tmp_path) -> None:
    state = tmp_path / "pinned.json"
    cpus = usable_cpus()
    first, first_cpu = _start(state)
    second, second_cpu = _start(state)
    try:
        assert first_cpu == cpus[0]
        assert second_cpu == (cpus[1] if len(cpus) > 1 else cpus[0])
        _stop(first)
        # The first worker is gone: its CPU is the least used again, and is taken.
        third, third_cpu = _start(state)
        _stop(third)
        assert third_cpu == first_cpu
    finally:
        for process in (first, second):
            if process.poll() is None:
                _stop(process)
    claimed = json.loads(state.read_text())
    assert str(second.pid) in claimed and str(first.pid) not in claimed
