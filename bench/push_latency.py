"""Benchmark (not a test): time from a push-mode request to its 201, cold and warm.

In the namespace lab of `tests/integration/push_lab.py` (a bastion and a target with real
sshd and the odd zipapp; Even in process with the real paramiko pusher and SQLite), times `POST
/v1/access-requests {mode: push}` through the bastion to the target:
- cold: Even's kept connections are dropped before each request (TCP + SSH handshake and
  authentication to the bastion, then a new hop session to the target);
- warm: the bastion connection and the hop session to the target are kept (even.push.hops);
- warm, new hop: the bastion connection is kept, the hop session is closed before each request
  (what "warm" was before hops were kept, and what a push after `hop_idle_seconds` costs).
Each grant is revoked (untimed) before the next, so the managed files stay small. Prints
median and p90; asserts nothing. Root, iproute2 and OpenSSH required.

    .venv/bin/python -m bench.push_latency [--runs 20]    (from the repository root)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from even.push.pusher import Destination
from tests.integration.push_lab import TARGET, push_lab

KINDS = ("grant, cold", "grant, warm", "grant, warm, new hop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    load_before = os.getloadavg()
    figures: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with push_lab() as lab:
        pusher = lab.pusher
        lab.revoke(lab.grant())  # warm up (imports, first connections)
        for kind in KINDS * 2:  # interleaved halves
            for _ in range(args.runs // 2):
                if kind == "grant, cold":
                    pusher.close()  # drop the kept bastion connection and hops
                elif kind == "grant, warm, new hop":
                    pusher._hops.close_hops()
                started = time.perf_counter()
                request_id = lab.grant()
                figures[kind].append(time.perf_counter() - started)
                lab.revoke(request_id)
        # Where the time goes: `odd list` on the bastion (kept connection), on the target (kept
        # hop, then a new hop each time), and a new hop without any command.
        for kind, destination, fresh in (
            ("odd list, bastion", lab.bastion, False),
            ("odd list, target", lab.target, False),
            ("odd list, new hop", lab.target, True),
        ):
            values = figures[kind] = []
            for _ in range(args.runs):
                if fresh:
                    pusher._hops.close_hops()
                started = time.perf_counter()
                assert pusher.run(destination, "list", timeout=30).exit_status == 0
                values.append(time.perf_counter() - started)
        # A new hop alone: a direct-tcpip channel and the target's SSH handshake, no command.
        values = figures["new hop, no command"] = []
        for _ in range(args.runs):
            started = time.perf_counter()
            transport, _reused = pusher._transport(lab.bastion, time.monotonic() + 30, fresh=False)
            channel = transport.open_channel("direct-tcpip", (TARGET, 22), ("127.0.0.1", 0))
            target = Destination(TARGET, 22, via=lab.bastion)
            pusher._client(target, channel, time.monotonic() + 30).close()
            values.append(time.perf_counter() - started)
    for kind, values in figures.items():
        values.sort()
        p90 = values[int(0.9 * (len(values) - 1))]
        print(f"{kind:20}: median "
              f"{statistics.median(values) * 1000:6.1f} ms, p90 {p90 * 1000:6.1f} ms "
              f"({len(values)} runs)")  # fmt: skip
    print(f"load average (1/5/15 min): {_load(load_before)} before, "
          f"{_load(os.getloadavg())} after, on {os.cpu_count()} CPUs")  # fmt: skip


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
