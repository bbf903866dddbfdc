"""`even init --systemd`: a hardened systemd unit for `even serve` (SPEC §10).

The unit runs Even as a dedicated unprivileged user, with the file system read-only except
the Even directory (its SQLite database, WAL and writer lock live there), no new privileges,
no capabilities, and `ExecReload` sending SIGHUP, which re-reads policy.yaml (even.reload)
without a restart.

Invariants: every path in the unit is absolute (systemd requires it); the unit names the
interpreter that runs this Even, so it starts the same code `even init` ran; nothing in it
is secret (keys stay in the directory, read at start).
"""

from __future__ import annotations

import sys
from pathlib import Path

from even.errors import ConfigError
from even.names import is_login

UNIT_NAME = "even.service"
DEFAULT_USER = "even"


def render_unit(
    directory: Path,
    *,
    user: str = DEFAULT_USER,
    python: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
) -> str:
    """The unit's text for an Even directory (made absolute here)."""
    if not is_login(user):
        raise ConfigError(f"--systemd-user {user!r} is not a valid user name")
    directory = directory.resolve()
    interpreter = (python or Path(sys.executable)).absolute()
    if any(c.isspace() or c in "\"'\\%$" for c in f"{directory}{interpreter}"):
        raise ConfigError("paths in a systemd unit must not contain spaces, quotes or % or $")
    # A venv under a home directory must stay visible (read-only) to the service.
    in_home = any(str(p).startswith(("/home/", "/root/")) for p in (directory, interpreter))
    serve = (
        f"{interpreter} -m even.cli serve --config {directory}/even.yaml"
        f" --host {host} --port {port} --workers {workers}"
    )
    return f"""\
# Written by `even init --systemd`. Install: copy to /etc/systemd/system/{UNIT_NAME}, create
# the user (useradd --system --no-create-home --shell /usr/sbin/nologin {user}), give it the
# directory (chown -R {user}: {directory}), then: systemctl daemon-reload &&
# systemctl enable --now even. `systemctl reload even` re-reads policy.yaml.
[Unit]
Description=Even: audited just-in-time SSH access
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
User={user}
Group={user}
WorkingDirectory={directory}
ExecStart={serve}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
TimeoutStopSec=30
Environment=PYTHONUNBUFFERED=1
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={directory}
ProtectHome={"read-only" if in_home else "yes"}
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"""


def write_unit(directory: Path, *, user: str = DEFAULT_USER, port: int = 8080) -> Path:
    """Write DIRECTORY/even.service (replacing an older one: it holds no state)."""
    path = directory / UNIT_NAME
    path.write_text(render_unit(directory, user=user, port=port), encoding="utf-8")
    return path
