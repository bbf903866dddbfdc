"""Benchmark (not a test): `even-audit reconcile` throughput and peak memory.

Builds a signed export holding GRANTS grants (certificate mode with a few push-mode grants
and revocations, among requests and denials like a real log; records sealed in memory with
audit.chain.seal and checkpointed every 1,000 records with a throwaway audit key), and
syslog auth.log files in the format captured from the real test sshd
(tests/audit/fixtures/sshd_auth.log): each connection logs its `Connection from`, the
VERBOSE `Accepted certificate ID …` and `Postponed` steps, the `Accepted publickey …` login,
session and disconnect lines, with failed attempts and password logins mixed in. About one
line in nine is a login; most are explained, some are not.

Each run is `even-audit reconcile -o json` (and once `-o text`) in its own child process on
one core, output to /dev/null; the child reports its own peak RSS (VmHWM) and CPU time
(user + system) at exit.
First with an empty log (the export's verification and indexing alone), then with each log
size; lines/s is the log's lines over the CPU time beyond that export-only run, so it is
the rate of the log pass. Flat RSS across log sizes is what "constant memory" means.
Prints figures only; asserts nothing about speed.

    .venv/bin/python bench/reconcile.py [--grants 100000] [--lines 250000,1000000]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.chain import GENESIS_HASH, AuditEvent, canonical, seal
from audit.checkpoint import make_checkpoint
from audit.signing import AuditSigner

START = datetime(2026, 11, 1, tzinfo=UTC)
CA = "SHA256:OCiQtst1J5fu0r4oHligcOLVJGBYXXFdeoApEsQIfg8"
CHECKPOINT_EVERY = 1000
PUSH_EVERY = 20  # one grant in 20 is push mode
HOSTS = 500

_CHILD = """
import atexit, resource, sys
def _report():
    hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]
    r = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write(f"BENCH {hwm} {r.ru_utime + r.ru_stime}\\n")
atexit.register(_report)
from audit.cli import main
main(sys.argv[1:], prog_name="even-audit")
"""


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def host(i: int) -> str:
    return f"web-{i % HOSTS}.prod.even.test"


def fingerprint(i: int) -> str:
    return "SHA256:" + f"{i:043d}"


def grant_time(i: int) -> datetime:
    return START + timedelta(seconds=20 * i)


def grant_event(i: int) -> AuditEvent:
    when = grant_time(i)
    common: dict[str, Any] = {
        "username": f"user{i % 97}",
        "login": "deploy",
        "hostname": host(i),
        "request_id": f"01J{i:023d}",
        "reason": f"debug INC-{i} elevated error rate on checkout",
    }
    window = {"valid_after": rfc3339(when), "valid_before": rfc3339(when + timedelta(hours=1))}
    if i % PUSH_EVERY == 0:
        details = {
            "mode": "push",
            "login": "deploy",
            "hosts": [host(i)],
            "fingerprint": fingerprint(i),
            "fingerprints": [fingerprint(i)],
            "bastion": None,
            **window,
        }
    else:
        details = {
            "serial": i + 1,
            "key_id": f"even:01J{i:023d}:user{i % 97}",
            "fingerprint": fingerprint(i),
            "principals": [f"deploy@{host(i)}"],
            "mode": "certificate",
            "bastion": None,
            "bastion_serial": None,
            "principal_mode": "host",
            "ca_fingerprint": CA,
            **window,
        }
    return AuditEvent(type="access.granted", **common, details=details)


def events(grants: int) -> Iterator[tuple[datetime, AuditEvent]]:
    for i in range(grants):
        when = grant_time(i)
        base = {"username": f"user{i % 97}", "login": "deploy", "hostname": host(i)}
        yield when, AuditEvent(type="access.requested", **base, details={"mode": "certificate"})
        yield when, grant_event(i)
        if i % 50 == 7:
            yield when, AuditEvent(type="access.denied", **base, details={"error": "no rule"})
        if i % 100 == 3:
            revoke = AuditEvent(
                type="access.revoked", **base, request_id=f"01J{i:023d}", details={}
            )
            yield when + timedelta(minutes=10), revoke


def write_export(path: Path, grants: int, signer: AuditSigner) -> int:
    prev, seq = GENESIS_HASH, 0
    with path.open("wb") as out:
        for when, event in events(grants):
            seq += 1
            record = seal(event, seq=seq, time=rfc3339(when), prev_hash=prev)
            prev = record["hash"]
            out.write(canonical(record) + b"\n")
            if seq % CHECKPOINT_EVERY == 0:
                out.write(canonical(_checkpoint(signer, seq, prev)) + b"\n")
        if seq % CHECKPOINT_EVERY:
            out.write(canonical(_checkpoint(signer, seq, prev)) + b"\n")
    return seq


def _checkpoint(signer: AuditSigner, size: int, head: str) -> dict[str, Any]:
    return make_checkpoint(signer, origin="https://even.bench", size=size, head=head, time="T")


def session(rng: random.Random, grants: int) -> list[str]:
    """One connection's lines, in the captured formats; the login usually has a grant."""
    i = rng.randrange(grants)
    when = grant_time(i) + timedelta(seconds=rng.randrange(60, 3000))
    stamp = f"{when:%b} {when.day:2d} {when:%H:%M:%S}"
    pid, port = rng.randrange(2000, 60000), rng.randrange(30000, 60000)
    prefix = f"{stamp} {host(i)} sshd[{pid}]: "
    src = f"10.{i % 250}.{pid % 250}.{port % 250} port {port}"
    lines = [f'Connection from {src} on 10.0.0.1 port 22 rdomain ""']
    roll = rng.random()
    if roll < 0.03:
        lines += [
            f"Failed password for deploy from {src} ssh2",
            f"Accepted password for deploy from {src} ssh2",
        ]
    elif roll < 0.06:
        lines += [
            f"Failed publickey for deploy from {src} ssh2: ED25519 {fingerprint(grants + i)}",
            f"Connection closed by authenticating user deploy {src} [preauth]",
        ]
        return [prefix + line for line in lines]
    elif i % PUSH_EVERY == 0:
        fp = fingerprint(i)
        lines += [
            f"Accepted key ED25519 {fp} found at /etc/ssh/authorized_keys/deploy:1",
            f"Postponed publickey for deploy from {src} ssh2 [preauth]",
            f"Accepted publickey for deploy from {src} ssh2: ED25519 {fp}",
        ]
    else:
        key_id, serial, fp = f"even:01J{i:023d}:user{i % 97}", i + 1, fingerprint(i)
        lines += [
            f'Accepted certificate ID "{key_id}" (serial {serial}) signed by ED25519 CA {CA} '
            "via /etc/ssh/even_user_ca.pub",
            f"Postponed publickey for deploy from {src} ssh2 [preauth]",
            f"Accepted publickey for deploy from {src} ssh2: ED25519-CERT {fp} ID {key_id} "
            f"(serial {serial}) CA ED25519 {CA}",
        ]
    lines += [
        f"User child is on pid {pid + 1}",
        f"Starting session: command for deploy from {src} id 0",
        f"Received disconnect from {src}:11: disconnected by user",
        f"Disconnected from user deploy {src}",
    ]
    return [prefix + line for line in lines]


def write_log(path: Path, lines: int, grants: int) -> int:
    rng = random.Random(lines)
    written = 0
    with path.open("w", encoding="ascii") as out:
        while written < lines:
            block = session(rng, grants)[: lines - written]
            out.write("\n".join(block) + "\n")
            written += len(block)
    return written


def run(export: Path, key: Path, log: Path, output: str = "json") -> tuple[float, int, float]:
    """(CPU seconds, peak RSS KiB, wall seconds) of one reconcile in a child process."""
    argv = [sys.executable, "-c", _CHILD, "reconcile", str(export), "--public-key", str(key)]
    argv += ["--sshd-log", str(log), "--log-end", "2027-06-01T00:00:00Z", "-o", output]
    cpu = [str(sorted(os.sched_getaffinity(0))[0])]
    started = time.perf_counter()
    done = subprocess.run(
        ["taskset", "-c", *cpu, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"reconcile failed ({done.returncode}): {done.stderr}")
    figures = next(line for line in done.stderr.splitlines() if line.startswith("BENCH "))
    _, hwm, seconds = figures.split()
    return float(seconds), int(hwm), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--lines", default="250000,1000000")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(n) for n in args.lines.split(",")]
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as tmp:
        work = Path(tmp)
        signer = AuditSigner(Ed25519PrivateKey.generate())
        key = work / "audit.pem"
        key.write_bytes(signer.public_pem())
        export = work / "export.jsonl"
        started = time.perf_counter()
        records = write_export(export, args.grants, signer)
        size_mb = export.stat().st_size / 1e6
        print(
            f"export: {args.grants:,} grants in {records:,} records, {size_mb:.0f} MB "
            f"(built in {time.perf_counter() - started:.1f} s)"
        )
        empty = work / "empty.log"
        empty.write_text("")
        base = min(run(export, key, empty) for _ in range(args.rounds))
        print(
            f"export pass only (verify + index): {base[0]:.2f} s CPU, peak RSS "
            f"{base[1] / 1024:.0f} MiB"
        )
        print(
            f"{'log lines':>10}  {'logins':>8}  {'CPU s':>6}  {'log lines/s':>12}  {'peak RSS':>9}"
        )
        for lines in sizes:
            log = work / f"auth-{lines}.log"
            write_log(log, lines, args.grants)
            logins = sum(1 for line in log.open() if "]: Accepted " in line and " for " in line)
            best = min(run(export, key, log) for _ in range(args.rounds))
            rate = lines / max(best[0] - base[0], 1e-9)
            print(
                f"{lines:>10,}  {logins:>8,}  {best[0]:>6.2f}  {rate:>12,.0f}  "
                f"{best[1] / 1024:>6.0f} MiB"
            )
        best = min(run(export, key, log, "text") for _ in range(args.rounds))
        rate = sizes[-1] / max(best[0] - base[0], 1e-9)
        print(f"the {sizes[-1]:,}-line log with the text table (-o text): {rate:,.0f} lines/s")


if __name__ == "__main__":
    main()
