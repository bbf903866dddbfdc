"""Exports and log lines for the reconciliation tests, around the captured sshd log.

`fixtures/sshd_auth.log` holds the real test sshd's syslog output (captured by
`fixtures/capture_sshd_log.py`, unedited): a certificate login (key ID
`even:01JCAPTURE0000000000000001:alice`, serial 7), a failed certificate for another host, a
plain-key login (what a pushed key, or a static key placed behind Even's back, looks like), a
failed and a successful password login, and an unknown user. `sshd_auth.facts.json` holds the
keys' fingerprints. The exports here are chained and signed like Even's (audit.chain,
audit.checkpoint) with a throwaway audit key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.chain import GENESIS_HASH, AuditEvent, canonical, seal
from audit.checkpoint import make_checkpoint
from audit.signing import AuditSigner

FIXTURES = Path(__file__).parent / "fixtures"
AUTH_LOG = FIXTURES / "sshd_auth.log"
FACTS = json.loads((FIXTURES / "sshd_auth.facts.json").read_text())
HOST = FACTS["host"]
LOGIN = "piutest"
CERT_REQUEST = "01JCAPTURE0000000000000001"
CERT_KEY_ID = f"even:{CERT_REQUEST}:alice"
LOG_END = "2026-12-31T00:00:00Z"  # the fixture was captured on 2026-12-06, 15:31-15:32 UTC
WINDOW = ("2026-12-06T15:20:00Z", "2026-12-06T16:20:00Z")


@dataclass
class Export:
    path: Path
    key: Path


def cert_grant(
    request_id: str = CERT_REQUEST,
    *,
    serial: int = 7,
    hostname: str = HOST,
    window: tuple[str, str] = WINDOW,
    fingerprint: str | None = None,
    ca_fingerprint: str | None = None,
) -> AuditEvent:
    return AuditEvent(
        type="access.granted",
        username="alice",
        login=LOGIN,
        hostname=hostname,
        request_id=request_id,
        reason="deploy INC-1",
        details={
            "serial": serial,
            "key_id": f"even:{request_id}:alice",
            "fingerprint": fingerprint or FACTS["user_fingerprint"],
            "principals": [f"{LOGIN}@{hostname}"],
            "valid_after": window[0],
            "valid_before": window[1],
            "mode": "certificate",
            "bastion": None,
            "bastion_serial": None,
            "principal_mode": "host",
            "ca_fingerprint": ca_fingerprint or FACTS["ca_fingerprint"],
        },
    )


def push_grant(
    request_id: str = "01JCAPTUREPUSH000000000001",
    *,
    fingerprint: str | None = None,
    hosts: tuple[str, ...] = (HOST,),
    window: tuple[str, str] = WINDOW,
) -> AuditEvent:
    key = fingerprint or FACTS["static_fingerprint"]
    return AuditEvent(
        type="access.granted",
        username="alice",
        login=LOGIN,
        hostname=hosts[-1],
        request_id=request_id,
        reason="deploy INC-2",
        details={
            "mode": "push",
            "bastion": None,
            "login": LOGIN,
            "hosts": list(hosts),
            "fingerprint": key,
            "fingerprints": [key],
            "valid_after": window[0],
            "valid_before": window[1],
        },
    )


def revoked(request_id: str) -> AuditEvent:
    return AuditEvent(
        type="access.revoked",
        username="alice",
        login=LOGIN,
        hostname=HOST,
        request_id=request_id,
        details={"serial": 7, "key_id": f"even:{request_id}:alice", "by": "alice"},
    )


def write_export(
    directory: Path, events: list[tuple[str, AuditEvent]], name: str = "export.jsonl"
) -> Export:
    """A valid export of `events` (each with its record time), checkpointed at the end."""
    signer = AuditSigner(Ed25519PrivateKey.generate())
    lines: list[bytes] = []
    head = GENESIS_HASH
    opening = AuditEvent(type="policy.loaded", details={"sha256": "0" * 64})
    for seq, (time, event) in enumerate([(WINDOW[0], opening), *events], start=1):
        record = seal(event, seq=seq, time=time, prev_hash=head)
        head = record["hash"]
        lines.append(canonical(record))
    size = len(lines)
    checkpoint = make_checkpoint(
        signer, origin="https://even.test", size=size, head=head, time=WINDOW[1]
    )
    lines.append(canonical(checkpoint))
    path = directory / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    key = directory / f"{name}.pub.pem"
    key.write_bytes(signer.public_pem())
    return Export(path, key)


def journal_entry(line: str, **extra: Any) -> str:
    """A captured syslog line as `journalctl -o json` prints it (the fields it always has)."""
    from datetime import UTC, datetime

    stamp, host, rest = line[:15], line[16:].split(" ", 1)[0], line[16:].split(" ", 1)[1]
    program, _, message = rest.partition(": ")
    name, _, pid = program.partition("[")
    when = datetime.strptime(f"2026 {stamp}", "%Y %b %d %H:%M:%S").replace(tzinfo=UTC)
    entry = {
        "__CURSOR": "s=0;i=1",
        "__REALTIME_TIMESTAMP": str(int(when.timestamp()) * 1_000_000 + 123456),
        "__MONOTONIC_TIMESTAMP": "1",
        "_HOSTNAME": host,
        "SYSLOG_FACILITY": "4",
        "SYSLOG_IDENTIFIER": name,
        "_COMM": name,
        "_PID": pid.rstrip("]"),
        "PRIORITY": "6",
        "MESSAGE": message,
        **extra,
    }
    return json.dumps(entry)
