"""Even's HTTP API (SPEC §7) as Python calls: the only module of piu that speaks HTTP.

Answers become the typed values of `piu.models`; failures become `piu.errors`, read from the
RFC 9457 problem+json body: 401 → TokenRejected, 403 and the policy 422s → Denied,
429/502/503/504 and transport failures → Unavailable (a 429 is retried once when Retry-After
asks for at most a few seconds), TLS verification failures → TLSFailed, the rest →
RequestFailed. The bearer token lives only in the HTTP client's headers. Redirects are not
followed: a token is sent to Even's URL and nowhere else. The bytes travel through
piu.transport (the standard library's http.client, or httpx when tests, proxies or -v need it).
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from piu import __version__
from piu.debug import add_secret
from piu.errors import (
    BadResponse,
    ConfigError,
    Denied,
    PiuError,
    Problem,
    RequestFailed,
    TLSFailed,
    TokenRejected,
    Unavailable,
    Unreachable,
)
from piu.models import (
    AccessRequest,
    AccessRequestBody,
    Grant,
    Identity,
    Page,
    parse_access_request,
    parse_grant,
    parse_identity,
    parse_page,
)
from piu.transport import Answer, TransportFailure, UnreadableAnswer, open_http

if TYPE_CHECKING:
    import httpx

# 422 codes that are the policy saying no (exit 4), not a malformed request (exit 1).
DENIAL_CODES = frozenset({"reason_rejected", "lifetime_too_long", "login_not_allowed"})
UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_TIMEOUT = 30.0  # seconds; a push-mode grant waits for the hosts
MAX_RETRY_WAIT = 5.0  # a 429 asking for longer is reported rather than waited out
REAUTH_HINT = "run `piu login` (or get a fresh token for PIU_TOKEN / --token-command)"
DENIAL_HINTS = {
    "reason_rejected": "give a reason the rule accepts, e.g. a ticket id: piu HOST 'INC-123 …'",
    "lifetime_too_long": "ask for less with -t MIN; `piu whoami` shows each rule's maximum",
}
DENIAL_HINTS.update(
    {
        "self_approval": "another approver has to decide; nobody approves their own request",
        "not_an_approver": "`piu approvals` lists the requests you may approve",
        "not_requester": "only the requester may cancel; an approver can `piu deny ID -m WHY`",
        "emergency_not_allowed": "this rule has no break-glass: ask without --emergency "
        "and wait for an approver",
        "approval_required": "this host needs an approver: `piu request-access` waits for one",
    }
)
DENIAL_HINT = "`piu whoami` lists what you may request"
# 409s about approvals: the request has moved on; say what to look at (exit 1).
CONFLICT_HINTS = {
    "not_pending": "`piu list-access --status PENDING_APPROVAL` shows what still waits",
    "already_approved": "each approver counts once; another approver has to approve it",
    "already_reviewed": "a break-glass grant is reviewed once",
    "not_reviewable": "only break-glass (--emergency) grants are reviewed",
}


class EvenClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        cacert: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        reauth_hint: str = REAUTH_HINT,
    ) -> None:
        self.base_url = base_url
        self._sleep = sleep or time.sleep
        self._reauth_hint = reauth_hint  # what to do after a 401 depends on the token's source
        add_secret(token)
        self._http = open_http(
            base_url,
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json, application/problem+json",
                "User-Agent": f"piu/{__version__}",
            },
            timeout=timeout,
            connect_timeout=min(timeout, 10.0),
            verify=_verify_setting(base_url, cacert),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EvenClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def whoami(self) -> Identity:
        return parse_identity(self._json(self._send("GET", "/v1/whoami")))

    def request_access(self, body: AccessRequestBody) -> Grant:
        # The idempotency key makes the one retry after a 429 safe: Even answers the same
        # grant instead of issuing a second one.
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        resp = self._send("POST", "/v1/access-requests", json=body.to_json(), headers=headers)
        return parse_grant(self._json(resp))

    def get_access_request(self, request_id: str) -> Grant:
        """One request; to its requester a granted one carries the credentials (SPEC §7)."""
        path = f"/v1/access-requests/{quote(request_id, safe='')}"
        return parse_grant(self._json(self._send("GET", path)))

    def decide(self, request_id: str, verb: str, body: Mapping[str, str] | None) -> AccessRequest:
        """POST …/{id}/approve, deny, cancel or review; the request as it is afterwards."""
        if verb not in {"approve", "deny", "cancel", "review"}:
            raise ValueError(f"not an approval action: {verb}")
        path = f"/v1/access-requests/{quote(request_id, safe='')}/{verb}"
        resp = self._send("POST", path, json=dict(body) if body is not None else None)
        if resp.status_code == 204 or not resp.content:
            return parse_access_request({"id": request_id, "status": "?"})
        return parse_access_request(self._json(resp))

    def approvals(self) -> Page:
        """Pending requests the caller may approve."""
        return parse_page(self._json(self._send("GET", "/v1/approvals")))

    def reviews(self, *, overdue: bool = False) -> Page:
        params = {"overdue": "true"} if overdue else None
        return parse_page(self._json(self._send("GET", "/v1/reviews", params=params)))

    def list_access(self, filters: Mapping[str, str | int | None]) -> Page:
        params = {k: str(v) for k, v in filters.items() if v is not None}
        return parse_page(self._json(self._send("GET", "/v1/access-requests", params=params)))

    def revoke(self, request_id: str, reason: str | None = None) -> AccessRequest | None:
        path = f"/v1/access-requests/{quote(request_id, safe='')}/revoke"
        resp = self._send("POST", path, json={"reason": reason} if reason else None)
        if resp.status_code == 204 or not resp.content:
            return None
        return parse_access_request(self._json(resp))

    def get_keys(self) -> list[str]:
        return _keys_of(self._json(self._send("GET", "/v1/users/me/keys")))

    def put_keys(self, keys: list[str]) -> list[str]:
        """Replace the registered keys (Even answers them as stored)."""
        resp = self._send("PUT", "/v1/users/me/keys", json={"keys": keys})
        return _keys_of(self._json(resp))

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        for attempt in (1, 2):
            try:
                resp = self._http.request(method, path, json=json, params=params, headers=headers)
            except TransportFailure as exc:
                raise _transport_error(self.base_url, exc) from exc
            except UnreadableAnswer as exc:  # e.g. an undecodable body
                raise BadResponse(f"unreadable answer from Even: {exc}") from exc
            if resp.status_code == 429 and attempt == 1:
                wait = _retry_after(resp)
                if wait <= MAX_RETRY_WAIT:
                    self._sleep(wait)
                    continue
            break
        if resp.is_success:
            return resp
        raise _status_error(resp, self._reauth_hint)

    @staticmethod
    def _json(resp: Answer) -> object:
        try:
            return resp.json()
        except ValueError as exc:
            raise BadResponse(f"Even answered {resp.status_code} without valid JSON") from exc


def _keys_of(body: object) -> list[str]:
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BadResponse("Even's answer has no list of keys")
    return keys


def _verify_setting(base_url: str, cacert: str | None) -> ssl.SSLContext | bool:
    """TLS verification for https; none to set up for plain http (loopback only, checked by
    config), which saves loading the CA bundle on every run."""
    if base_url.startswith("http://"):
        return False
    return _ssl_context(cacert) if cacert else True


def _ssl_context(cacert: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=cacert)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load CA certificates from {cacert}: {exc}",
            hint="fix cacert in piu.yaml, PIU_CACERT or --cacert",
        ) from exc


def _retry_after(resp: Answer) -> float:
    """Seconds the server asks us to wait; 1 s when it does not say."""
    value = (resp.header("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    import email.utils  # only for an HTTP-date, which Even does not send
    from datetime import UTC, datetime

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def problem_of(resp: Answer) -> Problem:
    """Read the problem+json body; any other body still gives a Problem with the status."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return Problem(status=resp.status_code, title=resp.reason_phrase or None)

    def text(key: str) -> str | None:
        value = body.get(key)
        return value if isinstance(value, str) else None

    known = {"type", "title", "status", "detail", "code"}
    return Problem(
        status=resp.status_code,
        title=text("title"),
        detail=text("detail"),
        code=text("code"),
        type=text("type"),
        extra={k: v for k, v in body.items() if k not in known},
    )


def _status_error(resp: Answer, reauth_hint: str = REAUTH_HINT) -> PiuError:
    problem = problem_of(resp)
    status, summary = resp.status_code, problem.summary()
    if status == 401:
        return TokenRejected(
            f"Even did not accept your token: {summary}", hint=reauth_hint, problem=problem
        )
    if status == 403 or (status == 422 and problem.code in DENIAL_CODES):
        # Even's detail names the rule and what it wants ("rule sre-prod: the reason must …").
        return Denied(
            f"denied: {summary}",
            hint=DENIAL_HINTS.get(problem.code or "", DENIAL_HINT),
            problem=problem,
        )
    if status in UNAVAILABLE_STATUSES:
        retry = resp.header("Retry-After")
        return Unavailable(
            f"Even is unavailable ({status}): {summary}",
            hint=f"try again in {retry} s" if retry else "try again later",
            problem=problem,
        )
    if status == 409 and problem.code in CONFLICT_HINTS:
        return RequestFailed(
            f"not possible: {summary}", hint=CONFLICT_HINTS[problem.code or ""], problem=problem
        )
    if resp.is_redirect:
        return RequestFailed(
            f"Even answered {status} redirecting to {resp.header('Location', '?')}",
            hint="set even_url to the final URL; piu does not follow redirects with your token",
        )
    return RequestFailed(f"Even refused the request ({status}): {summary}", problem=problem)


def _transport_error(base_url: str, exc: TransportFailure) -> PiuError:
    if _caused_by_tls_verification(exc):
        return TLSFailed(
            f"cannot verify Even's TLS certificate at {base_url}: {exc}",
            hint="if Even uses a private CA, set cacert in piu.yaml, PIU_CACERT or --cacert",
        )
    reason = str(exc) or type(exc).__name__
    return Unreachable(
        f"Even unreachable at {base_url}: {reason}",
        hint="check even_url (PIU_EVEN_URL, --even-url) and your network, then try again",
    )


def _caused_by_tls_verification(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
