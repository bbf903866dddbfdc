"""Raw ASGI layer in front of FastAPI: body size limit, control characters, security headers.

The size limit is enforced on the byte stream itself (Content-Length is only a hint a client
controls), so an oversized or endless body is cut off before anything parses it. A path or
query with a control character is refused here too (even.api.input_guard), in the same pass:
one layer less on every request.
"""

from __future__ import annotations

import json

from even.api.asgi_types import ASGIApp, Message, Receive, Scope, Send
from even.api.input_guard import has_control_characters, refuse_control_characters

MAX_BODY_BYTES = 64 * 1024
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect")
# Swagger UI needs scripts and styles from its CDN; only when docs are enabled.
DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com;"
    b" connect-src 'self'; frame-ancestors 'none'"
)

# The console's pages load their own stylesheet (and nothing inline: no script at all).
# Its forms post back to Even; `same-origin` referrers keep the browser's Origin header on
# those posts (under `no-referrer` Chromium sends `Origin: null`), which the console checks.
CONSOLE_PREFIX = "/console"
CONSOLE_HEADERS = {
    b"content-security-policy": (
        b"default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        b"object-src 'none'"
    ),
    b"referrer-policy": b"same-origin",
}


class BodyTooLarge(Exception):
    pass


class HardeningMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _too_large(send, self.max_body_bytes)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [h for h in message.get("headers", []) if h[0] not in _OURS]
                headers.extend(_security_headers(scope.get("path", "")))
                message["headers"] = headers
            await send(message)

        if has_control_characters(scope):
            await refuse_control_characters(send_with_headers)
            return
        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLarge:
            if not started:
                await _too_large(send_with_headers, self.max_body_bytes)


_OURS = {name for name, _ in SECURITY_HEADERS}


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    """`(name, _header_for(path, name, value))` for each security header; the three lists
    it can be are built once (a differential test holds them to `_header_for`)."""
    if path in DOCS_PATHS:
        return _DOCS_LIST
    if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
        return _CONSOLE_LIST
    return SECURITY_HEADERS


def _header_for(path: str, name: bytes, default: bytes) -> bytes:
    if path in DOCS_PATHS and name == b"content-security-policy":
        return DOCS_CSP
    if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
        return CONSOLE_HEADERS.get(name, default)
    return default


_DOCS_LIST = [(name, _header_for(DOCS_PATHS[0], name, value)) for name, value in SECURITY_HEADERS]
_CONSOLE_LIST = [
    (name, _header_for(CONSOLE_PREFIX, name, value)) for name, value in SECURITY_HEADERS
]


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "type": "https://even.dev/problems/body_too_large",
            "title": "Content Too Large",
            "status": 413,
            "detail": f"the body exceeds {limit} bytes",
            "code": "body_too_large",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
