"""Access-token validation (SPEC §2), written so each check is visible and explained.

Order matters: everything read before the signature check (header, `iss` to pick the issuer)
only selects configuration; no claim is trusted until PyJWT has verified the signature with a
key from that issuer's JWKS and an algorithm the server pinned.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import jwt

from even.clock import Clock
from even.config import IssuerSettings
from even.errors import InvalidToken, InvalidUsername
from even.names import is_login

MAX_TOKEN_LENGTH = 16 * 1024
MAX_CACHED_TOKENS = 10_000
# Headers that would let a token name its own verification key: never honoured, so refused.
FORBIDDEN_HEADERS = ("jku", "jwk", "x5u", "x5c")
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")


class KeySource(Protocol):
    fetch_count: int

    def key(self, kid: str) -> jwt.PyJWK | None: ...

    def is_current(self, kid: str, key: jwt.PyJWK) -> bool: ...


@dataclass(frozen=True)
class Identity:
    username: str
    groups: tuple[str, ...]
    issuer: str
    subject: str
    dev_issuer: bool = False


@dataclass(frozen=True)
class TrustedIssuer:
    settings: IssuerSettings
    keys: KeySource
    dev: bool = False


@dataclass(frozen=True)
class _Verified:
    """A token verified once: who it names, until when, and the key that vouched for it."""

    identity: Identity
    expires: float
    keys: KeySource
    kid: str
    key: jwt.PyJWK


class TokenVerifier:
    def __init__(
        self, issuers: list[TrustedIssuer], *, clock: Clock, leeway_seconds: int = 60
    ) -> None:
        self._issuers = {issuer.settings.issuer: issuer for issuer in issuers}
        self._clock = clock
        self._leeway = leeway_seconds
        self._cache: OrderedDict[bytes, _Verified] = OrderedDict()
        self._cache_lock = threading.Lock()

    def jwks_fetched_at(self) -> dict[str, datetime | None]:
        """Issuer URL → when its JWKS was last fetched, for issuers whose keys are fetched
        (the dev issuer's are Even's own and never are)."""
        return {
            name: getattr(issuer.keys, "last_success", None)
            for name, issuer in self._issuers.items()
            if not issuer.dev
        }

    def verify(self, token: str) -> Identity:
        """The token's identity. A token verified before is answered from a cache keyed by its
        SHA-256 until its own `exp` (+ leeway), and only while the key that signed it is still
        in the issuer's current JWKS within max staleness: exactly as long as a fresh check
        would pass."""
        return self.verify_until(token)[0]

    def verify_until(self, token: str) -> tuple[Identity, float]:
        """`verify`, plus the token's `exp` (POSIX seconds): the console's session ends then."""
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidToken("the token is not a JWT")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        cached = self._cached(digest)
        if cached is not None:
            return cached.identity, cached.expires
        verified = self._verify_uncached(token)
        with self._cache_lock:
            self._cache[digest] = verified
            if len(self._cache) > MAX_CACHED_TOKENS:
                self._cache.popitem(last=False)
        return verified.identity, verified.expires

    def cached(self, token: str) -> Identity | None:
        """The identity of a token verified before, still within its exp and under a current
        key, else None.

        Pure CPU and no I/O, so an event loop may call it; `verify` does the rest.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            return None
        entry = self._cached(hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest())
        return None if entry is None else entry.identity

    def _cached(self, digest: bytes) -> _Verified | None:
        now = self._clock.now().timestamp()
        with self._cache_lock:
            entry = self._cache.get(digest)
            if entry is None:
                return None
            if now > entry.expires + self._leeway:
                del self._cache[digest]
                return None
        # Outside the cache lock: the key source takes its own. A key that left the JWKS, or
        # keys past their max staleness, send the token back through the full check.
        if not entry.keys.is_current(entry.kid, entry.key):
            return None
        return entry

    def _verify_uncached(self, token: str) -> _Verified:
        # verify() has already checked the length and the three parts.
        header = _header(token)
        issuer = self._issuer_for(token)
        settings = issuer.settings
        alg = header.get("alg")
        # The server pins algorithms; `none` and HS* (keyed with a public key) never pass.
        if not isinstance(alg, str) or alg not in settings.algorithms:
            raise InvalidToken("token algorithm is not allowed")
        if settings.token_typ != "any":
            typ = header.get("typ")
            if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
                raise InvalidToken("not an access token (typ must be at+jwt)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= 256:
            raise InvalidToken("token has no usable key id")
        key = issuer.keys.key(kid)
        if key is None:
            raise InvalidToken("token signed by an unknown key")
        if key.algorithm_name != alg and not (alg == "EdDSA" and key.algorithm_name == "EdDSA"):
            raise InvalidToken("token algorithm does not match its key")
        claims = self._decode(token, key, alg, settings)
        # ID tokens carry these; an access token must not (SPEC §2).
        if "nonce" in claims or "at_hash" in claims:
            raise InvalidToken("an ID token is not an access token")
        identity = Identity(
            username=_username(claims, settings),
            groups=_groups(claims, settings),
            issuer=settings.issuer,
            subject=str(claims.get("sub", "")),
            dev_issuer=issuer.dev,
        )
        return _Verified(identity, float(claims["exp"]), issuer.keys, kid, key)

    def _issuer_for(self, token: str) -> TrustedIssuer:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken("the token is not a JWT") from exc
        iss = unverified.get("iss")
        # Exact string match: no prefix, suffix or trailing-slash leniency.
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise InvalidToken("token issuer is not trusted")
        return issuer

    def _decode(
        self, token: str, key: jwt.PyJWK, alg: str, settings: IssuerSettings
    ) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],  # exactly the header's alg, already checked against the pin
                audience=settings.audience,  # `aud` must contain ours (string or array)
                issuer=settings.issuer,  # exact match, checked again after the signature
                options={
                    "require": ["exp", "iat", "iss", "aud"],
                    "verify_signature": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    # Time claims are checked below against the injected clock, not PyJWT's.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("token is not meant for this service") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"token rejected: {type(exc).__name__}") from exc
        if claims.get("iss") != settings.issuer:
            raise InvalidToken("token issuer is not trusted")
        self._check_times(claims)
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock.now().timestamp()
        times = {}
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if value is None and name == "nbf":
                continue
            # bool is an int subclass; a JSON `true` is not a time.
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise InvalidToken(f"token claim {name} is not a number")
            times[name] = float(value)
        if now > times["exp"] + self._leeway:
            raise InvalidToken("token has expired")
        if times["iat"] > now + self._leeway or times.get("nbf", 0.0) > now + self._leeway:
            raise InvalidToken("token is not valid yet")


def _header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken("the token header is malformed") from exc
    for name in FORBIDDEN_HEADERS:
        if name in header:
            raise InvalidToken(f"token header {name!r} is not accepted")
    # We implement no JWS extensions, so any `crit` lists something we don't understand.
    if "crit" in header:
        raise InvalidToken("token has critical header extensions")
    return header


def _username(claims: Mapping[str, Any], settings: IssuerSettings) -> str:
    value = claims.get(settings.username_claim)
    if not isinstance(value, str):
        raise InvalidUsername(f"token has no {settings.username_claim!r} claim")
    username = settings.username_prefix + value
    if not is_login(username):
        raise InvalidUsername("the username in the token is not a valid username")
    return username


def _groups(claims: Mapping[str, Any], settings: IssuerSettings) -> tuple[str, ...]:
    """The token's groups, under the issuer's `username_prefix` like its usernames, so a second
    IdP can never assert the first one's `security`, `audit` or a rule's group (SPEC §2)."""
    value = claims.get(settings.groups_claim, [])
    if not isinstance(value, list):
        return ()
    prefix = settings.username_prefix
    return tuple(sorted({prefix + g for g in value if isinstance(g, str) and 0 < len(g) <= 256}))
