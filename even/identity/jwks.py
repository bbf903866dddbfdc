"""Per-issuer JWKS cache: keys only from the issuer's own JWKS, found through discovery.

An unknown `kid` triggers at most one refetch per cooldown (so random kids cannot turn Even
into a amplifier against the IdP); a failed fetch keeps the last good keys; keys older than
the maximum staleness make identity unavailable (503), never silently valid.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt

from even.clock import Clock
from even.errors import IdentityUnavailable

Fetch = Callable[[str], dict[str, Any]]
REFRESH_AFTER = timedelta(hours=1)


def http_fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON object; no redirects (a redirect could point keys elsewhere)."""
    response = httpx.get(url, timeout=5.0, follow_redirects=False)
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return data


class JwksCache:
    def __init__(
        self,
        issuer: str,
        *,
        clock: Clock,
        fetch: Fetch = http_fetch_json,
        cooldown: timedelta = timedelta(seconds=60),
        max_staleness: timedelta = timedelta(days=1),
    ) -> None:
        self.issuer = issuer
        self._clock = clock
        self._fetch = fetch
        self._cooldown = cooldown
        self._max_staleness = max_staleness
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._last_success: datetime | None = None
        self._last_attempt: datetime | None = None
        self.fetch_count = 0

    @property
    def last_success(self) -> datetime | None:
        """When the JWKS was last fetched successfully (None: never); for the metrics."""
        return self._last_success

    def key(self, kid: str) -> jwt.PyJWK | None:
        """The issuer's key for `kid`, refetching within the cooldown rules."""
        now = self._clock.now()
        with self._lock:
            due = self._last_success is None or now - self._last_success > REFRESH_AFTER
            if (kid not in self._keys or due) and self._may_fetch(now):
                self._refetch(now)
            if self._last_success is None or now - self._last_success > self._max_staleness:
                raise IdentityUnavailable(f"signing keys of {self.issuer} are unavailable")
            return self._keys.get(kid)

    def _may_fetch(self, now: datetime) -> bool:
        return self._last_attempt is None or now - self._last_attempt >= self._cooldown

    def _refetch(self, now: datetime) -> None:
        self._last_attempt = now
        self.fetch_count += 1
        try:
            discovery = self._fetch(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
            if discovery.get("issuer") != self.issuer:
                raise ValueError("discovery document names another issuer")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise ValueError("discovery document has no jwks_uri")
            keys = parse_jwks(self._fetch(jwks_uri))
        except (httpx.HTTPError, ValueError, jwt.PyJWTError):
            return  # keep the last good keys; staleness decides when that stops being fine
        self._keys = keys
        self._last_success = now


def parse_jwks(document: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    """kid → key for every usable signing key; symmetric keys are never accepted."""
    keys: dict[str, jwt.PyJWK] = {}
    raw_keys = document.get("keys")
    if not isinstance(raw_keys, list):
        raise ValueError("JWKS has no keys array")
    for raw in raw_keys:
        if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str):
            continue
        if raw.get("kty") == "oct" or raw.get("use", "sig") != "sig":
            continue
        try:
            keys[raw["kid"]] = jwt.PyJWK.from_dict(raw)
        except jwt.PyJWTError:
            continue
    return keys


class StaticKeys:
    """A key source with fixed keys (the dev issuer, whose key Even holds itself)."""

    def __init__(self, keys: dict[str, jwt.PyJWK]) -> None:
        self._keys = keys
        self.fetch_count = 0

    def key(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)
