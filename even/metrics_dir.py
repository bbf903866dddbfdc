"""Where the worker processes of one `even serve` keep their metric values (multiprocess mode).

prometheus-client shares counters and histograms between worker processes through files in
`PROMETHEUS_MULTIPROC_DIR`. Invariants: the variable is set by `even serve` before any
process imports prometheus_client (the library reads it at import), to a directory of its own
for each server start (values of a previous run must not be summed in), and a worker that
exits is marked dead so it stops counting in live gauges.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(scratch: Path) -> Path:
    """Create a fresh metrics directory under `scratch` (this server start's own) and point
    the environment, inherited by the workers, at it."""
    if "prometheus_client" in sys.modules:
        # It would have chosen in-memory values already, and count nothing in the directory.
        raise RuntimeError("prometheus_client was imported before its directory was set")
    directory = scratch / "metrics"
    directory.mkdir(mode=0o700)
    os.environ[ENV] = str(directory)
    return directory


def worker_exited(pid: int) -> None:
    """Tell prometheus-client that worker `pid` is gone (no-op outside multiprocess mode)."""
    if not os.environ.get(ENV):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
