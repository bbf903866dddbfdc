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

# Starts a thread, pins itself, prints "CPU MASKS" (the CPUs of every thread, one mask per
# thread), then waits for a line on stdin (so it stays alive).
_WORKER = """
import os, sys, threading
from pathlib import Path
from even.affinity import pin_this_worker, usable_cpus
started = threading.Event()
threading.Thread(target=lambda: (started.set(), sys.stdin.readline()), daemon=True).start()
started.wait()
cpu = pin_this_worker(Path(sys.argv[1]), usable_cpus())
tasks = [int(t) for t in os.listdir("/proc/self/task")]
assert len(tasks) == 2
masks = {",".join(map(str, sorted(os.sched_getaffinity(t)))) for t in tasks}
print(cpu, ";".join(sorted(masks)), flush=True)
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
    cpu, masks = process.stdout.readline().split()
    assert masks == cpu, "every thread of the worker runs on its CPU only"
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


def test_a_claim_by_a_process_that_is_not_a_sibling_worker_does_not_count(tmp_path) -> None:
    state = tmp_path / "pinned.json"
    cpus = usable_cpus()
    # PID 1 is alive but no worker of ours (say, a PID reused since a worker ended).
    state.write_text(json.dumps({"1": cpus[0]}))
    worker, cpu = _start(state)
    _stop(worker)
    assert cpu == cpus[0]


def test_pinning_that_fails_is_reported_and_the_worker_serves_unpinned(tmp_path) -> None:
    state = tmp_path / "pinned.json"
    state.write_text("not json")
    probe = (
        "import logging, os; logging.basicConfig(level=logging.INFO);"
        "from even.affinity import pin_if_asked; print('pinned to', pin_if_asked());"
        "print('threads may run on', len(os.sched_getaffinity(0)), 'CPUs')"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "EVEN_PIN_WORKERS_FILE": str(state)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "pinned to None" in done.stdout
    assert f"threads may run on {len(usable_cpus())} CPUs" in done.stdout
    assert "not pinned to a CPU" in done.stderr and "serving unpinned" in done.stderr
