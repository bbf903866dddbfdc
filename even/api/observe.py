"""The outermost ASGI layer: one access log line and the request metrics per HTTP request.

It sees every answer, the raw grant lane's and HardeningMiddleware's 413 included, so it
counts at the edge from what the client got: the status, and for access requests the problem
`code` (the first bytes of a problem body) and the `mode` (from the request body, read as it
streams past; certificate when absent, as the API defaults it).

Invariants: it never changes a request or an answer; labels and log fields carry route
templates (`/v1/access-requests/{request_id}`), never raw paths, so no id, username or host
name from a URL reaches them; the request body is kept (up to the body limit) only for access
requests, and only `mode` is read from it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from even import logs
from even.api.asgi_types import ASGIApp, Message, Receive, Scope, Send
from even.api.middleware import MAX_BODY_BYTES
from even.metrics import Metrics
from even.randomness import random_bytes

access_log = logging.getLogger(logs.ACCESS_LOGGER)
GRANT_ROUTES = {("POST", "/v1/access-requests"), ("POST", "/access-requests")}
CLASSIC_GRANT = "/access-requests"
REVOKE_ROUTE = ("POST", "/v1/access-requests/{request_id}/revoke")
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ObserveMiddleware:
    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, templates: Callable[[], Iterable[str]]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self._templates = templates
        # Built at the first request that FastAPI's router did not answer (routes are added
        # after this layer is made): static paths, and a pattern per path with parameters.
        self._static: set[str] | None = None
        self._patterns: list[tuple[re.Pattern[str], str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self._static is None:
                self._load_templates()  # at start, not on the first grant (~60 ms)
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        context = logs.RequestContext(request_id=random_bytes(8).hex(), method=method)
        token = logs.current.set(context)
        path: str = scope["path"]
        grant = (method, path) in GRANT_ROUTES
        request_body: list[bytes] = []
        answer: dict[str, Any] = {"status": 500, "problem": b""}

        async def watched_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and sum(map(len, request_body)) <= MAX_BODY_BYTES:
                request_body.append(message.get("body", b""))
            return message

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                message.setdefault("headers", []).append(
                    (b"x-request-id", context.request_id.encode())
                )
            elif (
                message["type"] == "http.response.body"
                and answer["status"] >= 400
                and len(answer["problem"]) < 4096
            ):
                answer["problem"] += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, watched_receive if grant else receive, watched_send)
        finally:
            seconds = time.perf_counter() - started
            status: int = answer["status"]
            route = self._template(scope, path)
            context.route = route
            verb = method if method in METHODS else "OTHER"  # a client picks the method
            self.metrics.child(self.metrics.requests, route, verb, str(status)).inc()
            code = _problem_code(answer["problem"]) if status >= 400 else None
            if grant:
                mode = "push" if path == CLASSIC_GRANT else _mode(request_body)
                self.metrics.count_grant_answer(mode, status, code, seconds)
            elif (method, route) == REVOKE_ROUTE and code == "revoke_incomplete":
                self.metrics.child(self.metrics.push_failures, "revoke").inc()
            if access_log.isEnabledFor(logging.INFO):
                _log_access(method, route, status, seconds, code)
            logs.current.reset(token)

    def _template(self, scope: Scope, path: str) -> str:
        template = getattr(scope.get("route"), "path", None)
        if isinstance(template, str):
            return template  # FastAPI's router matched it
        if self._static is None:
            self._load_templates()
        assert self._static is not None
        if path in self._static:
            return path  # e.g. the grant lane, which answers without FastAPI's router
        for pattern, candidate in self._patterns:
            if pattern.fullmatch(path):
                return candidate
        return UNMATCHED

    def _load_templates(self) -> None:
        static: set[str] = set()
        for template in self._templates():
            if "{" in template:
                parts = re.split(r"\{[^/{}]+\}", template)
                pattern = "[^/]+".join(re.escape(part) for part in parts)
                self._patterns.append((re.compile(pattern), template))
            else:
                static.add(template)
        self._static = static


def _log_access(method: str, route: str, status: int, seconds: float, code: str | None) -> None:
    access_log.info(
        "%s %s %d %.1fms",
        method,
        route,
        status,
        seconds * 1000,
        extra={
            "event": "http.request",
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "code": code,
        },
    )


def _problem_code(body: bytes) -> str | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    code = document.get("code") if isinstance(document, dict) else None
    # Codes are short snake_case words from even.errors; anything else is not a label value.
    if isinstance(code, str) and len(code) <= 64 and code.replace("_", "").isalnum():
        return code
    return None


def _mode(chunks: list[bytes]) -> str:
    try:
        document = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        return "certificate"
    mode = document.get("mode", "certificate") if isinstance(document, dict) else None
    return mode if mode in ("certificate", "push") else "unknown"
