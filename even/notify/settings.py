"""The `notifications:` section of even.yaml, validated when the config is loaded.

Invariants:
- A URL is `https://…`, or plain `http://` only to a loopback host: `localhost`, an address in
  127.0.0.0/8, or `::1`. The host is taken from the parsed URL (so `http://127.0.0.1@evil/` is
  `evil` and refused), never from a string prefix.
- `events` are audit record types or `access.emergency`; subscription names are unique.
- A `standard-webhooks` subscription needs `secret_file`: base64 of 24–64 bytes, `whsec_`
  prefix allowed, checked strictly at load (the signing library itself skips bad characters,
  which would sign with a key the receiver does not hold). For `slack` a secret is optional.
- Secrets are read from files and never printed; errors name the file, not its content.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from audit.record_types import RECORD_TYPES as AUDIT_RECORD_TYPES

# The audit record types (the audit log's own list) plus the derived `access.emergency`.
RECORD_TYPES = frozenset(AUDIT_RECORD_TYPES)
EMERGENCY = "access.emergency"
EVENT_TYPES = RECORD_TYPES | {EMERGENCY}
SECRET_PREFIX = "whsec_"
SECRET_MIN_BYTES = 24  # what the Standard Webhooks specification asks of a key
SECRET_MAX_BYTES = 64
_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"  # Rust regex: `$` is the very end


class InvalidSecret(ValueError):
    """The secret file is missing, unreadable or not a usable key."""


class NotificationSettings(BaseModel):
    """One subscription: where to post which events, in which format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    url: str
    events: list[str] = Field(min_length=1)
    format: Literal["standard-webhooks", "slack"] = "standard-webhooks"
    secret_file: str | None = None

    @field_validator("url")
    @classmethod
    def _https_or_loopback(cls, value: str) -> str:
        check_url(value)
        return value

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown event types {unknown}; choose from {sorted(EVENT_TYPES)}")
        if len(set(value)) != len(value):
            raise ValueError("events lists a type twice")
        return value

    @model_validator(mode="after")
    def _secret_when_signed(self) -> NotificationSettings:
        if self.format == "standard-webhooks" and not self.secret_file:
            raise ValueError(f"notification {self.name!r}: standard-webhooks needs secret_file")
        return self


def check_url(value: str) -> None:
    """Raise ValueError unless `value` is an https URL, or http to a loopback host."""
    if any(ch.isspace() or ord(ch) < 0x20 for ch in value):
        raise ValueError("url must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise ValueError(f"url is not a valid URL: {exc}") from exc
    if not host:
        raise ValueError("url needs a host")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and is_loopback(host):
        return
    raise ValueError("url must be https (plain http only to localhost, 127.0.0.0/8 or ::1)")


def is_loopback(host: str) -> bool:
    """`localhost`, an IPv4 address in 127.0.0.0/8, or `::1` (a parsed hostname, no brackets)."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in ipaddress.IPv4Network("127.0.0.0/8")
    return address == ipaddress.IPv6Address("::1")


def parse_secret(text: str) -> bytes:
    """The key bytes of a secret file's text: base64 (standard), `whsec_` prefix allowed."""
    value = text.strip()
    if value.startswith(SECRET_PREFIX):
        value = value[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("not valid base64") from exc
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise InvalidSecret(
            f"the key must be {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes, got {len(key)}"
        )
    return key


def read_secret(path: Path) -> bytes:
    """Read and check one secret file; InvalidSecret says why without quoting the content."""
    try:
        text = path.read_text(encoding="ascii")
    except OSError as exc:
        raise InvalidSecret(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidSecret(f"{path}: not valid base64 (non-ASCII bytes)") from exc
    try:
        return parse_secret(text)
    except InvalidSecret as exc:
        raise InvalidSecret(f"{path}: {exc}") from exc


def check_subscriptions(subscriptions: list[NotificationSettings]) -> None:
    """Checks across the list (the per-item ones run in the model): unique names."""
    seen: set[str] = set()
    for item in subscriptions:
        if item.name in seen:
            raise ValueError(f"notification name {item.name!r} is used twice")
        seen.add(item.name)
