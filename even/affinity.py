"""`even serve --workers N --pin-workers`: each worker process on a CPU of its own.

Every worker runs its event loop and its group-commit writer under one GIL, so it never uses
more than about one CPU; left to the scheduler, workers migrate between CPUs and meet each
other on the same one while another idles. On a machine given to Even, one CPU per worker
measured ~20% more grants/s and a lower p99 on 2 cores (see BENCHMARKS.md). Off by default:
on a shared machine the scheduler knows better.

Workers are started by uvicorn, which tells them no index, so each one claims the least-used
CPU in a small state file under a lock; only claims of live sibling workers count, so a
restarted worker takes the CPU its predecessor left. The file belongs to one `even serve`:
two of them on one machine pin onto the same CPUs.

Pinning is best-effort: if it fails, the worker says so in the log and serves unpinned.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

PIN_ENV = "EVEN_PIN_WORKERS_FILE"
# uvicorn's own logger: shown under uvicorn's default logging, unlike even.* at INFO.
log = logging.getLogger("uvicorn.error")


def pin_if_asked() -> int | None:
    """`even serve --pin-workers` set PIN_ENV: pin this worker, and say where (or why not)."""
    state_file = os.environ.get(PIN_ENV)
    if not state_file:
        return None
    try:
        cpu = pin_this_worker(Path(state_file), usable_cpus())
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        # A worker that raised here would be restarted by uvicorn again and again.
        log.warning("worker %d not pinned to a CPU (%s); serving unpinned", os.getpid(), exc)
        return None
    log.info("worker %d pinned to CPU %d", os.getpid(), cpu)
    return cpu


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    return sorted(os.sched_getaffinity(0))


def pin_this_worker(state_file: Path, cpus: Iterable[int]) -> int:
    """Claim the least-used of `cpus` for this process, pin every thread of it there, and
    return that CPU."""
    choices = sorted(set(cpus))
    if not choices:
        raise ValueError("no CPU to pin to")
    with state_file.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read()
        claimed = {int(pid): int(cpu) for pid, cpu in (json.loads(text) if text else {}).items()}
        live = {pid: cpu for pid, cpu in claimed.items() if cpu in choices and _sibling(pid)}
        used = Counter(live.values())
        cpu = min(choices, key=lambda c: (used[c], c))
        live[os.getpid()] = cpu
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({str(pid): c for pid, c in live.items()}))
    # Threads started later inherit the mask; those already running are set one by one.
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
            os.sched_setaffinity(int(task), {cpu})
    return cpu


def _sibling(pid: int) -> bool:
    """A live process with our parent (another worker of this `even serve`): a claim left
    by a process that is gone, or by an unrelated one that reused its PID, does not count."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] != "Z" and int(fields[1]) == os.getppid()
