"""Which URLs Even fetches signing keys from (SPEC §2): https, or http on a loopback host.

The check parses the URL and looks at its host, never at a string prefix: a prefix test lets
`http://localhost.attacker.net` or `http://localhost@evil.example` (user info, host
`evil.example`) pass as loopback. Invariants: a URL that passes has the scheme https, or the
scheme http and a host that is exactly `localhost` or a loopback IP literal; it never carries
user info, a fragment, or characters that would make two parsers disagree about its host.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_LOOPBACK_NAMES = frozenset({"localhost"})
# The whole authority: a DNS name or a bracketed IPv6 literal, and an optional port. Anything
# else (user info, `[::1].evil.example`) is where URL parsers disagree, so it is refused.
_AUTHORITY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]{1,5})?")


class InsecureUrl(ValueError):
    """The URL may not be used to fetch an issuer's discovery document or keys."""


def is_loopback_host(host: str) -> bool:
    """True only for `localhost` or a loopback IP literal (127.0.0.0/8, ::1)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_key_url(url: str, *, what: str) -> str:
    """`url` if Even may fetch keys or discovery from it, else InsecureUrl saying why."""
    if not isinstance(url, str) or not url:
        raise InsecureUrl(f"{what} must be a URL")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise InsecureUrl(f"{what} contains spaces, control characters or a backslash")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError as exc:
        raise InsecureUrl(f"{what} is not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise InsecureUrl(f"{what} must be an https URL, not {scheme or 'schemeless'}")
    if not host:
        raise InsecureUrl(f"{what} has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InsecureUrl(f"{what} must not carry user info (user@host)")
    if not _AUTHORITY.fullmatch(parts.netloc):
        raise InsecureUrl(f"{what} has a malformed host {parts.netloc!r}")
    if parts.fragment:
        raise InsecureUrl(f"{what} must not have a fragment")
    if scheme == "http" and not is_loopback_host(host):
        raise InsecureUrl(
            f"{what} must be https; plain http is allowed only for localhost or a loopback IP, "
            f"not {host!r}"
        )
    return url
