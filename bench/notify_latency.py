"""Benchmark (not a test): grant latency with no webhook, a healthy one, and a hanging one.

Each scenario starts its own `even serve` (harness.even_server; SQLite, fresh directory,
rate limits out of the way) and times `POST /v1/access-requests` (certificate mode) from one
kept HTTP connection per client thread:
- none: no `notifications:` configured (the outbox hook is not even installed);
- healthy: a subscription to `access.requested` and `access.granted` (two outbox rows per
  grant) posted to a loopback receiver that verifies each signature and answers 204;
- hanging: the same subscription, to a receiver that accepts the connection and never answers
  (every POST runs into the 5 s timeout and is retried with backoff).
Prints p50 / p99 / mean per scenario and, for the receivers, how many notifications arrived;
asserts nothing.

    .venv/bin/python -m bench.notify_latency [--grants 400] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from harness.even_server import start_even
from harness.ports import free_port
from tests.conftest import make_live_even_dir
from tests.even.notify_setup import new_secret, subscribe
from tests.even.webhook_receiver import Receiver
from tests.integration.notify_serve import GRANT_PATH, bearer, user_key

EVENTS = ["access.requested", "access.granted"]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(scenario: str, grants: int, concurrency: int, warmup: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix=f"even-notify-bench-{scenario}-"))
    port = free_port()
    config = make_live_even_dir(tmp / "even", port, generous_limits=True)
    secret = new_secret()
    receiver = None
    if scenario != "none":
        hanging = scenario == "hanging"
        receiver = Receiver(
            secret=secret, hang_first=10**9 if hanging else 0, hang_seconds=3600
        ).start()
        subscribe(config, [{"name": "bench", "url": receiver.url, "events": EVENTS}], secret)
    headers = bearer(config, "alice")
    body = {"hostname": "db-1.prod.even.test", "reason": "bench INC-1 latency", "public_key": ""}
    body["public_key"] = user_key(tmp)
    server = start_even(config, log_path=tmp / "even.log", port=port)
    times: list[float] = []
    try:
        clients = [
            httpx.Client(base_url=server.url, timeout=30, trust_env=False)
            for _ in range(concurrency)
        ]

        def one(index: int) -> float:
            client = clients[index % concurrency]
            started = time.perf_counter()
            answer = client.post(GRANT_PATH, json=body, headers=headers)
            elapsed = time.perf_counter() - started
            assert answer.status_code == 201, answer.text
            return elapsed

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(warmup)))
            started = time.perf_counter()
            times = list(pool.map(one, range(grants)))
            wall = time.perf_counter() - started
        for client in clients:
            client.close()
        arrived = 0
        if receiver is not None:
            time.sleep(1.0)  # let the healthy receiver catch up before counting (a figure only)
            arrived = len(receiver.accepted())
    finally:
        server.stop()
        if receiver is not None:
            receiver.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # the database, keys and logs of this run
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": _percentile(times, 0.99) * 1000,
        "mean_ms": statistics.fmean(times) * 1000,
        "grants_per_s": grants / wall,
        "delivered": float(arrived),
        "rows": float(2 * (grants + warmup)) if receiver is not None else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grants", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the three scenarios")
    args = parser.parse_args()
    print(f"grants per scenario: {args.grants} (after {args.warmup} warm-up), "
          f"concurrency {args.concurrency}, even serve --workers 1, SQLite")  # fmt: skip
    print(f"{'scenario':<10} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'grants/s':>9} "
          f"{'delivered/rows':>15}")  # fmt: skip
    for _ in range(args.rounds):
        for scenario in ("none", "healthy", "hanging"):
            r = run(scenario, args.grants, args.concurrency, args.warmup)
            delivered = f"{int(r['delivered'])}/{int(r['rows'])}" if r["rows"] else "-"
            print(f"{scenario:<10} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['mean_ms']:>8.2f} "
                  f"{r['grants_per_s']:>9.1f} {delivered:>15}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
