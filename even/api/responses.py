"""OpenAPI documentation of the error answers each route can give."""

from __future__ import annotations

from typing import Any

from even.api.schemas import Problem

_DESCRIPTIONS = {
    400: "Malformed JSON",
    401: "Missing or invalid bearer token",
    403: "Denied by policy",
    404: "Not found (or not yours)",
    409: "The first request with this Idempotency-Key is still in flight",
    413: "Body too large",
    415: "Content type is not application/json",
    422: "Invalid field or control character in the path or query, or the policy's "
    "reason/lifetime conditions are not met",
    429: "Rate limited",
    502: "A host could not be pushed to (or cleaned); nothing was granted",
    503: "Store or identity provider unavailable; nothing was issued",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {}},
        }
        for status in statuses
    }
