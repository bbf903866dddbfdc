"""The request-access flow: key pair → POST → certificates and receipt on disk → ssh argv.

Kept apart from the CLI so `piu ssh` and tunnels reuse it. Order matters: a certificate is
written only after it was checked to certify piu's own key, and the receipt (Even's signed
proof that the grant is in the audit log) is kept before anything is shown to the user.
Certificate grants are then recorded in `piu.grants`, which `piu ssh` consults first
(`held_connection`); loading into the ssh-agent is a separate, optional step (`add_to_agent`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from piu import grants
from piu.errors import BadResponse, UsageProblem
from piu.files import append_line, certificate_path, ensure_private_dir, write_private
from piu.grants import HeldGrant
from piu.keys import KeyPair, check_certificate, ensure_key_pair
from piu.paths import Paths
from piu.sshcmd import Hop, ssh_argv

if TYPE_CHECKING:
    from piu.client import EvenClient

    # piu.models is imported where a request is made: `piu ssh` with a held grant needs none.
    from piu.models import Grant


@dataclass(frozen=True)
class AccessSpec:
    """What the user asked for, before piu's public key is added."""

    hostname: str
    reason: str
    login: str | None = None
    bastion: str | None = None
    lifetime_minutes: int | None = None
    mode: str = "certificate"
    emergency: bool = False  # break-glass: granted at once where the rule allows, reviewed later


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


def request_access(
    client: EvenClient,
    paths: Paths,
    spec: AccessSpec,
    *,
    now: float | None = None,
    ssh_options: Sequence[str] = (),
    ssh_config: str | None = None,
) -> Outcome:
    """Ask Even and keep what it granted (a pending answer is a BadResponse here: callers
    that can wait for approvers use `submit`, `piu.wait`, then `complete`)."""
    key, grant = submit(client, paths, spec)
    return complete(paths, key, grant, now=now, ssh_options=ssh_options, ssh_config=ssh_config)


def submit(client: EvenClient, paths: Paths, spec: AccessSpec) -> tuple[KeyPair, Grant]:
    """POST the request with piu's public key; Even's answer, granted or pending approval."""
    key = ensure_key_pair(paths.ssh_dir)
    from piu.models import AccessRequestBody

    body = AccessRequestBody(
        hostname=spec.hostname,
        reason=spec.reason,
        public_key=key.public_line,
        mode=spec.mode,
        login=spec.login,
        bastion=spec.bastion,
        lifetime_minutes=spec.lifetime_minutes,
        emergency=spec.emergency,
    )
    return key, client.request_access(body)


def complete(
    paths: Paths,
    key: KeyPair,
    grant: Grant,
    *,
    now: float | None = None,
    ssh_options: Sequence[str] = (),
    ssh_config: str | None = None,
) -> Outcome:
    """Keep a granted answer: receipt, certificates, the grant index; build the ssh argv.

    The same for a direct grant and one that waited for approvers (then `grant` is what
    GET /v1/access-requests/{id} showed its requester)."""
    _check_complete(grant, key)
    if grant.receipt is not None:
        keep_receipt(paths, grant.receipt)
    cert_file = _save_certificate(paths, key, grant.hostname, grant.id, grant.certificate)
    bastion_cert_file = None
    if grant.bastion is not None:
        bastion_cert_file = _save_certificate(
            paths, key, grant.bastion, grant.id, grant.bastion_certificate
        )
    if cert_file is not None and grant.certificate is not None:
        _remember(paths, grant, grant.certificate, cert_file, bastion_cert_file, now)
    target = Hop(grant.login, grant.hostname, cert_file)
    # On the bastion the requester logs in as themselves (principal <username>@<bastion>).
    jump = None if grant.bastion is None else Hop(grant.username, grant.bastion, bastion_cert_file)
    argv = ssh_argv(key.private_path, target, jump, ssh_options, ssh_config)
    return Outcome(grant, key, cert_file, bastion_cert_file, argv)


def held_connection(
    paths: Paths,
    spec: AccessSpec,
    now: float,
    ssh_options: Sequence[str] = (),
    ssh_config: str | None = None,
) -> tuple[HeldGrant, list[str]] | None:
    """A still-valid grant piu holds for the spec's login@host, and its ssh argv; or None."""
    if spec.mode != "certificate" or not paths.identity_file.exists():
        return None  # no key yet means no certificate for it either
    key = ensure_key_pair(paths.ssh_dir)
    held = grants.find(
        paths, key, now, hostname=spec.hostname, login=spec.login, bastion=spec.bastion
    )
    if held is None:
        return None
    target = Hop(held.login, held.hostname, Path(held.certificate_file))
    jump = None
    if held.bastion is not None and held.bastion_certificate_file is not None:
        jump = Hop(held.username, held.bastion, Path(held.bastion_certificate_file))
    return held, ssh_argv(key.private_path, target, jump, ssh_options, ssh_config)


def add_to_agent(outcome: Outcome, socket_path: str, now: float) -> int:
    """Load the grant's certificates into the agent until they expire; the lifetime given.

    Raises AgentError; the caller decides that this is only worth a warning.
    """
    from piu.agent import add_certificate, certificate_valid_before

    lifetime = 0
    g = outcome.grant
    for certificate, host in ((g.certificate, g.hostname), (g.bastion_certificate, g.bastion)):
        if certificate is None or host is None:
            continue
        lifetime = certificate_valid_before(certificate) - int(now)
        comment = f"piu:{g.id}:{host}"
        add_certificate(socket_path, outcome.key.private_path, certificate, lifetime, comment)
    return lifetime


def _remember(
    paths: Paths,
    grant: Grant,
    certificate: str,
    cert_file: Path,
    bastion_cert_file: Path | None,
    now: float | None,
) -> None:
    from piu.agent import certificate_valid_before

    valid_before = certificate_valid_before(certificate)
    if grant.bastion_certificate is not None:
        valid_before = min(valid_before, certificate_valid_before(grant.bastion_certificate))
    held = HeldGrant(
        id=grant.id,
        username=grant.username,
        login=grant.login,
        hostname=grant.hostname,
        bastion=grant.bastion,
        certificate_file=str(cert_file),
        bastion_certificate_file=_str_or_none(bastion_cert_file),
        valid_before=valid_before,
    )
    grants.record(paths, held, time.time() if now is None else now)


def _check_complete(grant: Grant, key: KeyPair) -> None:
    """Everything is checked before anything is written: no half-kept grant on disk."""
    if grant.status != "GRANTED":
        raise BadResponse(f"Even's answer for request {grant.id} is {grant.status}, not GRANTED")
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
