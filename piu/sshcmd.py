"""The ssh command line for a grant, as an argv list (never a shell string).

    ssh -i KEY -o CertificateFile=CERT -o IdentitiesOnly=yes [-o ProxyCommand=…] LOGIN@HOST

A jump through a bastion needs the bastion certificate, and `-J` would not carry `-i` or
`CertificateFile` to the jump host (ssh applies command-line options to the destination
only), so the hop is spelled out as a ProxyCommand running `ssh … -W %h:%p USER@BASTION`
with the bastion's certificate. ssh runs a ProxyCommand through the user's shell, hence the
shlex quoting inside it. ssh expands %-tokens in key and certificate paths and splits `-o`
values on spaces, so paths are quoted for ssh and paths containing `%`, `"` or `\\` are
refused rather than mangled.

`--tunnel L:R` becomes `-N -L 127.0.0.1:L:localhost:R`: local port L, on loopback only (even
if the user's ssh_config says GatewayPorts yes, a tunnel into production is not for the LAN),
forwarded to port R on the target itself (`localhost` as the target resolves it); `-N` because
a tunnel needs no remote command.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from piu.errors import LocalFileError, UsageProblem
from piu.held import passable_to_ssh

SSH = "ssh"


@dataclass(frozen=True)
class Hop:
    """One ssh destination: who logs in where, with which certificate (None in push mode)."""

    login: str
    host: str
    certificate: Path | None


_TUNNEL_RE = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")


def ssh_argv(
    identity: Path,
    target: Hop,
    jump: Hop | None = None,
    options: Sequence[str] = (),
    ssh_config: str | None = None,
) -> list[str]:
    """`options` (e.g. from `tunnel_options`) go before the destination; `ssh_config` is
    given (-F) to both hops, since the ProxyCommand's ssh would not see the outer one's."""
    config = ["-F", _checked(Path(ssh_config))] if ssh_config else []
    argv = [SSH, *config, *_identity_options(identity, target.certificate)]
    if jump is not None:
        inner = [SSH, *config, *_identity_options(identity, jump.certificate)]
        inner += ["-W", "%h:%p", f"{jump.login}@{jump.host}"]
        argv += ["-o", f"ProxyCommand={shlex.join(inner)}"]
    return [*argv, *options, f"{target.login}@{target.host}"]


def tunnel_options(spec: str) -> list[str]:
    """`L:R` → ssh options forwarding 127.0.0.1:L here to localhost:R on the target."""
    match = _TUNNEL_RE.fullmatch(spec)
    ports = [int(p) for p in match.groups()] if match else []
    if not ports or not all(1 <= p <= 65535 for p in ports):
        raise UsageProblem(
            f"--tunnel expects LOCAL_PORT:REMOTE_PORT (1-65535), got {spec!r}",
            hint="e.g. --tunnel 15432:5432 makes the target's port 5432 reachable at"
            " 127.0.0.1:15432",
        )
    local, remote = ports
    return ["-N", "-L", f"127.0.0.1:{local}:localhost:{remote}"]


def _identity_options(identity: Path, certificate: Path | None) -> list[str]:
    options = ["-i", _checked(identity)]
    if certificate is not None:
        options += ["-o", f"CertificateFile={_quoted(certificate)}"]
    return [*options, "-o", "IdentitiesOnly=yes"]


def _checked(path: Path) -> str:
    text = str(path)
    if not passable_to_ssh(text):
        raise LocalFileError(
            f"cannot pass {path!r} to ssh: the path contains %, a quote or a backslash",
            hint="set HOME to a directory without those characters",
        )
    return text


def _quoted(path: Path) -> str:
    text = _checked(path)
    return f'"{text}"' if " " in text else text
