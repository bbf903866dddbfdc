"""Talking to the OIDC issuer: discovery, the device authorization grant (RFC 8628), refresh
(RFC 6749 §6) and revocation (RFC 7009). The only module of piu that speaks HTTP to the IdP.

piu is a public client (no secret: it runs on a laptop). Polling follows RFC 8628 §3.5: wait
`interval` seconds (default 5) between requests, add 5 s for this and every later request on
`slow_down`, keep going on `authorization_pending`, stop on `access_denied` and
`expired_token` or when `expires_in` has passed. A few transport failures in a row are
tolerated while polling, since a laptop's network blinks.

Discovery must name the configured issuer (OpenID Discovery §4.3) and its endpoints must be
https (loopback may be http), so a tampered document cannot send device codes or refresh tokens
elsewhere. Request and response bodies carry secrets and are never logged.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from piu import __version__
from piu.config import check_url
from piu.debug import add_secret, debug, http_hooks
from piu.errors import BadResponse, ConfigError, IdpUnavailable, LoginFailed, TokenExpired

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5  # RFC 8628 §3.2
SLOW_DOWN_STEP = 5  # RFC 8628 §3.5
MAX_TRANSPORT_FAILURES = 3
TIMEOUT = 15.0
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Endpoints:
    issuer: str
    device_authorization: str
    token: str
    revocation: str | None


@dataclass(frozen=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    expires_in: int | None
    refresh_token: str | None
    id_token: str | None
    obtained_at: float  # when the request was sent: expiry counts from there


class OidcClient:
    def __init__(
        self,
        issuer: str,
        client_id: str,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._sleep = sleep or time.sleep
        self._clock = clock
        self._http = httpx.Client(
            headers={"Accept": "application/json", "User-Agent": f"piu/{__version__}"},
            timeout=httpx.Timeout(TIMEOUT, connect=10.0),
            transport=transport,
            follow_redirects=False,  # a redirect could carry a refresh token off to anywhere
            event_hooks=http_hooks(),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OidcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def discover(self) -> Endpoints:
        doc = self._discovery_document()
        if str(doc.get("issuer", "")).rstrip("/") != self.issuer.rstrip("/"):
            raise BadResponse(
                f"the discovery document of {self.issuer} names issuer {doc.get('issuer')!r}",
                hint="set issuer to exactly the issuer URL your IdP announces",
            )
        device = doc.get("device_authorization_endpoint")
        if not isinstance(device, str):
            raise ConfigError(
                f"the issuer {self.issuer} does not offer the device flow",
                hint="ask your IdP admins to enable the device authorization grant for piu",
            )
        return Endpoints(
            issuer=self.issuer,
            device_authorization=self._endpoint(device),
            token=self._endpoint(doc.get("token_endpoint")),
            revocation=self._endpoint(doc["revocation_endpoint"])
            if isinstance(doc.get("revocation_endpoint"), str)
            else None,
        )

    def start_device(self, endpoint: str, params: Mapping[str, str]) -> DeviceCode:
        body = self._post_ok(endpoint, {"client_id": self.client_id, **params})
        try:
            device = DeviceCode(
                device_code=_visible(body["device_code"]),
                user_code=str(body["user_code"]),
                verification_uri=str(body["verification_uri"]),
                verification_uri_complete=(
                    str(body["verification_uri_complete"])
                    if body.get("verification_uri_complete")
                    else None
                ),
                expires_in=int(body.get("expires_in") or 600),
                interval=max(1, int(body.get("interval") or DEFAULT_INTERVAL)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponse(
                f"the issuer's device authorization answer is invalid: {exc}"
            ) from exc
        add_secret(device.device_code)
        return device

    def poll(self, endpoint: str, device: DeviceCode, params: Mapping[str, str]) -> TokenSet:
        """Wait for the user to finish in the browser; return the tokens."""
        deadline = self._clock() + device.expires_in
        interval, failures = device.interval, 0
        form = {
            "grant_type": DEVICE_GRANT,
            "device_code": device.device_code,
            "client_id": self.client_id,
            **params,
        }
        while True:
            self._sleep(interval)
            if self._clock() > deadline:
                raise _code_expired()
            sent = self._clock()
            try:
                resp = self._http.post(endpoint, data=form)
            except httpx.TransportError as exc:
                failures += 1
                if failures >= MAX_TRANSPORT_FAILURES:
                    raise _unreachable(self.issuer, exc) from exc
                continue
            if resp.status_code >= 500:
                failures += 1
                if failures >= MAX_TRANSPORT_FAILURES:
                    raise IdpUnavailable(f"the issuer {self.issuer} answers {resp.status_code}")
                continue
            failures = 0
            if resp.is_success:
                return _token_set(_json(resp), sent)
            error, description = _oauth_error(resp)
            debug("device flow poll: %s", error)
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += SLOW_DOWN_STEP
                continue
            if error == "access_denied":
                raise LoginFailed(
                    "the login was denied in the browser", hint="run `piu login` to try again"
                )
            if error == "expired_token":
                raise _code_expired()
            raise LoginFailed(f"the issuer refused the login: {error}: {description}")

    def refresh(self, endpoint: str, refresh_token: str, params: Mapping[str, str]) -> TokenSet:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self.client_id,
            **params,
        }
        sent = self._clock()
        resp = self._post(endpoint, form)
        if resp.is_success:
            return _token_set(_json(resp), sent)
        if resp.status_code >= 500:
            raise IdpUnavailable(f"the issuer {self.issuer} answers {resp.status_code}")
        error, _ = _oauth_error(resp)
        debug("refresh refused: %s", error)
        raise TokenExpired("not logged in (token expired): run `piu login`")

    def revoke(self, endpoint: str, token: str, hint: str) -> bool:
        """Best effort (RFC 7009): True if the issuer accepted it."""
        try:
            form = {"token": token, "token_type_hint": hint, "client_id": self.client_id}
            return self._post(endpoint, form).is_success
        except IdpUnavailable:
            return False

    def _discovery_document(self) -> dict[str, Any]:
        for suffix in (
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ):
            try:
                resp = self._http.get(self.issuer.rstrip("/") + suffix)
            except httpx.TransportError as exc:
                raise _unreachable(self.issuer, exc) from exc
            if resp.status_code == 404:
                continue
            if resp.status_code >= 500:
                raise IdpUnavailable(f"the issuer {self.issuer} answers {resp.status_code}")
            if not resp.is_success:
                break
            return _json(resp)
        raise ConfigError(
            f"no OpenID discovery document at {self.issuer}",
            hint="check issuer (`piu config show`): it is the URL before /.well-known/…",
        )

    def _endpoint(self, value: object) -> str:
        if not isinstance(value, str):
            raise BadResponse(f"the discovery document of {self.issuer} lacks an endpoint")
        try:
            return check_url(value, what="endpoint")
        except ConfigError as exc:
            raise BadResponse(f"the issuer {self.issuer} announces an unsafe {exc}") from exc

    def _post(self, url: str, form: Mapping[str, str]) -> httpx.Response:
        try:
            return self._http.post(url, data=dict(form))
        except httpx.TransportError as exc:
            raise _unreachable(self.issuer, exc) from exc

    def _post_ok(self, url: str, form: Mapping[str, str]) -> dict[str, Any]:
        resp = self._post(url, form)
        if resp.status_code >= 500:
            raise IdpUnavailable(f"the issuer {self.issuer} answers {resp.status_code}")
        if not resp.is_success:
            error, description = _oauth_error(resp)
            raise LoginFailed(
                f"the issuer refused to start a login: {error}: {description}",
                hint="check client_id, scope and resource (`piu config show`)",
            )
        return _json(resp)


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError as exc:
        raise BadResponse(f"the issuer answered {resp.status_code} without JSON") from exc
    if not isinstance(body, dict):
        raise BadResponse("the issuer answered JSON that is not an object")
    return body


def _oauth_error(resp: httpx.Response) -> tuple[str, str]:
    """(error, error_description) of an OAuth error answer, printable only."""
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error = str(body.get("error") or f"HTTP {resp.status_code}")
    description = str(body.get("error_description") or "")
    return error[:100], description[:300]


def _token_set(body: dict[str, Any], sent: float) -> TokenSet:
    token_type = str(body.get("token_type", "Bearer"))
    if token_type.lower() != "bearer":
        raise BadResponse(f"the issuer gave a {token_type!r} token; piu can only send Bearer")
    try:
        access_token = _visible(body["access_token"])
        expires_in = body.get("expires_in")
        refresh_token = body.get("refresh_token")
        id_token = body.get("id_token")
        token_set = TokenSet(
            access_token=access_token,
            expires_in=int(expires_in) if expires_in is not None else None,
            refresh_token=_visible(refresh_token) if refresh_token else None,
            id_token=_visible(id_token) if id_token else None,
            obtained_at=sent,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadResponse("the issuer's token answer is invalid") from exc
    for secret in (token_set.access_token, token_set.refresh_token, token_set.id_token):
        if secret:
            add_secret(secret)
    return token_set


def _visible(value: object) -> str:
    if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
        raise ValueError("not one word of printable ASCII")
    return value


def _code_expired() -> LoginFailed:
    return LoginFailed(
        "the login code expired before the login was finished", hint="run `piu login` again"
    )


def _unreachable(issuer: str, exc: httpx.TransportError) -> IdpUnavailable:
    return IdpUnavailable(
        f"identity provider unreachable at {issuer}: {exc or type(exc).__name__}",
        hint="check issuer (`piu config show`) and your network, then try again",
    )
