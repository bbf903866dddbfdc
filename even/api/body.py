"""Reading a JSON request body ourselves, before any model sees it.

Checks, in order: content type (415), size (413), UTF-8 and JSON syntax (400), nesting depth
and duplicate keys (422), then the strict model (422). Parsing the bytes here rather than in
FastAPI keeps hostile input away from the framework's lenient defaults.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from even.api.problems import ProblemError

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 8
_SURROGATE_RE = re.compile("[\ud800-\udfff]")

ModelT = TypeVar("ModelT", bound=BaseModel)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


# Made once: `json.loads(text, object_pairs_hook=…)` builds a decoder and its scanner on
# every call, a tenth of reading a grant's body. `decode` is what `loads` then calls.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def _check_tree(value: Any) -> None:
    """Depth and string checks over the parsed body, without recursion.

    Iterative on purpose: json.loads accepts nesting far deeper than a recursive walk can
    follow from inside the server's own stack (a 900-deep body raised RecursionError, a 500).
    NUL and lone surrogates are refused in every key and string: no field accepts them, and
    PostgreSQL cannot store NUL in text.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        # The depth of a value is the level of its deepest leaf (the top object is level 1).
        if level > MAX_DEPTH:
            raise ProblemError(422, "too_deep", "the JSON body is nested too deeply")
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_string(key)
                stack.append((child, level + 1))
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise ProblemError(422, "invalid_request", "NUL is not allowed in any field")
    if _SURROGATE_RE.search(text):
        raise ProblemError(422, "invalid_request", "lone surrogates are not allowed")


async def read_json(request: Request, model: type[ModelT], *, allow_empty: bool = False) -> ModelT:
    content_type = request.headers.get("content-type", "")
    body = await request.body()
    if not body and allow_empty:
        return model.model_validate({})
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ProblemError(415, "unsupported_media_type", "send application/json")
    if len(body) > MAX_BODY_BYTES:
        raise ProblemError(413, "body_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemError(400, "malformed_json", "the body is not valid UTF-8") from exc
    try:
        data = _DECODER.decode(text)
    except _DuplicateKey as exc:
        raise ProblemError(422, "duplicate_key", f"duplicate JSON key {str(exc)[:64]!r}") from exc
    except (ValueError, RecursionError) as exc:
        raise ProblemError(400, "malformed_json", "the body is not valid JSON") from exc
    _check_tree(data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()]
        messages = "; ".join(
            f"{f}: {e['msg']}" for f, e in zip(fields, exc.errors(), strict=False)
        )[:500]
        raise ProblemError(422, "invalid_request", messages) from exc
