"""`POST /v1/access-requests` without FastAPI's routing and dependency machinery: the hot path.

Per request FastAPI runs its middleware stack, matches through the included routers and
solves the route's dependencies: ~0.3 ms of CPU here, a sixth of a whole grant. This lane
answers the one request that carries the load (a grant without an Idempotency-Key) straight
from ASGI, with the very functions the FastAPI route calls (`authenticate`, `read_json`,
`grant_answer`) in the same order, and the same problem answers for every error. Everything
else goes on to FastAPI, which also still documents the route in the OpenAPI schema.

It sits inside HardeningMiddleware, so the body limit and the security headers apply as before.
One difference: a bug's 500 is answered here (problem+json, logged with its traceback) and
so carries the security headers, where FastAPI's ServerErrorMiddleware, outside the
hardening, answers it without them. It uses the components it was built with, not
`app.dependency_overrides`.
"""

from __future__ import annotations

from starlette.requests import Request

from even.api.asgi_types import ASGIApp, Receive, Scope, Send
from even.api.body import read_json
from even.api.deps import authenticate
from even.api.middleware import BodyTooLarge
from even.api.problems import ProblemError, domain_problem, problem, unexpected_problem
from even.api.routes.access import grant_answer
from even.api.schemas import AccessRequestBody
from even.errors import EvenError
from even.wiring import Components

PATH = "/v1/access-requests"
_IDEMPOTENCY_HEADER = b"idempotency-key"
_ANSWER_HEADERS = [(b"content-type", b"application/json")]


class GrantLane:
    def __init__(self, app: ASGIApp, *, components: Components) -> None:
        self.app = app
        self.components = components

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == PATH
            and not any(name == _IDEMPOTENCY_HEADER for name, _ in scope["headers"])
        ):
            await self._grant(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _grant(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            # As in the route: the caller first (its dependency), then the body.
            identity = await authenticate(self.components, request)
            body = await read_json(request, AccessRequestBody)
            status, answer = await grant_answer(self.components, identity, body, None)
        except EvenError as exc:
            await domain_problem(exc)(scope, receive, send)
            return
        except ProblemError as exc:
            await problem(exc.status, exc.code, exc.detail)(scope, receive, send)
            return
        except BodyTooLarge:
            raise  # HardeningMiddleware answers 413
        except Exception:
            await unexpected_problem("POST", PATH)(scope, receive, send)
            return
        headers = [*_ANSWER_HEADERS, (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
