"""A small OIDC relying party for the console: authorization code + PKCE (S256).

Invariants:
- Every endpoint comes from the configured issuer's discovery document, whose `issuer` must
  equal the configured one exactly; endpoints must be https or loopback http (as issuers are).
- The browser brings back `code` and `state`; the caller has already matched the state to
  this browser's pending sign-in. Here the code is exchanged with the PKCE verifier, the ID
  token is checked (signature by the issuer's JWKS, `iss`, `aud` = our client id, `exp`, and
  the `nonce` we sent), and the access token is handed back for Even's normal verifier, which
  alone decides who the user is. The ID token and the access token must name the same `sub`.
- No redirects are followed and no proxy settings apply to the issuer calls.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jwt

from even.clock import Clock
from even.config import ConsoleSettings
from even.errors import EvenError, IdentityUnavailable, InvalidToken
from even.identity.jwks import JwksCache

TIMEOUT_SECONDS = 5.0
ID_TOKEN_ALGORITHMS = ["RS256", "ES256", "PS256", "EdDSA"]


class SignInFailed(InvalidToken):
    """The issuer's answer to a sign-in could not be trusted or used."""

    code = "sign_in_failed"


@dataclass(frozen=True)
class AuthorizationStart:
    url: str
    state: str
    nonce: str
    code_verifier: str


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _allowed_url(url: object) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


class OidcClient:
    def __init__(
        self,
        settings: ConsoleSettings,
        *,
        client_secret: str | None,
        redirect_uri: str,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._secret = client_secret
        self.redirect_uri = redirect_uri
        self._clock = clock
        self._keys = JwksCache(settings.issuer, clock=clock)
        self._discovery: dict[str, Any] | None = None
        self._lock = threading.Lock()

    @property
    def issuer(self) -> str:
        return self._settings.issuer

    def _http(self) -> httpx.Client:
        return httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False)

    def discovery(self) -> dict[str, Any]:
        with self._lock:
            if self._discovery is not None:
                return self._discovery
            url = self._settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                with self._http() as http:
                    response = http.get(url)
                    response.raise_for_status()
                    document = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise IdentityUnavailable("the console's identity provider is unreachable") from exc
            if not isinstance(document, dict) or document.get("issuer") != self._settings.issuer:
                raise IdentityUnavailable("the identity provider's discovery names another issuer")
            for name in ("authorization_endpoint", "token_endpoint"):
                if not _allowed_url(document.get(name)):
                    raise IdentityUnavailable(f"the identity provider's {name} is not usable")
            self._discovery = document
            return document

    def start(self) -> AuthorizationStart:
        """A fresh state, nonce and PKCE verifier, and the URL to send the browser to."""
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters: within RFC 7636's 43..128
        params = {
            "response_type": "code",
            "client_id": self._settings.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self._settings.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if self._settings.resource:
            params["resource"] = self._settings.resource
        endpoint = str(self.discovery()["authorization_endpoint"])
        separator = "&" if "?" in endpoint else "?"
        return AuthorizationStart(endpoint + separator + urlencode(params), state, nonce, verifier)

    def redeem(self, code: str, *, code_verifier: str, nonce: str) -> str:
        """Exchange the code; check the ID token; return the access token (unverified here)."""
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": code_verifier,
        }
        if self._settings.resource:
            data["resource"] = self._settings.resource
        auth: httpx.BasicAuth | None = None
        if self._secret is None:
            data["client_id"] = self._settings.client_id
        else:
            auth = httpx.BasicAuth(self._settings.client_id, self._secret)
        try:
            with self._http() as http:
                endpoint = str(self.discovery()["token_endpoint"])
                if auth is None:
                    response = http.post(endpoint, data=data)
                else:
                    response = http.post(endpoint, data=data, auth=auth)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IdentityUnavailable("the identity provider did not answer the sign-in") from exc
        if response.status_code != 200 or not isinstance(body, dict):
            raise SignInFailed("the identity provider refused the sign-in")
        access_token, id_token = body.get("access_token"), body.get("id_token")
        if not isinstance(access_token, str) or not isinstance(id_token, str):
            raise SignInFailed("the identity provider sent no access token or ID token")
        claims = self._id_token_claims(id_token, nonce)
        unverified = _unverified_claims(access_token)
        if unverified.get("sub") != claims.get("sub"):
            raise SignInFailed("the access token and the ID token name different subjects")
        return access_token

    def _id_token_claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
            kid, alg = header.get("kid"), header.get("alg")
            if not isinstance(kid, str) or alg not in ID_TOKEN_ALGORITHMS:
                raise SignInFailed("the ID token's key or algorithm is not acceptable")
            key = self._keys.key(kid)
            if key is None:
                raise SignInFailed("the ID token is signed by an unknown key")
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key,
                algorithms=[alg],
                audience=self._settings.client_id,
                issuer=self._settings.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]},
                leeway=60,
            )
        except jwt.PyJWTError as exc:
            raise SignInFailed(f"the ID token was refused: {type(exc).__name__}") from exc
        if not secrets.compare_digest(str(claims.get("nonce")), nonce):
            raise SignInFailed("the ID token's nonce is not the one this sign-in sent")
        return claims


def _unverified_claims(token: str) -> dict[str, Any]:
    # Only to compare `sub` with the verified ID token; the caller verifies the token itself.
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise SignInFailed("the access token is not a JWT") from exc
    return claims if isinstance(claims, dict) else {}


__all__ = ["AuthorizationStart", "EvenError", "OidcClient", "SignInFailed", "pkce_challenge"]
