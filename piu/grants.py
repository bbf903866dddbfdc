"""The certificate grants piu holds, so `piu ssh` can reuse one instead of asking again.

`$XDG_STATE_HOME/piu/grants.json` lists, per grant: id, who logs in where, through which
bastion, and the certificate files. The index is only a pointer: before a grant is reused its
certificate files are read again and must still certify piu's current key and be valid for at
least `REUSE_MARGIN` more seconds, going by the certificate's own valid_before, so a stale or
edited index can never make piu hand ssh an expired or foreign certificate. A revoked grant is
not known here; its certificate fails at sshd (the KRL) and `piu ssh --new` asks again.

Entries whose certificates have expired are dropped, together with their certificate files,
whenever the index is written. Concurrent pius may race on the index; the loser's entry is
missing, which costs one extra grant at worst, never a wrong one.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from piu.errors import PiuError
from piu.files import ensure_private_dir, write_private
from piu.held import REUSE_MARGIN
from piu.keys import KeyPair, check_certificate
from piu.paths import Paths


@dataclass(frozen=True)
class HeldGrant:
    id: str
    username: str
    login: str
    hostname: str
    bastion: str | None
    certificate_file: str
    bastion_certificate_file: str | None
    valid_before: int  # epoch seconds, from the certificate

    def files(self) -> list[Path]:
        names = [self.certificate_file, self.bastion_certificate_file]
        return [Path(name) for name in names if name]


def load(paths: Paths) -> list[HeldGrant]:
    try:
        raw = json.loads(paths.grants_file.read_text(encoding="utf-8"))
        return [HeldGrant(**entry) for entry in raw["grants"]]
    except (OSError, ValueError, TypeError, KeyError):
        return []  # a lost index costs a new grant, nothing else


def record(paths: Paths, grant: HeldGrant, now: float) -> None:
    kept = [g for g in load(paths) if g.id != grant.id]
    _save(paths, [*kept, grant], now)


def find(
    paths: Paths,
    key: KeyPair,
    now: float,
    *,
    hostname: str,
    login: str | None,
    bastion: str | None,
) -> HeldGrant | None:
    """The longest-valid held grant for login@hostname (via `bastion`, if one is asked for)."""
    best: HeldGrant | None = None
    for grant in load(paths):
        wanted_login = login or grant.username  # Even's default login is the requester
        if (grant.hostname, grant.login) != (hostname, wanted_login):
            continue
        if bastion is not None and grant.bastion != bastion:
            continue
        valid_before = _still_valid(grant, key, now)
        if valid_before is not None and (best is None or valid_before > best.valid_before):
            best = HeldGrant(**{**asdict(grant), "valid_before": valid_before})
    return best


def hostnames(paths: Paths) -> list[str]:
    """Hosts with a grant in the index (for shell completion)."""
    return sorted({g.hostname for g in load(paths)})


def _still_valid(grant: HeldGrant, key: KeyPair, now: float) -> int | None:
    """valid_before of the grant's certificates if all are usable for REUSE_MARGIN more."""
    from piu import sshwire  # not piu.agent: `piu ssh` need not import socket

    if grant.bastion is not None and grant.bastion_certificate_file is None:
        return None
    ends = []
    for path in grant.files():
        try:
            certificate = path.read_text(encoding="ascii").strip()
            check_certificate(certificate, key)
            ends.append(sshwire.read_certificate(certificate).valid_before)
        except (OSError, UnicodeDecodeError, ValueError, PiuError):
            return None
    valid_before = min(ends)
    return valid_before if valid_before - now >= REUSE_MARGIN else None


def _save(paths: Paths, grants: list[HeldGrant], now: float) -> None:
    live: list[HeldGrant] = []
    dead: list[HeldGrant] = []
    for grant in grants:
        (live if grant.valid_before > now else dead).append(grant)
    in_use = {path for grant in live for path in grant.files()}
    for grant in dead:
        for path in grant.files():
            # Only piu's own certificate files, and none a live grant still points at.
            if path.parent == paths.ssh_dir and path not in in_use:
                with contextlib.suppress(OSError):
                    path.unlink()
    ensure_private_dir(paths.state_dir)
    data = {"grants": [asdict(g) for g in live]}
    write_private(paths.grants_file, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
