"""Control characters in the request path or query string are a 422 (checked by
even.api.middleware.HardeningMiddleware, before routing).

No route accepts a control character in a path segment or query parameter, and some stores
cannot even hold one (PostgreSQL refuses NUL in text and answers with an error that would
otherwise surface as a 500). Refusing them here, before routing, covers every route, present
and future, on every database backend. Invariant: a request whose percent-decoded path or
query contains a C0/C1 control character or DEL never reaches a route.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote_to_bytes

from even.api.asgi_types import Scope, Send

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def has_control_characters(scope: Scope) -> bool:
    """True if the decoded path or query string carries a control character."""
    if _CONTROL.search(scope.get("path", "")):
        return True
    raw_query: bytes = scope.get("query_string", b"")
    if not raw_query:
        return False
    query = unquote_to_bytes(raw_query).decode("utf-8", "replace")
    return _CONTROL.search(query) is not None


async def refuse_control_characters(send: Send) -> None:
    body = json.dumps(
        {
            "type": "https://even.dev/problems/control_character",
            "title": "Unprocessable Content",
            "status": 422,
            "detail": "the request path or query contains a control character (e.g. NUL)",
            "code": "control_character",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
