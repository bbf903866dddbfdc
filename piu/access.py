"""The request-access flow: key pair → POST → certificates and receipt on disk → ssh argv.

Kept apart from the CLI so `piu ssh` and tunnels can reuse it. Order matters: a certificate
is written only after it was checked to certify piu's own key, and the receipt (Even's signed
proof that the grant is in the audit log) is kept before anything is shown to the user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from piu.errors import BadResponse, UsageProblem
from piu.files import append_line, certificate_path, ensure_private_dir, write_private
from piu.keys import KeyPair, check_certificate, ensure_key_pair
from piu.models import AccessRequestBody, Grant
from piu.paths import Paths
from piu.sshcmd import Hop, ssh_argv

if TYPE_CHECKING:
    from piu.client import EvenClient


@dataclass(frozen=True)
class AccessSpec:
    """What the user asked for, before piu's public key is added."""

    hostname: str
    reason: str
    login: str | None = None
    bastion: str | None = None
    lifetime_minutes: int | None = None
    mode: str = "certificate"


@dataclass(frozen=True)
class Outcome:
    grant: Grant
    key: KeyPair
    certificate_file: Path | None
    bastion_certificate_file: Path | None
    ssh_argv: list[str]

    def as_json(self) -> dict[str, object]:
        """The server's answer plus where piu put things (`-o json`, SPEC §9)."""
        return {
            **self.grant.raw,
            "identity_file": str(self.key.private_path),
            "certificate_file": _str_or_none(self.certificate_file),
            "bastion_certificate_file": _str_or_none(self.bastion_certificate_file),
        }


def split_target(target: str) -> tuple[str | None, str]:
    """`[LOGIN@]HOST` → (login or None, host); names themselves are checked by Even."""
    login, sep, host = target.rpartition("@")
    if not host or (sep and not login):
        raise UsageProblem(f"expected [LOGIN@]HOST, got {target!r}")
    return (login if sep else None), host


def request_access(client: EvenClient, paths: Paths, spec: AccessSpec) -> Outcome:
    key = ensure_key_pair(paths.ssh_dir)
    body = AccessRequestBody(
        hostname=spec.hostname,
        reason=spec.reason,
        public_key=key.public_line,
        mode=spec.mode,
        login=spec.login,
        bastion=spec.bastion,
        lifetime_minutes=spec.lifetime_minutes,
    )
    grant = client.request_access(body)
    _check_complete(grant, key)
    if grant.receipt is not None:
        keep_receipt(paths, grant.receipt)
    cert_file = _save_certificate(paths, key, grant.hostname, grant.id, grant.certificate)
    bastion_cert_file = None
    if grant.bastion is not None:
        bastion_cert_file = _save_certificate(
            paths, key, grant.bastion, grant.id, grant.bastion_certificate
        )
    target = Hop(grant.login, grant.hostname, cert_file)
    # On the bastion the requester logs in as themselves (principal <username>@<bastion>).
    jump = None if grant.bastion is None else Hop(grant.username, grant.bastion, bastion_cert_file)
    argv = ssh_argv(key.private_path, target, jump)
    return Outcome(grant, key, cert_file, bastion_cert_file, argv)


def _check_complete(grant: Grant, key: KeyPair) -> None:
    """Everything is checked before anything is written: no half-kept grant on disk."""
    if grant.status != "GRANTED":
        raise BadResponse(f"Even answered 201 but the request {grant.id} is {grant.status}")
    if grant.mode == "certificate" and (
        grant.certificate is None or (grant.bastion is not None and not grant.bastion_certificate)
    ):
        raise BadResponse(f"Even granted {grant.id} in certificate mode without a certificate")
    for certificate in (grant.certificate, grant.bastion_certificate):
        if certificate is not None:
            check_certificate(certificate, key)


def keep_receipt(paths: Paths, receipt: dict[str, object]) -> None:
    ensure_private_dir(paths.state_dir)
    line = json.dumps(receipt, separators=(",", ":"), ensure_ascii=True)
    append_line(paths.receipts_file, line)


def _save_certificate(
    paths: Paths, key: KeyPair, name: str, request_id: str, certificate: str | None
) -> Path | None:
    if certificate is None:
        return None
    path = certificate_path(paths.ssh_dir, name, request_id)
    write_private(path, (certificate + "\n").encode("ascii"))
    return path


def _str_or_none(path: Path | None) -> str | None:
    return None if path is None else str(path)
