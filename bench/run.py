#!/usr/bin/env python3
"""`make bench`: Even and OpenBao's SSH engine side by side, one command, one table.

    .venv/bin/python bench/run.py [--quick] [--duration S] [--concurrency 1,16,64]
                                  [--workers 1,2] [--pinned-workers 2] [--no-postgres]
                                  [--database-url URL] [--profile FILE]

In one run: start Even (SQLite with synchronous=FULL, once per worker count; and on
PostgreSQL, a throwaway cluster from harness.postgres or --database-url) and OpenBao on
loopback; drive each with wrk at every concurrency (a warm-up, then a measured run of fixed
duration; targets alternate at each level so background noise hits all of them); export
Even's audit logs and verify them, joining every serial a client received to its
`access.granted` record; time a loop of `ssh-keygen -s` for as many certificates as Even
granted at concurrency 16; time `piu --help` and `piu request-access`; print the tables and
write them to BENCHMARKS.md. Every process started is ended by PID at the end, on errors
and on Ctrl-C; the temporary directory is removed (kept with --keep).

Exit status: 0 when every run completed without errors and the audit checks passed, else 1.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import baseline, cli_timing, even_target, machine, openbao, profile  # noqa: E402
from bench.even_target import AuditCheck, Database, EvenSetup  # noqa: E402
from bench.load import WrkResult, public_keys, run_wrk, write_requests  # noqa: E402
from bench.procs import Processes, wait_until_quiet  # noqa: E402
from bench.report import Report, render  # noqa: E402
from harness.ports import free_port  # noqa: E402

QUIET_CORES = 0.3
KEYGEN_DEFAULT, KEYGEN_MAX = 500, 5000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="3 s runs, 1 s warm-up, 5 piu runs, no quiet wait")
    add("--duration", type=float, help="seconds per measured run (default 10)")
    add("--warmup", type=float, help="seconds of warm-up before each run (default 2)")
    add("--concurrency", default="1,16,64", help="wrk connections, comma-separated")
    add("--workers", default=f"1,{os.cpu_count() or 1}", help="Even's uvicorn worker counts")
    add(
        "--pinned-workers",
        default=f"{os.cpu_count() or 1}",
        help="worker counts run once more with `even serve --pin-workers` (SQLite; '' for none)",
    )
    add("--keys", type=int, default=4096, help="pre-generated public keys per target")
    add("--tokens", type=int, default=4, help="client tokens per target, used in turn")
    add(
        "--database-url",
        action="append",
        default=[],
        metavar="URL",
        help="run Even also on this empty database (e.g. postgresql://…) instead of a "
        "throwaway PostgreSQL cluster; repeatable",
    )
    add("--no-postgres", action="store_true", help="skip Even on PostgreSQL")
    add("--no-openbao", action="store_true", help="skip OpenBao")
    add("--no-openbao-root", action="store_true", help="skip the runs with OpenBao's root token")
    add(
        "--no-openbao-default",
        action="store_true",
        help="skip the runs with a sign-only token that also carries OpenBao's default policy",
    )
    add("--keygen-count", type=int, help="certificates for the ssh-keygen loop")
    add("--piu-runs", type=int, help="runs per piu timing (default 20)")
    add("--quiet-wait", type=float, help="wait up to S s for an idle machine before each run")
    add(
        "--profile",
        type=Path,
        metavar="FILE",
        help="py-spy (raw) of the first Even during an extra run at the top concurrency",
    )
    add("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="the Markdown report")
    add("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.piu_runs = args.piu_runs or (5 if args.quick else 20)
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 30.0
    args.levels = [int(value) for value in args.concurrency.split(",")]
    args.worker_counts = list(dict.fromkeys(int(value) for value in args.workers.split(",")))
    args.pinned_counts = list(
        dict.fromkeys(int(value) for value in args.pinned_workers.split(",") if value.strip())
    )
    return args


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _workers(count: int) -> str:
    return f"{count} worker" + ("s" if count > 1 else "")


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def describe_run(label: str, result: WrkResult) -> str:
    wall = result.cpu.wall
    return (
        f"{label:<36} c={result.connections:<3} {result.ok_per_second:8,.0f}/s  "
        f"p50 {result.latency_us['p50'] / 1000:7.1f} ms  "
        f"p99 {result.latency_us['p99'] / 1000:7.1f} ms  "
        f"non-2xx {result.non2xx}  socket errors {sum(result.socket_errors.values())}  "
        f"CPU: wrk {result.wrk_cpu_s / wall:.2f}, server {result.cpu.server / wall:.2f}, "
        f"machine {result.cpu.machine / wall:.2f}"
    )


@dataclass(frozen=True)
class Target:
    url: str
    requests: Path
    pids: tuple[int, ...]  # the server's process trees, for CPU accounting


@dataclass(frozen=True)
class EvenInstance:
    setup: EvenSetup
    url: str
    directory: Path


class Bench:
    """One benchmark run: targets, request files, measurements, and the report's inputs."""

    def __init__(self, args: argparse.Namespace, processes: Processes, workdir: Path) -> None:
        self.args = args
        self.processes = processes
        self.workdir = workdir
        self.keys = public_keys(args.keys)
        self.targets: dict[str, Target] = {}
        self.even: dict[str, EvenInstance] = {}
        self.results: dict[str, dict[int, WrkResult]] = {}
        self.serial_files: dict[str, list[Path]] = {}
        self.skipped: list[str] = []
        self.bao_version = "not run"

    def start_even(
        self,
        label: str,
        workers: int,
        database: Database | None,
        extra_pids: tuple[int, ...] = (),
        *,
        pinned: bool = False,
    ) -> None:
        port = free_port()
        directory = self.workdir / re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        setup = even_target.configure(directory, port, database)
        server = even_target.start(
            setup, port=port, workers=workers, log_path=directory / "server.log", pinned=pinned
        )
        self.processes.adopt(server.process)
        tokens = [even_target.token(setup) for _ in range(self.args.tokens)]
        requests = write_requests(
            directory / "requests.tsv",
            even_target.URL_PATH,
            even_target.request_headers(tokens),
            map(even_target.request_body, self.keys),
        )
        self.targets[label] = Target(server.url, requests, (server.process.pid, *extra_pids))
        self.even[label] = EvenInstance(setup, server.url, directory)
        self.serial_files[label] = []
        log(f"{label}: {server.url}, pid {server.process.pid}")

    def start_openbao(self) -> None:
        if self.args.no_openbao:
            self.skipped.append("OpenBao (--no-openbao)")
            return
        try:
            self.bao_version = openbao.version()
        except openbao.OpenBaoUnavailable as exc:
            self.skipped.append(f"OpenBao: {exc}")
            return
        directory = self.workdir / "openbao"
        bao = openbao.start(self.processes, directory, port=free_port(), cluster_port=free_port())
        files = openbao.request_files(
            bao,
            directory,
            self.keys,
            self.args.tokens,
            with_default=not self.args.no_openbao_default,
            root=not self.args.no_openbao_root,
        )
        for label, requests in files.items():
            self.targets[label] = Target(bao.url, requests, (bao.pid,))
        log(f"OpenBao {self.bao_version}: {bao.url}, pid {bao.pid}; {', '.join(files)}")

    def start_postgres(self) -> None:
        """Even on a throwaway PostgreSQL cluster (harness.postgres), when this machine can."""
        workers = self.args.worker_counts[-1]
        label = f"Even postgresql, {_workers(workers)}"
        try:
            from harness.postgres import PostgresUnavailable, start_postgres
        except ImportError as exc:
            self.skipped.append(f"{label}: harness.postgres unusable ({exc})")
            return
        try:
            cluster = start_postgres("even_bench")
        except PostgresUnavailable as exc:
            self.skipped.append(f"{label}: {str(exc).splitlines()[0]}")
            return
        self.processes.callback(cluster.close)
        db = cluster.database
        database = Database(db.app_url, admin_url=db.owner_url, app_role=db.app_role)
        try:
            postmaster = cluster.pid()
            extra = (postmaster,) if postmaster else ()
            self.start_even(label, workers, database, extra_pids=extra)
        except RuntimeError as exc:
            self.skipped.append(f"{label}: could not start ({str(exc).splitlines()[0]})")
            log(f"{label} skipped: {exc}")

    def start_all(self) -> None:
        for workers in self.args.worker_counts:
            self.start_even(f"Even sqlite, {_workers(workers)}", workers, None)
        for workers in self.args.pinned_counts:
            label = f"Even sqlite, {_workers(workers)} pinned"
            self.start_even(label, workers, None, pinned=True)
        workers = self.args.worker_counts[-1]
        for url in self.args.database_url:
            label = f"Even {url.split(':', 1)[0]}, {_workers(workers)}"
            self.start_even(label, workers, Database(url))
        if self.args.no_postgres:
            self.skipped.append("Even on PostgreSQL (--no-postgres)")
        elif not self.args.database_url:
            self.start_postgres()
        self.start_openbao()

    def load(self, label: str, connections: int, duration: float, phase: str) -> WrkResult:
        target = self.targets[label]
        prefix = None
        if label in self.even:
            prefix = self.even[label].directory / "serials" / f"c{connections}-{phase}"
            prefix.parent.mkdir(exist_ok=True)
        result = run_wrk(
            self.processes,
            target.url,
            target.requests,
            connections=connections,
            duration_s=duration,
            server_pids=target.pids,
            serial_prefix=prefix,
        )
        if prefix is not None:
            self.serial_files[label] += sorted(prefix.parent.glob(prefix.name + ".*"))
            if result.serials != result.created:
                raise RuntimeError(f"{label}: {result.created} 201s but {result.serials} serials")
        return result

    def settle(self) -> None:
        """Give other work on a shared machine a chance to finish before a measured run."""
        if self.args.quiet_wait <= 0:
            return
        busy = wait_until_quiet(self.args.quiet_wait, QUIET_CORES)
        if busy > QUIET_CORES:
            log(f"machine still busy ({busy:.2f} cores) after {self.args.quiet_wait:g} s")

    def measure(self) -> None:
        for connections in self.args.levels:
            for label in self.targets:
                self.settle()
                if self.args.warmup > 0:
                    self.load(label, connections, self.args.warmup, "warmup")
                result = self.load(label, connections, self.args.duration, "run")
                self.results.setdefault(label, {})[connections] = result
                log(describe_run(label, result))

    def profile_even(self, output: Path) -> str:
        label = next(iter(self.even))
        top = max(self.args.levels)
        pid = self.targets[label].pids[0]
        sampler = profile.start(self.processes, pid, output, self.args.duration)
        time.sleep(0.5)  # let py-spy attach to every worker before the load starts
        self.load(label, top, self.args.duration, "profile")
        sampler.wait(timeout=60)
        log(f"py-spy profile of {label} at c={top}: {output}")
        return f"{label}, concurrency {top}:\n\n" + profile.summarise(output)

    def check_audits(self) -> dict[str, AuditCheck]:
        audits = {}
        for label, even in self.even.items():
            user, group = even_target.AUDITOR
            auditor = even_target.token(even.setup, user, groups=(group,))
            audits[label] = even_target.check_audit(
                even.url, auditor, self.serial_files[label], even.directory
            )
            log(f"audit {label}: {audits[label].summary()}")
        return audits

    def keygen(self) -> baseline.KeygenResult:
        at16 = self.results[next(iter(self.even))].get(16)
        count = self.args.keygen_count or min(at16.created if at16 else KEYGEN_DEFAULT, KEYGEN_MAX)
        result = baseline.run(self.processes, self.workdir / "keygen", self.keys, max(count, 1))
        log(f"ssh-keygen loop: {result.certificates} certificates in {result.seconds:.2f} s")
        return result

    def piu(self) -> list[cli_timing.Timing]:
        even = next(iter(self.even.values()))
        token = even_target.token(even.setup)
        timings = cli_timing.run(self.workdir / "piu", even.url, token, self.args.piu_runs)
        for timing in timings:
            log(f"{timing.label}: median {timing.median_s * 1000:.0f} ms over {timing.runs} runs")
        return timings


def settings_text(args: argparse.Namespace) -> dict[str, str]:
    return {
        "duration per measured run": f"{args.duration:g} s after a {args.warmup:g} s warm-up",
        "concurrency (wrk connections)": ", ".join(map(str, args.levels)),
        "wrk threads": "2 (1 at concurrency 1)",
        "distinct public keys / tokens": f"{args.keys} / {args.tokens} per target",
        "Even": "`even serve --workers N` (uvicorn), dev issuer, policy `principals: login`, "
        "SQLite WAL + synchronous=FULL; 'pinned': `even serve --pin-workers`, each worker "
        "process on a CPU of its own",
        "OpenBao": "raft storage, file audit device; tokens allowed only `update` on "
        "ssh/sign/bench, made with `bao token create -policy=bench-sign -no-default-policy` "
        "(the comparison) and without `-no-default-policy` (OpenBao's `default` policy "
        "attached); and the root token",
        "quiet wait": f"up to {args.quiet_wait:g} s before each run for < {QUIET_CORES} busy cores",
    }


def run(args: argparse.Namespace, processes: Processes, workdir: Path) -> int:
    load_before = machine.load_average()
    log(f"work directory {workdir}; {args.duration:g} s runs, {args.warmup:g} s warm-up")
    bench = Bench(args, processes, workdir)
    bench.start_all()
    bench.measure()
    profile_text = bench.profile_even(args.profile.resolve()) if args.profile else None
    audits = bench.check_audits()
    keygen = bench.keygen()
    timings = bench.piu()
    report = Report(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command="make bench"
        if os.environ.get("MAKELEVEL")
        else shlex.join(["bench/run.py", *sys.argv[1:]]),
        settings=settings_text(args),
        machine=machine.describe(bench.bao_version),
        load_before=load_before,
        load_after=machine.load_average(),
        results=bench.results,
        even_labels=list(bench.even),
        openbao_labels=[label for label in bench.targets if label.startswith("OpenBao")],
        keygen=keygen,
        audits=audits,
        timings=timings,
        skipped=bench.skipped,
        profile=profile_text,
    )
    text = render(report)
    print("\n" + text)
    args.output.write_text(text, encoding="utf-8")
    log(f"wrote {args.output}")
    failed = [label for label, check in audits.items() if not check.ok]
    for label, runs in bench.results.items():
        failed += [f"{label} c={c}" for c, result in runs.items() if result.failures]
    if failed:
        log(f"FAILED: {'; '.join(failed)}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="even-bench-"))
    try:
        with Processes() as processes:
            return run(args, processes, workdir)
    except KeyboardInterrupt:
        log("interrupted; every process started was stopped")
        return 130
    except (RuntimeError, httpx.HTTPError, OSError) as exc:
        log(f"error: {exc}")
        return 1
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
