"""The `even serve --workers N` master: uvicorn's process supervisor, with Even's SIGHUP.

uvicorn's supervisor answers SIGHUP by replacing every worker. For Even, SIGHUP means "re-read
the policy" (SPEC §10): the master passes the signal on to each worker, which reloads in place
(`even.reload`) and keeps its connections, caches and group-commit writer. A worker that exits
is marked dead for the metrics (`even.metrics.worker_exited`), so its live values stop counting.

Invariants: the master never imports the application (it only supervises), and it forwards
SIGHUP to the workers it started, by PID, nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from socket import socket

from uvicorn.config import Config
from uvicorn.supervisors.multiprocess import Multiprocess

from even.metrics_dir import worker_exited

log = logging.getLogger("uvicorn.error")


class EvenSupervisor(Multiprocess):
    def __init__(self, config: Config, sockets: list[socket]) -> None:
        super().__init__(config, sockets)
        self._known: set[int] = set()

    def handle_hup(self) -> None:
        log.info("Received SIGHUP, reloading the policy in every worker.")
        for process in self.processes:
            pid = process.pid
            if pid is not None and process.process.is_alive():
                # One that just exited is replaced, and its replacement reads the policy at start.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._forget_exited()

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._forget_exited(everyone=True)

    def _forget_exited(self, *, everyone: bool = False) -> None:
        alive = {p.pid for p in self.processes if p.pid is not None and not everyone}
        for pid in self._known - alive:
            worker_exited(pid)
        self._known = alive


def serve_workers(config: Config) -> None:
    """What `uvicorn.run(..., workers=N)` does, with EvenSupervisor as the master."""
    sock = config.bind_socket()
    try:
        EvenSupervisor(config, sockets=[sock]).run()
    finally:
        sock.close()
