"""How piu's bytes reach Even: a small standard-library HTTP/1.1 client, or httpx.

Why two: importing httpx (with the optional packages it picks up when installed: trio, rich,
pygments, brotli, zstandard) costs more CPU than everything else `piu request-access` does,
for a handful of JSON calls to one host. So piu speaks to Even through `http.client` unless
something needs httpx: a transport injected by tests, proxy variables in the environment
(httpx honours HTTP(S)_PROXY, ALL_PROXY and NO_PROXY; rather than reimplementing that, piu
hands those runs to httpx), or `-v` debug logging (httpx's event hooks log each exchange).
The IdP (piu.oidc) always uses httpx: logging in is not on the fast path.

The standard-library client keeps the httpx client's semantics: TLS verified against the same
trust (piu's `cacert`, else SSL_CERT_FILE, else SSL_CERT_DIR, else certifi's bundle, as httpx
does), hostname checked; no redirect followed; a connect (and TLS handshake) timeout and a
read timeout; one keep-alive connection, replaced before use if Even closed it while idle
(no request is ever retried); JSON request bodies; no compression asked for. Both raise
only TransportFailure (could not connect, TLS, timeout, broken connection; the original
exception is the __cause__) and UnreadableAnswer, and both answer an `Answer`.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import os
import select
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    import httpx

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class TransportFailure(Exception):
    """The exchange did not complete: connection, TLS, timeout or a broken answer."""


class UnreadableAnswer(Exception):
    """The answer arrived but could not be decoded."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]  # names in lower case
    content: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        return jsonlib.loads(self.content)  # ValueError when it is not JSON

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        return self.status_code in REDIRECTS and "location" in self.headers


class Http(Protocol):
    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer: ...

    def close(self) -> None: ...


def open_http(
    base_url: str,
    headers: Mapping[str, str],
    *,
    timeout: float,
    connect_timeout: float,
    verify: ssl.SSLContext | bool,
    transport: httpx.BaseTransport | None = None,
) -> Http:
    """The standard-library client when nothing asks for httpx (see the module docstring)."""
    from piu.debug import debug_enabled

    proxied = any(os.environ.get(name) or os.environ.get(name.upper()) for name in PROXY_VARIABLES)
    if transport is not None or proxied or debug_enabled():
        return HttpxHttp(
            base_url,
            headers,
            timeout=timeout,
            connect_timeout=connect_timeout,
            verify=verify,
            transport=transport,
        )
    context = None
    if base_url.startswith("https://"):
        context = verify if isinstance(verify, ssl.SSLContext) else default_context()
    return StdlibHttp(
        base_url, headers, timeout=timeout, connect_timeout=connect_timeout, context=context
    )


def default_context() -> ssl.SSLContext:
    """The trust httpx uses for verify=True, so both clients accept the same servers."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class StdlibHttp:
    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout: float,
        connect_timeout: float,
        context: ssl.SSLContext | None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        self._prefix = parts.path.rstrip("/")
        self._headers = dict(headers)
        self._timeout, self._connect_timeout = timeout, connect_timeout
        if parts.scheme == "https":
            if context is None:
                raise ValueError("https needs a TLS context")
            context.set_alpn_protocols(["http/1.1"])
            self._conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=connect_timeout, context=context
            )
        else:
            self._conn = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=connect_timeout
            )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        sent = {**self._headers, **(headers or {})}
        body = None
        if json is not None:
            body = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":")).encode()
            sent["Content-Type"] = "application/json"
        try:
            return self._exchange(method, target, body, sent)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransportFailure(str(exc) or type(exc).__name__) from exc

    def _exchange(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Answer:
        conn = self._conn
        if conn.sock is not None and _readable(conn.sock):
            # An idle keep-alive connection is readable only when Even closed it (or sent
            # something unasked): open a new one rather than send into a dead one, as httpcore
            # does. No request is ever retried, so none can be processed twice.
            self.close()
        if conn.sock is None:
            conn.timeout = self._connect_timeout
            try:
                conn.connect()
            finally:
                conn.timeout = self._timeout
            # connect() set conn.sock (mypy still sees the None narrowed above).
            connected = getattr(conn, "sock", None)
            if connected is not None:
                connected.settimeout(self._timeout)
        try:
            conn.request(method, target, body=body, headers=dict(headers))
            resp = conn.getresponse()
            content = resp.read()
        except BaseException:
            self.close()
            raise
        if resp.will_close:
            self.close()
        lowered = {name.lower(): value for name, value in resp.getheaders()}
        return Answer(resp.status, resp.reason, lowered, content)

    def close(self) -> None:
        self._conn.close()


def _readable(sock: Any) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class HttpxHttp:
    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout: float,
        connect_timeout: float,
        verify: ssl.SSLContext | bool,
        transport: httpx.BaseTransport | None,
    ) -> None:
        import httpx

        from piu.debug import http_hooks

        self._httpx = httpx
        self._client = httpx.Client(
            event_hooks=http_hooks(),
            base_url=base_url,
            headers=dict(headers),
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            verify=verify,
            transport=transport,
            follow_redirects=False,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        httpx = self._httpx
        try:
            resp = self._client.request(method, path, json=json, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise TransportFailure(str(exc) or type(exc).__name__) from exc
        except httpx.RequestError as exc:  # e.g. an undecodable body
            raise UnreadableAnswer(str(exc)) from exc
        lowered = {name.lower(): value for name, value in resp.headers.items()}
        return Answer(resp.status_code, resp.reason_phrase, lowered, resp.content)

    def close(self) -> None:
        self._client.close()
