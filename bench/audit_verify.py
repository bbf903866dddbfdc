"""Benchmark (not a test): audit export and offline verification throughput and peak memory.

For each size (default 100k and 1M records) it writes a JSONL export with a checkpoint every
1,000 records and at the end (records sealed in memory with audit.chain.seal: appending a
million records through the store would only measure SQLite), then times `even-audit verify`
in a child process. Separately it loads a SQLite audit table through audit.store's schema and
times `even-audit export --database` (the real export path) in a child process, and verifies
that export too.

Each measured run is its own child process, which reports its own peak RSS (VmHWM of its
address space, read at exit: ru_maxrss would include this parent's RSS at fork time on Linux),
so the figures are comparable: constant memory means the 1M verify peaks where the 100k one
does. CPU figures are the child's user + system time: verification is one process on one
core, so records per CPU-second is the one-core rate, and unlike wall time it does not count
the neighbours on a shared machine. Each file is verified `--rounds` times in each of two
ways, in turn: as installed (the Python fast path in front) and with the general path alone
(the fast path switched off in the child only); the best of each is printed, so the ratio is
measured in one machine state.
Prints figures only; asserts nothing about speed.

    .venv/bin/python bench/audit_verify.py [--sizes 100000,1000000] [--export-sizes 100000]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine

from audit import store
from audit.chain import GENESIS_HASH, AuditEvent, canonical, seal
from audit.checkpoint import make_checkpoint
from audit.signing import AuditSigner

CHECKPOINT_EVERY = 1000
START = datetime(2026, 1, 1, tzinfo=UTC)


def event(i: int) -> AuditEvent:
    """A realistic mix: mostly grants with full details, some requests and denials."""
    common: dict[str, Any] = {
        "username": f"user{i % 97}",
        "login": "deploy",
        "hostname": f"web-{i % 500}.prod.example.org",
        "request_id": f"01J{i:023d}",
        "reason": f"debug INC-{i} elevated error rate on checkout",
    }
    if i % 3 == 0:
        return AuditEvent(type="access.requested", **common, details={"mode": "certificate"})
    if i % 7 == 0:
        return AuditEvent(type="access.denied", **common, details={"error": "no rule matches"})
    details = {
        "serial": 1_000_000 + i,
        "key_id": f"user{i % 97}-01J{i:010d}",
        "fingerprint": "SHA256:" + "Q" * 43,
        "principals": ["deploy"],
        "valid_after": "2026-01-01T00:00:00Z",
        "valid_before": "2026-01-01T01:00:00Z",
        "rule": "sre-prod",
        "mode": "certificate",
        "bastion": None,
        "principal_mode": "login",
    }
    return AuditEvent(type="access.granted", **common, details=details)


def chain(n: int) -> Iterator[dict[str, Any]]:
    prev = GENESIS_HASH
    for i in range(n):
        moment = (START + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        record = seal(event(i), seq=i + 1, time=moment, prev_hash=prev)
        prev = record["hash"]
        yield record


def write_export(path: Path, n: int, signer: AuditSigner) -> float:
    started = time.perf_counter()
    with path.open("wb") as out:
        for record in chain(n):
            out.write(canonical(record) + b"\n")
            seq = record["seq"]
            if seq % CHECKPOINT_EVERY == 0 or seq == n:
                line = make_checkpoint(
                    signer, origin="https://even.bench", size=seq, head=record["hash"], time="T"
                )
                out.write(canonical(line) + b"\n")
    return time.perf_counter() - started


def fill_database(url: str, n: int, signer: AuditSigner) -> float:
    """Rows exactly as audit.store.append writes them, inserted in bulk (fast to set up), and
    checkpoints stored through audit.store.add_checkpoint."""
    engine = create_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        store.metadata.create_all(conn)
        store.install_append_only_guards(conn)
        batch: list[dict[str, Any]] = []
        for record in chain(n):
            row = dict(record)
            row["details"] = orjson.dumps(record["details"], option=orjson.OPT_SORT_KEYS).decode()
            batch.append(row)
            if len(batch) == 10_000:
                conn.execute(store.audit_records.insert(), batch)
                batch = []
            seq = record["seq"]
            if seq % CHECKPOINT_EVERY == 0 or seq == n:
                line = make_checkpoint(
                    signer, origin="https://even.bench", size=seq, head=record["hash"], time="T"
                )
                store.add_checkpoint(conn, line)
        if batch:
            conn.execute(store.audit_records.insert(), batch)
    engine.dispose()
    return time.perf_counter() - started


def append_rate(url: str, n: int) -> float:
    """Records/s through audit.store.append (head lookup + insert), one transaction."""
    engine = create_engine(url)
    with engine.begin() as conn:
        store.metadata.create_all(conn)
        store.install_append_only_guards(conn)
    started = time.perf_counter()
    with engine.begin() as conn:
        for i in range(n):
            store.append(conn, event(i), START)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return n / elapsed


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    cpu: float  # the child's user + system seconds (what one core spent)
    peak_rss_kib: int  # the child's own ru_maxrss
    out: bytes

    def figures(self, n: int, startup: float) -> str:
        """`startup`: the CPU seconds of starting the interpreter and importing, left out once."""
        return (
            f"{self.wall:6.2f} s wall, {n / self.wall:>9,.0f} records/s wall, "
            f"{n / max(self.cpu - startup, 1e-9):>9,.0f} records/s per CPU-second "
            f"(start-up excluded), peak RSS {self.peak_rss_kib / 1024:.1f} MiB"
        )


# Runs `even-audit` (or any code) and, at exit, writes the process's own peak RSS to stderr.
_REPORT_PEAK = """
import atexit, sys
def _peak():
    with open("/proc/self/status") as status:
        hwm = [line for line in status if line.startswith("VmHWM:")]
    sys.stderr.write(hwm[0] if hwm else "VmHWM: 0 kB\\n")
atexit.register(_peak)
"""


def child(argv: list[str]) -> Run:
    """Run a child alone: its CPU from the children's rusage delta, its peak RSS from itself."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak = [line for line in err.decode().splitlines() if line.startswith("VmHWM:")]
    return Run(wall, cpu, int(peak[-1].split()[1]) if peak else 0, out)


# Code run in the child before `even-audit`, by how much of the fast path it leaves on.
_PATHS = {
    "as installed": "",
    "general path": (
        "import audit.verify\naudit.verify._PLAIN_MEMBERS = ('-',)\n"  # matches no record
    ),
}


def cli(*args: str, path: str = "as installed") -> list[str]:
    code = _REPORT_PEAK + _PATHS[path]
    return [sys.executable, "-c", code + "from audit.cli import main\nmain()", *args]


def best_verify(path: Path, key: Path, rounds: int) -> dict[str, Run]:
    """The best (least CPU) of `rounds` verifications along each path, taken in turn."""
    runs: dict[str, list[Run]] = {name: [] for name in _PATHS}
    for _ in range(rounds):
        for name, tried in runs.items():
            tried.append(child(cli("verify", str(path), "--public-key", str(key), path=name)))
    return {name: min(tried, key=lambda r: r.cpu) for name, tried in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--export-sizes", default="100000")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--rounds", type=int, default=3, help="verifications per file and path")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    export_sizes = [int(s) for s in args.export_sizes.split(",") if s]

    signer = AuditSigner(Ed25519PrivateKey.generate())
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        key = work / "audit.pub.pem"
        key.write_bytes(signer.public_pem())
        baseline = child([sys.executable, "-c", _REPORT_PEAK + "import audit.cli, audit.verify"])
        print(
            f"baseline: interpreter + imports: {baseline.cpu:.2f} CPU-s, "
            f"peak RSS {baseline.peak_rss_kib / 1024:.1f} MiB"
        )

        for n in sizes:
            path = work / f"audit-{n}.jsonl"
            generated = write_export(path, n, signer)
            size_mib = path.stat().st_size / 2**20
            best = best_verify(path, key, args.rounds)
            run, general = best["as installed"], best["general path"]
            print(
                f"verify {n:>9,} records ({size_mib:,.0f} MiB), Python fast path: "
                f"{run.figures(n, baseline.cpu)}"
            )
            print(f"  general path only: {best['general path'].figures(n, baseline.cpu)}")
            speedup = (general.cpu - baseline.cpu) / max(run.cpu - baseline.cpu, 1e-9)
            print(f"    {speedup:.2f}x the general path (one core, best of {args.rounds})")
            print(f"    generated at {n / generated:,.0f} records/s; {run.out.decode().strip()}")
            path.unlink()

        for n in export_sizes:
            db = work / f"audit-{n}.db"
            filled = fill_database(f"sqlite:///{db}", n, signer)
            out_path = work / f"export-{n}.jsonl"
            run = child(cli("export", "--database", f"sqlite:///{db}", "-o", str(out_path)))
            with out_path.open("rb") as exported:
                lines = sum(1 for _ in exported)
            print(f"export {n:>9,} records from SQLite: {run.figures(n, baseline.cpu)}")
            print(f"    table filled at {n / filled:,.0f} records/s; {lines:,} lines exported")
            run = child(cli("verify", str(out_path), "--public-key", str(key)))
            print(f"verify {n:>9,} records of that export: {run.figures(n, baseline.cpu)}")
            print(f"    {run.out.decode().strip()}")
            db.unlink()
            out_path.unlink()

        rate = append_rate(f"sqlite:///{work / 'append.db'}", 5000)
        print(f"store.append (head lookup + insert, one transaction): {rate:,.0f} records/s")


if __name__ == "__main__":
    main()
