"""Benchmark (not a test): where a warm push grant's time goes, phase by phase.

Runs warm push grants in the lab of `tests/integration/push_lab.py` (Even's bastion
connection kept) with timers wrapped around Even's own steps and paramiko's, and prints the
median and p90 of each:
- the whole POST, the begin/commit unit of work (policy + `access.push_started`), the push
  (`PushRunner.grant`, both hosts in parallel) and the rest (`access.granted` + the answer);
- per host: the whole `Pusher.run`; for the target also the hop's phases (direct-tcpip open,
  key exchange + host key check, authentication); the exec (session open, odd's run, exit).
Each grant is revoked (untimed) before the next. Asserts nothing.

    .venv/bin/python -m bench.push_phases [--runs 20] [--new-hop]    (from the repository root)
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import paramiko

import even.push.pusher as pusher_module
import even.service.push_access as push_access
from tests.integration.push_lab import push_lab

_figures: dict[str, list[float]] = defaultdict(list)
_recording = threading.Event()  # set while a timed grant runs


def _timed(label: Callable[..., str | None], fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            name = label(*args, **kwargs)
            if _recording.is_set() and name is not None:
                _figures[name].append(time.perf_counter() - started)

    return wrapper


def _instrument() -> None:
    p = pusher_module
    p._exec = _timed(lambda _t, name, *_a, **_k: f"exec on {name.split('.')[0]}", p._exec)  # type: ignore[assignment]
    p.ParamikoPusher.run = _timed(  # type: ignore[method-assign]
        lambda _s, d, *_a, **_k: f"Pusher.run {d.name.split('.')[0]}", p.ParamikoPusher.run
    )
    t = paramiko.Transport
    t.open_channel = _timed(  # type: ignore[method-assign]
        lambda _s, kind, *_a, **_k: "hop: direct-tcpip open" if kind == "direct-tcpip" else None,
        t.open_channel,
    )
    t.start_client = _timed(lambda *_a, **_k: "hop: kex + host key", t.start_client)  # type: ignore[method-assign]
    t.auth_publickey = _timed(lambda *_a, **_k: "hop: auth", t.auth_publickey)  # type: ignore[method-assign]
    cls = push_access.PushAccessService
    cls._push_and_record = _timed(lambda *_a: "push + record", cls._push_and_record)  # type: ignore[method-assign]
    cls._record_success = _timed(lambda *_a: "record access.granted", cls._record_success)  # type: ignore[method-assign]
    push_access.commit_work = _timed(lambda *_a: "commit_work (begin)", push_access.commit_work)
    runner = push_access.PushRunner
    runner.grant = _timed(lambda *_a, **_k: "PushRunner.grant", runner.grant)  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--new-hop", action="store_true", help="no kept hop: close it each time")
    args = parser.parse_args()
    _instrument()
    with push_lab() as lab:
        lab.revoke(lab.grant())  # warm the bastion connection (and any kept hop)
        for _ in range(args.runs):
            if args.new_hop:
                lab.pusher._hops.close_hops()
            _recording.set()
            started = time.perf_counter()
            request_id = lab.grant()
            _figures["POST (whole grant)"].append(time.perf_counter() - started)
            _recording.clear()
            lab.revoke(request_id)
    for name, values in _figures.items():
        values.sort()
        p90 = values[int(0.9 * (len(values) - 1))]
        print(f"{name:26}: median {statistics.median(values) * 1000:6.1f} ms, "
              f"p90 {p90 * 1000:6.1f} ms ({len(values)})")  # fmt: skip


if __name__ == "__main__":
    main()
