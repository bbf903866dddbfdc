"""`GET /v1/krl` with 200,000 revoked grants, half of them expired (issue 14, finding 5).

Figures only, no assertions on speed. One `even serve` (SQLite, WAL) on a database filled
directly with N revoked certificate grants (`--grants`, default 200,000): half expired more
than 10 minutes ago, half still valid (24 h certificates), revoked over the last month,
serials interleaved, all signed by the active CA key. Then:

1. cold: the first `GET /v1/krl` after start (reads the live serials once);
2. 304: `--calls` requests with the current ETag in If-None-Match; the server's CPU
   (user + system of the process, from /proc) divided by the calls, and the client's latency;
3. rebuild: one new revocation (written to the database, as another replica would), then,
   once the server re-reads the counter (after FRESH_SECONDS), one `GET /v1/krl` with the
   old ETag (200, new body), `--rebuilds` times; the server's CPU per rebuild;
4. in process: the same 304 check and rebuild through `KrlPublisher` on the same database,
   with the calling thread's CPU time (no HTTP around it);
5. `ssh-keygen -Q` on the served KRL for a certificate with a live revoked serial (REVOKED)
   and one with an expired revoked serial (not listed): OpenSSH reads the KRL as Even means it.

    .venv/bin/python bench/krl_scale.py [--grants 200000] [--calls 2000] [--rebuilds 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import insert, select, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.even_target import configure, start
from bench.procs import tree_cpu_seconds
from even.ca import load_ca_key
from even.clock import SystemClock, rfc3339
from even.config import load_settings
from even.krl import parse_krl
from even.service.krl_publisher import FRESH_SECONDS, KrlPublisher, record_revocation
from even.store.db import make_engine, transaction
from even.store.tables import AccessRequestRow, CaKeyRow, CertificateSerialRow, KrlStateRow
from harness.ports import free_port

_requests = AccessRequestRow.__table__  # type: ignore[attr-defined]
_serials = CertificateSerialRow.__table__  # type: ignore[attr-defined]
_ca = CaKeyRow.__table__  # type: ignore[attr-defined]
_krl_state = KrlStateRow.__table__  # type: ignore[attr-defined]
LIFETIME = timedelta(hours=24)


def fill(engine, grants: int, fingerprint: str, seed: int = 14) -> tuple[list[int], list[int]]:
    """N revoked grants, half expired; returns (live serials, expired serials)."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    requests, serials = [], []
    live, expired = [], []
    for index in range(grants):
        # Live: granted within the last 23 h for 24 h, revoked since. Expired: granted 2-30
        # days ago, revoked within its day. Revocations thus spread over time, as in life.
        is_live = rng.random() < 0.5
        if is_live:
            granted = now - timedelta(seconds=rng.randint(60, 23 * 3600))
        else:
            granted = now - timedelta(seconds=rng.randint(2 * 86400, 30 * 86400))
        valid_before = rfc3339(granted + LIFETIME)
        window = min(now - granted, LIFETIME).total_seconds()
        revoked = rfc3339(granted + timedelta(seconds=rng.randint(0, int(window))))
        request_id = f"bench-{index:07d}"
        stamp = rfc3339(granted)
        requests.append(
            {"id": request_id, "status": "REVOKED", "username": "alice", "login": "alice",
             "hostname": "db-1.prod.even.test", "mode": "certificate", "reason": "bench INC-1",
             "lifetime_minutes": 1440, "created": stamp, "last_modified": stamp,
             "valid_before": valid_before, "revoked_at": revoked, "serial": index + 1,
             "revocation_seq": index + 1}
        )  # fmt: skip
        serials.append(
            {"serial": index + 1, "request_id": request_id, "purpose": "target",
             "valid_before": valid_before, "ca_fingerprint": fingerprint}
        )  # fmt: skip
        (live if is_live else expired).append(index + 1)
    with transaction(engine) as conn:
        for start_at in range(0, grants, 20_000):
            conn.execute(insert(_requests), requests[start_at : start_at + 20_000])
            conn.execute(insert(_serials), serials[start_at : start_at + 20_000])
        conn.execute(update(_krl_state).values(changes=grants))  # as if revoked one by one
    return live, expired


def revoke_one(engine, fingerprint: str, serial: int) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    request_id = f"bench-new-{serial}"
    stamp = rfc3339(now)
    with transaction(engine) as conn:
        conn.execute(
            insert(_requests).values(
                id=request_id, status="GRANTED", username="alice", login="alice",
                hostname="db-1.prod.even.test", mode="certificate", reason="bench INC-2",
                lifetime_minutes=30, created=stamp, last_modified=stamp,
                valid_before=rfc3339(now + timedelta(minutes=30)), serial=serial,
            )
        )  # fmt: skip
        conn.execute(
            insert(_serials).values(
                serial=serial, request_id=request_id, purpose="target",
                valid_before=rfc3339(now + timedelta(minutes=30)), ca_fingerprint=fingerprint,
            )
        )  # fmt: skip
        number = record_revocation(conn)
        conn.execute(
            update(_requests)
            .where(_requests.c.id == request_id)
            .values(status="REVOKED", revoked_at=stamp, revocation_seq=number)
        )


def keygen_q(directory: Path, krl: bytes, ca_file: Path, serial: int) -> str:
    user = ed25519.Ed25519PrivateKey.generate().public_key()
    ca = load_ca_key(ca_file).private_key
    now = int(time.time())
    cert = (
        serialization.ssh.SSHCertificateBuilder()
        .public_key(user)
        .serial(serial)
        .type(serialization.ssh.SSHCertificateType.USER)
        .key_id(f"bench:{serial}".encode())
        .valid_principals([b"alice"])
        .valid_after(now - 60)
        .valid_before(now + 600)
        .sign(ca)  # type: ignore[arg-type]
    )
    (directory / "served.krl").write_bytes(krl)
    path = directory / f"c{serial}-cert.pub"
    path.write_bytes(cert.public_bytes())
    done = subprocess.run(
        ["ssh-keygen", "-Q", "-f", str(directory / "served.krl"), str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return (done.stdout + done.stderr).strip().rsplit(": ", 1)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grants", type=int, default=200_000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rebuilds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="krl-bench-") as tmp:
        directory = Path(tmp)
        port = free_port()
        setup = configure(directory / "even", port)
        settings = load_settings(setup.config)
        engine = make_engine(settings.resolved_database_url)
        server = start(setup, port=port, workers=1, log_path=directory / "even.log")
        try:
            with engine.connect() as conn:
                fingerprint = conn.execute(
                    select(_ca.c.fingerprint).where(_ca.c.state == "active")
                ).scalar_one()
            began = time.perf_counter()
            live, expired = fill(engine, args.grants, fingerprint)
            print(f"filled {args.grants:,} revoked grants ({len(live):,} live, "
                  f"{len(expired):,} expired) in {time.perf_counter() - began:.1f} s")  # fmt: skip
            pid = server.process.pid
            with httpx.Client(base_url=server.url, trust_env=False, timeout=60) as client:
                cpu, began = tree_cpu_seconds(pid), time.perf_counter()
                first = client.get("/v1/krl")
                print(f"cold GET /v1/krl: {first.status_code}, {len(first.content):,} bytes, "
                      f"{parse_krl(first.content).serial_count():,} serials, "
                      f"{(time.perf_counter() - began) * 1000:.0f} ms wall, "
                      f"{(tree_cpu_seconds(pid) - cpu) * 1000:.0f} ms server CPU")  # fmt: skip
                etag = first.headers["etag"]
                latencies = []
                cpu = tree_cpu_seconds(pid)
                for _ in range(args.calls):
                    began = time.perf_counter()
                    answer = client.get("/v1/krl", headers={"If-None-Match": etag})
                    latencies.append(time.perf_counter() - began)
                    assert answer.status_code == 304, answer.status_code
                per_call = (tree_cpu_seconds(pid) - cpu) / args.calls
                print(f"304 with current ETag: {per_call * 1000:.3f} ms server CPU per call "
                      f"({args.calls:,} calls), client latency median "
                      f"{statistics.median(latencies) * 1000:.3f} ms")  # fmt: skip
                cpu = tree_cpu_seconds(pid)
                for _ in range(args.calls):
                    client.get("/healthz")
                healthz = (tree_cpu_seconds(pid) - cpu) / args.calls
                print(f"for scale, GET /healthz: {healthz * 1000:.3f} ms server CPU per call")
                rebuild_cpu = []
                next_serial = args.grants + 1
                for _ in range(args.rebuilds):
                    revoke_one(engine, fingerprint, next_serial)
                    next_serial += 1
                    # Recorded as by another replica: seen once the counter is read again.
                    time.sleep(FRESH_SECONDS + 0.1)
                    cpu = tree_cpu_seconds(pid)
                    answer = client.get("/v1/krl", headers={"If-None-Match": etag})
                    rebuild_cpu.append(tree_cpu_seconds(pid) - cpu)
                    assert answer.status_code == 200 and answer.headers["etag"] != etag
                    etag = answer.headers["etag"]
                print(f"rebuild after one new revocation: median "
                      f"{statistics.median(rebuild_cpu) * 1000:.1f} ms server CPU, max "
                      f"{max(rebuild_cpu) * 1000:.1f} ms ({args.rebuilds} rebuilds; /proc "
                      "ticks are 10 ms)")  # fmt: skip
                served = client.get("/v1/krl").content
            ca_file = settings.path(settings.ca.keys[0])
            print(f"ssh-keygen -Q: live revoked serial {live[0]} -> "
                  f"{keygen_q(directory, served, ca_file, live[0])}; expired revoked serial "
                  f"{expired[0]} -> {keygen_q(directory, served, ca_file, expired[0])}; "
                  f"newest {next_serial - 1} -> "
                  f"{keygen_q(directory, served, ca_file, next_serial - 1)}")  # fmt: skip
        finally:
            server.stop()
        publisher = KrlPublisher(engine=engine, clock=SystemClock())
        began = time.perf_counter()
        publisher.current()
        print(f"in process: cold load {(time.perf_counter() - began) * 1000:.0f} ms")
        cpu = time.thread_time()
        for _ in range(args.calls):
            publisher.current()
        print(f"in process: unchanged check {(time.thread_time() - cpu) / args.calls * 1e6:.0f} "
              "µs thread CPU per call")  # fmt: skip
        times = []
        for _ in range(args.rebuilds):
            revoke_one(engine, fingerprint, next_serial)
            next_serial += 1
            cpu = time.thread_time()
            publisher.current()
            times.append(time.thread_time() - cpu)
        print(f"in process: rebuild after one revocation median "
              f"{statistics.median(times) * 1000:.1f} ms thread CPU, max "
              f"{max(times) * 1000:.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
