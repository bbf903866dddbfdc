#!/usr/bin/env python3
"""Benchmark (not a test): server CPU per grant, in process, without a network or a client.

    PYTHONPATH=. .venv/bin/python bench/cpu_per_grant.py [--grants 3000] [--concurrency 64]
                                                         [--rounds 3] [--profile out.prof]
                                                         [--phases]

Builds Even as `even serve` does for one worker (`even init --dev-issuer`, `even db upgrade`,
a multiprocess metrics directory, `tune_interpreter`, uvloop), then drives the ASGI app
directly with fresh-key grants at the given concurrency and reads this process's CPU time
(`resource.getrusage`, all threads: the event loop and the store writer). Nothing else runs
in the process, so CPU per grant is the app's own, minus uvicorn's HTTP parsing; on a loaded,
shared machine it moves far less than wall-clock throughput does. `--profile` writes a
cProfile of one more round (which is not a measured one). `--phases` times the grant path's
phases with per-thread CPU timers (bench/grant_phases.py) during one more round and prints
a table of µs per grant; it loads that module from this script's directory, so
`PYTHONPATH=<older tree>` gives the same table for an older tree.
"""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Not bench/ itself (its profile.py would shadow the standard library's); the tree under
# test is PYTHONPATH's when set (to compare two trees with this one script), else this one.
sys.path.pop(0)
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(ROOT))

import cProfile  # noqa: E402


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _one(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/access-requests",
        "raw_path": b"/v1/access-requests",
        "root_path": "",
        "query_string": b"",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a disconnect never comes
        return {}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _round(app: Any, headers: Any, bodies: list[bytes], concurrency: int) -> dict[int, int]:
    queue = iter(bodies)
    statuses: dict[int, int] = {}

    async def worker() -> None:
        for body in queue:
            status = await _one(app, headers, body)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def _lifespan(app: Any) -> tuple[asyncio.Task[None], asyncio.Queue[Any]]:
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put)
    )
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started
    return task, inbox


async def _main(args: argparse.Namespace, workdir: Path) -> None:
    import orjson

    from bench.even_target import USER, configure, request_body
    from bench.load import public_keys
    from even.api.app import create_app
    from even.api.tuning import settle_heap, tune_interpreter
    from even.config import load_settings
    from even.logs import log_config

    # As for `make bench`: `even init --dev-issuer`, its policy, no rate limits, `even db upgrade`.
    config = configure(workdir / "even", 8080).config
    settings = load_settings(config)
    # As `even serve` logs: one access line per request, to stderr (send it to a file).
    logging.config.dictConfig(log_config(settings.log_format, args.log_level))
    tune_interpreter()
    app = create_app(load_settings(config))
    components = app.state.components
    token = components.dev_issuer.mint(USER, [])
    headers = [
        (b"host", b"127.0.0.1:8080"),
        (b"authorization", b"Bearer " + token.encode()),
        (b"content-type", b"application/json"),
    ]
    bodies = [orjson.dumps(request_body(key)) for key in public_keys(args.grants)]
    lifespan, inbox = await _lifespan(app)
    settle_heap()
    await _round(app, headers, bodies[: min(500, len(bodies))], args.concurrency)  # warm-up
    per_grant: list[float] = []
    for n in range(args.rounds):
        cpu = _cpu()
        statuses = await _round(app, headers, bodies, args.concurrency)
        spent = _cpu() - cpu
        ok = statuses.get(201, 0)
        per_grant.append(spent / max(ok, 1) * 1e6)
        print(f"round {n + 1}: {statuses} {spent:.2f} s CPU, {per_grant[-1]:.0f} µs per grant")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        await _round(app, headers, bodies, args.concurrency)
        profiler.disable()
        profiler.dump_stats(args.profile)
    if args.phases:
        phases = _phases_module()
        phases.install()
        cpu = _cpu()
        statuses = await _round(app, headers, bodies, args.concurrency)
        spent = _cpu() - cpu
        ok = statuses.get(201, 0)
        print(phases.report(ok, spent / max(ok, 1) * 1e6))
    median, best = statistics.median(per_grant), min(per_grant)
    # The best round is the one least disturbed by other processes on a shared machine.
    print(
        f"median {median:.0f} µs, best {best:.0f} µs server CPU per grant = "
        f"{1e6 / best:,.0f} grants per CPU-second at best (load average {os.getloadavg()[0]:.2f})"
    )
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan


def _phases_module() -> Any:
    """bench/grant_phases.py beside this script, whichever tree PYTHONPATH points to."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "grant_phases", ROOT / "bench" / "grant_phases.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grants", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile")
    parser.add_argument("--phases", action="store_true", help="a table of CPU per phase")
    parser.add_argument("--log-level", default="info", help="as `even serve --log-level`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="even-cpu-bench-") as scratch:
        from even import metrics_dir

        metrics_dir.prepare(Path(scratch))  # before prometheus_client is imported, as in serve
        import uvloop

        import even

        print(f"tree under test: {Path(even.__file__).parent.parent}")
        uvloop.run(_main(args, Path(scratch)))


if __name__ == "__main__":
    main()
