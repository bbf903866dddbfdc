"""Per-issuer JWKS cache: keys only from the issuer's own JWKS, found through discovery.

An unknown `kid` triggers at most one refetch per cooldown (so random kids cannot turn Even
into a amplifier against the IdP); a failed fetch keeps the last good keys; keys older than
the maximum staleness make identity unavailable (503), never silently valid.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt

from even.clock import Clock
from even.errors import IdentityUnavailable
from even.issuer_urls import InsecureUrl, check_key_url

_log = logging.getLogger(__name__)

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

    def is_current(self, kid: str, key: jwt.PyJWK) -> bool:
        """True while `key` is still this issuer's key `kid` and the keys are fresh enough to
        answer a cached token without I/O (SPEC §2).

        False when the key left the JWKS at the last fetch, when the keys are past their max
        staleness, or when a refresh is due and allowed: the caller then verifies afresh, which
        refetches (within the cooldown) and gives the right answer, 401 or 503.
        """
        now = self._clock.now()
        with self._lock:
            if self._keys.get(kid) is not key or self._last_success is None:
                return False
            age = now - self._last_success
            if age > self._max_staleness:
                return False
            return not (age > REFRESH_AFTER and self._may_fetch(now))

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
            # An http jwks_uri off loopback would let anyone on the path swap the keys.
            check_key_url(jwks_uri, what=f"jwks_uri of {self.issuer}")
            keys = parse_jwks(self._fetch(jwks_uri), previous=self._keys)
        except InsecureUrl as exc:
            _log.error("refusing the signing keys of %s: %s", self.issuer, exc)
            return  # keep the last good keys; with none, identity is unavailable (503)
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            _log.warning("fetching the signing keys of %s failed: %s", self.issuer, exc)
            return  # keep the last good keys; staleness decides when that stops being fine
        self._keys = keys
        self._last_success = now


def parse_jwks(
    document: dict[str, Any], previous: dict[str, jwt.PyJWK] | None = None
) -> dict[str, jwt.PyJWK]:
    """kid → key for every usable signing key; symmetric keys are never accepted.

    A key that is unchanged since `previous` keeps its object, so tokens cached under it stay
    cached across a refetch; a kid that now names other key material gets a new object.
    """
    previous = previous or {}
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
            key = jwt.PyJWK.from_dict(raw)
        except jwt.PyJWTError:
            continue
        old = previous.get(raw["kid"])
        keys[raw["kid"]] = old if old is not None and _same_key(old, key) else key
    return keys


def _same_key(a: jwt.PyJWK, b: jwt.PyJWK) -> bool:
    return a.algorithm_name == b.algorithm_name and a.key_type == b.key_type and a.key == b.key


class StaticKeys:
    """A key source with fixed keys (the dev issuer, whose key Even holds itself)."""

    def __init__(self, keys: dict[str, jwt.PyJWK]) -> None:
        self._keys = keys
        self.fetch_count = 0

    def key(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)

    def is_current(self, kid: str, key: jwt.PyJWK) -> bool:
        return self._keys.get(kid) is key
