#!/usr/bin/env python3
"""Benchmark (not a test): grants/s for 1 and 3 Even replicas on PostgreSQL, SQLite for reference.

    .venv/bin/python bench/grants_load.py [--duration 10] [--threads 32] [--replicas 1,3]
                                          [--no-sqlite]

For each scenario: a fresh database (PostgreSQL: one throwaway cluster from harness/postgres.py
for the whole run, a new database and roles per scenario, migrated by `even db upgrade
--app-role` as the owner; replicas serve as the app role), N `even serve` processes (one
worker each) sharing one config directory, then a Python load generator (threads + httpx,
round-robin over the replicas) for a warm-up and a fixed measured duration. Afterwards the
whole audit log is exported and verified, and every serial a client received is looked up
among the `access.granted` records, so each figure counts only grants that are on the record.

Everything runs on this machine (2 vCPU): replicas, PostgreSQL and the load generator share
the cores, and a Python generator saturates near 800 requests/s, so read the figures as
"where the single writer order and the CPU cap throughput", not as a capacity plan.
Every process started is ended by PID, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audit.checkpoint import load_public_keys  # noqa: E402
from audit.verify import Valid, verify_jsonl  # noqa: E402
from even.init import init_directory  # noqa: E402
from harness.even_server import EvenServer, even_command, start_even  # noqa: E402
from harness.ports import free_port  # noqa: E402
from harness.postgres import PostgresCluster, start_postgres  # noqa: E402

POLICY = r"""
defaults:
  max_lifetime_minutes: 60
  reason: {min_length: 10, pattern: '\b[A-Z][A-Z0-9]+-[0-9]+\b'}
roles:
  auditor: {groups: [audit]}
rules:
  - name: bench
    subjects: {users: [alice]}
    hosts: ["*.prod.even.test"]
    logins: ["{username}"]
    max_lifetime_minutes: 60
"""
WARMUP_S = 2.0


@dataclass(frozen=True)
class Result:
    backend: str
    replicas: int
    threads: int
    seconds: float
    granted: int
    errors: int
    latencies_ms: list[float]
    audit: str
    even_cpu_s: float
    db_cpu_s: float

    @property
    def per_second(self) -> float:
        return self.granted / self.seconds

    def row(self) -> str:
        lat = sorted(self.latencies_ms) or [0.0]
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        per_grant = 1000 / max(self.granted, 1)
        return (
            f"{self.backend:<11} {self.replicas:>8} {self.threads:>7} {self.granted:>7} "
            f"{self.per_second:>9.0f} {p50:>7.1f} {p99:>7.1f} {self.errors:>6} "
            f"{self.even_cpu_s * per_grant:>9.2f} {self.db_cpu_s * per_grant:>7.2f}  {self.audit}"
        )


HEADER = (
    f"{'backend':<11} {'replicas':>8} {'threads':>7} {'grants':>7} {'grants/s':>9} "
    f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'Even CPU':>9} {'DB CPU':>7}  audit"
)
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (from /proc; 0 for one that is gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICK


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def _even(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [*even_command(), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"even {args[0]} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _configure(directory: Path, port: int) -> Path:
    config = init_directory(directory, dev_issuer=True, base_url=f"http://127.0.0.1:{port}")
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    # A benchmark's burst is the point: rate limits out of the way.
    settings["rate_limits"] = {
        "per_user_per_second": 1_000_000,
        "burst": 1_000_000,
        "failed_auth_per_ip_per_second": 1_000_000,
    }
    config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    (directory / "policy.yaml").write_text(POLICY, encoding="utf-8")
    return config


class Drive:
    """Threads posting grants round-robin over `urls` until the deadline."""

    def __init__(self, urls: list[str], headers: dict[str, str], body: dict[str, Any]) -> None:
        self.urls, self.headers, self.body = urls, headers, body
        self.lock = threading.Lock()
        self.serials: list[int] = []
        self.latencies_ms: list[float] = []
        self.errors = 0

    def run(self, threads: int, seconds: float, *, record: bool) -> float:
        deadline = time.monotonic() + seconds
        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            for n in range(threads):
                pool.submit(self._worker, n, deadline, record)
        return time.monotonic() - started

    def _worker(self, n: int, deadline: float, record: bool) -> None:
        clients = [httpx.Client(base_url=u, timeout=30, trust_env=False) for u in self.urls]
        i = n
        try:
            while time.monotonic() < deadline:
                client = clients[i % len(clients)]
                i += 1
                began = time.perf_counter()
                try:
                    answer = client.post(
                        "/v1/access-requests", json=self.body, headers=self.headers
                    )
                    ok = answer.status_code == 201
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.perf_counter() - began) * 1000
                with self.lock:
                    if ok:
                        self.serials.append(int(answer.json()["serial"]))
                        if record:
                            self.latencies_ms.append(elapsed)
                    else:
                        self.errors += 1
        finally:
            for client in clients:
                client.close()


def _audit_check(url: str, auditor: str, serials: list[int]) -> str:
    with httpx.Client(base_url=url, timeout=300, trust_env=False) as client:
        export = client.get("/v1/audit/export", headers={"Authorization": f"Bearer {auditor}"})
        keys = load_public_keys(client.get("/v1/audit/public-key").content)
    if export.status_code != 200:
        return f"export failed: {export.status_code}"
    verdict = verify_jsonl([export.content], keys)
    granted = {
        record["details"]["serial"]
        for record in (orjson.loads(line) for line in export.content.split(b"\n") if line)
        if record.get("type") == "access.granted"
    }
    missing = len(set(serials) - granted)
    state = "VALID" if isinstance(verdict, Valid) else f"INVALID {verdict}"
    return f"{state}, {len(granted)} granted on record, {missing} client serials missing"


def run_scenario(
    work: Path,
    backend: str,
    replicas: int,
    args: argparse.Namespace,
    cluster: PostgresCluster | None,
) -> Result:
    name = f"{backend}-{replicas}"
    ports = [free_port() for _ in range(replicas)]
    config = _configure(work / name, ports[0])
    env: dict[str, str] = {}
    if cluster is not None:
        database = cluster.create_database(f"bench_{replicas}_{int(time.time())}")
        env["EVEN_DATABASE_URL"] = database.app_url
        _even(
            ["db", "upgrade", "--config", str(config), "--app-role", database.app_role],
            {**env, "EVEN_DATABASE_ADMIN_URL": database.owner_url},
        )
    else:
        _even(["db", "upgrade", "--config", str(config)], env)
    user = _even(["dev-token", "--config", str(config), "--user", "alice"], env)
    auditor = _even(
        ["dev-token", "--config", str(config), "--user", "audrey", "--groups", "audit"], env
    )
    key_file = work / name / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)], check=True)
    body = {
        "hostname": "db-1.prod.even.test",
        "reason": "bench INC-1 load",
        "public_key": key_file.with_suffix(".pub").read_text().strip(),
    }
    servers: list[EvenServer] = []
    try:
        for index, port in enumerate(ports):
            log = work / name / f"even-{index}.log"
            servers.append(start_even(config, log_path=log, port=port, env=env))
        drive = Drive([s.url for s in servers], {"Authorization": f"Bearer {user}"}, body)
        drive.run(args.threads, WARMUP_S, record=False)
        warm_serials, warm_errors = len(drive.serials), drive.errors
        # CPU per grant is steadier than grants/s on a shared machine. The database's is its
        # postmaster's and its backends' (the pooled connections live through the run).
        even_pids = [s.process.pid for s in servers]
        postmaster = cluster.pid() if cluster is not None else None
        db_pids = [postmaster, *_children(postmaster)] if postmaster else []
        cpu_before = _cpu_seconds(even_pids), _cpu_seconds(db_pids)
        seconds = drive.run(args.threads, args.duration, record=True)
        even_cpu = _cpu_seconds(even_pids) - cpu_before[0]
        db_cpu = _cpu_seconds(db_pids) - cpu_before[1]
        audit = _audit_check(servers[0].url, auditor, drive.serials)
    finally:
        for server in servers:
            server.stop()
    return Result(
        backend,
        replicas,
        args.threads,
        seconds,
        len(drive.serials) - warm_serials,
        drive.errors - warm_errors,
        drive.latencies_ms,
        audit,
        even_cpu,
        db_cpu,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--threads", type=int, default=32, help="client threads")
    parser.add_argument("--replicas", default="1,3", help="PostgreSQL replica counts")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite reference")
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",") if n]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="even-grants-bench-") as tmp:
        work = Path(tmp)
        cluster = start_postgres()
        try:
            for replicas in counts:
                results.append(run_scenario(work, "postgresql", replicas, args, cluster))
                print(results[-1].row(), file=sys.stderr)
        finally:
            cluster.close()
        if not args.no_sqlite:
            results.append(run_scenario(work, "sqlite", 1, args, None))
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"grants/s, {args.duration:.0f} s measured after {WARMUP_S:.0f} s warm-up, "
        f"{os.cpu_count()} CPUs shared by Even, the database and the load generator "
        f"(load average now {load}); the CPU columns are ms per grant"
    )
    print(HEADER)
    for result in results:
        print(result.row())
    return 0 if all(r.audit.startswith("VALID") and " 0 client" in r.audit for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
