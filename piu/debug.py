"""`piu -v`: debug lines on stderr, with every secret masked before it is written.

Invariant: no token reaches the terminal or a log file. Three layers, because any one alone
can be bypassed by the next piece of code that logs something: (1) the HTTP hooks log method,
URL, status and a few harmless headers, never bodies, and print Authorization as the scheme
only; (2) every token piu handles is registered with `add_secret` and replaced wherever it
appears; (3) a final pass masks anything shaped like a bearer header, a JWT or a token
parameter (`access_token=…`, `"refresh_token": "…"`).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

LOGGER = logging.getLogger("piu")
REDACTED = "[redacted]"
_SECRETS: set[str] = set()
_SHAPES = (
    (re.compile(r"(?i)\b(bearer|dpop|basic)\s+(?!\[redacted\])[\x21-\x7e]+"), r"\1 " + REDACTED),
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    (
        re.compile(
            r"(?i)\b((?:access|refresh|id)_token|device_code|client_secret|password)"
            r"(\"?\s*[:=]\s*\"?)[^\"&\s,}]+"
        ),
        r"\1\2" + REDACTED,
    ),
)
# Response headers worth seeing when debugging; everything else is left out.
_SHOWN_HEADERS = ("content-type", "retry-after", "www-authenticate", "location")
_MIN_SECRET = 8  # shorter strings would mask ordinary words


def add_secret(value: str) -> None:
    if len(value) >= _MIN_SECRET:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def enable(stream: Any = None) -> None:
    """Send piu's debug lines to stderr (or `stream`), masked."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_RedactingFormatter("piu: debug: %(message)s"))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(logging.DEBUG)
    LOGGER.propagate = False


def disable() -> None:
    LOGGER.handlers.clear()
    LOGGER.setLevel(logging.WARNING)


def debug_enabled() -> bool:
    """Whether `-v` is on (piu.transport then uses httpx, whose hooks log each exchange)."""
    return LOGGER.isEnabledFor(logging.DEBUG)


def debug(message: str, *args: object) -> None:
    LOGGER.debug(message, *args)


def http_hooks() -> dict[str, list[Any]]:
    """httpx event hooks that log each exchange (cheap no-ops unless -v)."""
    return {"request": [_log_request], "response": [_log_response]}


def _log_request(request: httpx.Request) -> None:
    if not LOGGER.isEnabledFor(logging.DEBUG):
        return
    auth = request.headers.get("Authorization")
    shown = f" (Authorization: {auth.split(' ', 1)[0]} {REDACTED})" if auth else ""
    LOGGER.debug("> %s %s%s", request.method, request.url, shown)


def _log_response(response: httpx.Response) -> None:
    if not LOGGER.isEnabledFor(logging.DEBUG):
        return
    headers = ", ".join(
        f"{name}: {response.headers[name]}" for name in _SHOWN_HEADERS if name in response.headers
    )
    LOGGER.debug(
        "< %s %s %s%s",
        response.status_code,
        response.request.method,
        response.request.url,
        f" ({headers})" if headers else "",
    )
