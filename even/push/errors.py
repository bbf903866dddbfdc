"""Push failures, one base: each names the host and says what went wrong, safe to show.

These are transport and host failures (502 at the API), never policy decisions; the use case
translates them into `even.errors.PushFailed` after recording `access.failed`.
"""

from __future__ import annotations


class PushError(Exception):
    """Something between Even and a host failed; `host` is the name Even used for it."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.message = message


class PushConfigError(PushError):
    """The push key or known_hosts file cannot be used."""


class HostUnreachable(PushError):
    """No TCP connection, no SSH handshake, or a bastion refused the hop."""


class HostKeyRejected(PushError):
    """The host's key is not the one pinned in push.known_hosts, or none is pinned."""


class AuthenticationFailed(PushError):
    """The host did not accept Even's push key."""


class PushTimeout(PushError):
    """The host did not answer within the push's time budget."""


class CommandFailed(PushError):
    """odd ran and refused (exit 2) or failed (exit 1); `exit_status` -1 if none came back."""

    def __init__(self, host: str, message: str, exit_status: int) -> None:
        super().__init__(host, message)
        self.exit_status = exit_status
