"""piu's errors: one base carrying a user-facing message and a remediation hint.

Leaves are named for the reason, and grouped under the few bases the CLI maps to exit codes
(SPEC §9): usage/configuration (2), not authenticated (3), denied (4), still pending (5),
unavailable (6); the
rest are plain errors (1). Only `piu.cli` turns them into output and exit codes.
Messages never contain the token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """An RFC 9457 problem+json body as Even sends it (`code` is Even's stable code)."""

    status: int
    title: str | None = None
    detail: str | None = None
    code: str | None = None
    type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        text = self.detail or self.title or f"HTTP {self.status}"
        return f"{text} [{self.code}]" if self.code else text


class PiuError(Exception):
    """Base of every error piu reports; str() is the message, `hint` says what to do next."""

    def __init__(self, message: str, *, hint: str = "", problem: Problem | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        self.problem = problem


# exit 2: the command line or the configuration is wrong
class UsageProblem(PiuError):
    """An argument piu checks itself is malformed."""


class ConfigError(PiuError):
    """piu.yaml, a PIU_* variable or a flag is missing or invalid."""


# exit 3: no usable identity
class NotAuthenticated(PiuError):
    """No token, or Even did not accept it."""


class NotLoggedIn(NotAuthenticated):
    """No token source is configured, or the login cache is missing or for another issuer."""


class TokenExpired(NotLoggedIn):
    """The cached login token expired and could not be refreshed."""


class LoginFailed(NotAuthenticated):
    """The device flow ended without a token: denied in the browser, code expired, refused."""


class TokenCommandFailed(NotAuthenticated):
    """--token-command could not produce a token."""


class TokenRejected(NotAuthenticated):
    """Even answered 401."""


# exit 4: policy said no
class Denied(PiuError):
    """Even answered 403, or 422 with a policy code (reason, lifetime, login)."""


# exit 5: an approval is still outstanding
class StillPending(PiuError):
    """The request waits for approvers: --no-wait, Ctrl-C, or the approval window ran out."""


# exit 6: try again later
class Unavailable(PiuError):
    """Even is rate limiting, overloaded or failing upstream (429, 502, 503, 504)."""


class Unreachable(Unavailable):
    """No HTTP answer at all: connection refused, DNS failure, timeout."""


class IdpUnavailable(Unavailable):
    """The OIDC issuer did not answer, or answered 5xx, during login or refresh."""


# exit 1: everything else
class RequestFailed(PiuError):
    """Even refused the request for a reason other than policy (422 invalid field, 404, …)."""


class TLSFailed(PiuError):
    """Even's TLS certificate did not verify; waiting will not help, configuration will."""


class BadResponse(PiuError):
    """Even's answer is not what SPEC §7 promises."""


class LocalFileError(PiuError):
    """A file under ~/.ssh/piu or the state directory could not be read or written."""


class KeyProblem(LocalFileError):
    """The piu key pair exists but cannot be used."""
