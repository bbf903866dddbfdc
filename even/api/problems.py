"""RFC 9457 problem+json answers and the mapping from domain errors to HTTP status codes.

Every error a client can cause ends here with a 4xx (or 502/503 for dependencies); an
unexpected exception becomes a generic 500 without details, logged with its request id.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from even import errors

log = logging.getLogger("even.api")

PROBLEM_JSON = "application/problem+json"

STATUS_BY_ERROR: list[tuple[type[errors.EvenError], int]] = [
    # Approvals and break-glass (SPEC §11), listed by name so the table reads as the contract.
    (errors.SelfApproval, 403),
    (errors.NotAnApprover, 403),
    (errors.NotRequester, 403),
    (errors.EmergencyNotAllowed, 403),
    (errors.ApprovalRequired, 403),
    (errors.NotPending, 409),
    (errors.AlreadyApproved, 409),
    (errors.NotReviewable, 409),
    (errors.AlreadyReviewed, 409),
    (errors.InvalidToken, 401),
    (errors.IdentityUnavailable, 503),
    (errors.StoreUnavailable, 503),
    (errors.Denied, 403),
    (errors.PolicyRejected, 422),
    (errors.InvalidRequest, 422),
    (errors.NotFound, 404),
    (errors.RateLimited, 429),
    (errors.PushFailed, 502),
    (errors.IdempotencyInFlight, 409),
    (errors.Conflict, 409),
]
# 409s that retrying can never change: the request's state has moved on for good.
FINAL_CONFLICTS = (
    errors.NotPending,
    errors.AlreadyApproved,
    errors.NotReviewable,
    errors.AlreadyReviewed,
)
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class ProblemError(Exception):
    """Raised by the HTTP layer itself (body parsing) with an explicit status and code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def problem(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": f"https://even.dev/problems/{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_for(error: errors.EvenError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 500


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.EvenError)
    async def _domain(_: Request, exc: errors.EvenError) -> JSONResponse:
        return domain_problem(exc)

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()]
        return problem(422, "invalid_request", "invalid request: " + ", ".join(fields[:10]))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; list them all.
            headers["Allow"] = ", ".join(_allowed_methods(app, request.scope))
        return problem(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected_problem(request.method, request.url.path)


def domain_problem(exc: errors.EvenError) -> JSONResponse:
    """A domain error's answer: its status, code and message, and the headers it implies."""
    status = status_for(exc)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    if status == 503:
        headers["Retry-After"] = "5"
    if status == 409 and not isinstance(exc, FINAL_CONFLICTS):
        # Retrying helps only while another request holds the resource (idempotency in flight).
        headers["Retry-After"] = "1"
    if isinstance(exc, errors.RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    extra = {"rule": exc.extra["rule"]} if "rule" in exc.extra else {}
    if status == 500:
        log.error("unmapped domain error %s", type(exc).__name__)
        return problem(500, "internal_error", "internal error")
    return problem(status, exc.code, exc.message, headers, **extra)


def unexpected_problem(method: str, path: str) -> JSONResponse:
    """A bug's answer: a generic 500; the traceback goes to the log only (call in `except`)."""
    log.exception("unexpected error on %s %s", method, path)
    return problem(500, "internal_error", "internal error")


def _allowed_methods(app: FastAPI, scope: Any) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.matches(scope)[0] != Match.NONE:
            methods.update(route.methods or ())
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
