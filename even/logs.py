"""Even's log lines: `log_format: text|json` (SPEC §10), one request context per HTTP request.

JSON is one object per line with `time, level, event, request_id, route, status,
duration_ms, username` (null where they do not apply), `logger` and `pid`; `message` carries the
human text. The request context (a contextvar set by `even.api.observe`) puts the request id,
route template and caller on every line written while a request is handled.

Invariants: nothing sensitive reaches a log line. Messages never format tokens, keys or
certificates in the first place; as a second line of defence every line, tracebacks included,
passes through `redact`, which blanks anything shaped like a JWT, an OpenSSH key or
certificate blob, or a PEM block. uvicorn's own loggers use the same formatter; its access log
is replaced by Even's (`even.access`), which knows the route template and the caller.
"""

from __future__ import annotations

import json
import logging
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
ACCESS_LOGGER = "even.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# (literal, pattern): each pattern starts with its literal, so a line without it (an access
# line, most lines) skips that regex pass, and with none of them skips all three.
_REDACTIONS = (
    # PEM blocks (private keys, certificates), whole.
    (
        "-----BEGIN ",
        re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|$)", re.DOTALL),
    ),
    # JWTs: three base64url parts, the first a JSON header ("eyJ").
    ("eyJ", re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")),
    # OpenSSH public keys and certificates: base64 blobs that start with a length and type.
    ("AAAA", re.compile(r"AAAA[A-Za-z0-9+/]{20,}={0,2}")),
)


def redact(text: str) -> str:
    for marker, pattern in _REDACTIONS:
        if marker in text:
            text = pattern.sub("[redacted]", text)
    return text


@dataclass
class RequestContext:
    """What a log line says about the request it was written for; mutable so the caller's
    name, known only after authentication, reaches the access line."""

    request_id: str
    method: str
    route: str | None = None
    username: str | None = None


current: ContextVar[RequestContext | None] = ContextVar("even_request", default=None)


def note_username(username: str) -> None:
    """Record the authenticated caller on the current request (no-op outside one)."""
    context = current.get()
    if context is not None:
        context.username = username


class JsonFormatter(logging.Formatter):
    """One JSON object per line; see the module docstring for the fields."""

    def format(self, record: logging.LogRecord) -> str:
        context = current.get()
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None) or record.name,
            "request_id": getattr(record, "request_id", None)
            or (context.request_id if context else None),
            "route": getattr(record, "route", None) or (context.route if context else None),
            "status": getattr(record, "status", None),
            "duration_ms": getattr(record, "duration_ms", None),
            "username": getattr(record, "username", None)
            or (context.username if context else None),
            "logger": record.name,
            "pid": record.process,
            "message": redact(message),
        }
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The classic one-line text format, redacted like the JSON one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """`logging.Formatter.formatTime`, with the local time of the current second kept:
        `localtime` + `strftime` on every access line cost more than the rest of it."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        whole = int(record.created)
        second, text = self._second
        if whole != second:
            text = time.strftime(self.default_time_format, self.converter(whole))
            self._second = (whole, text)
        return f"{text},{int(record.msecs):03d}"  # default_msec_format, '%s,%03d'


def log_config(log_format: LogFormat, level: str = "info") -> dict[str, Any]:
    """A `logging.config.dictConfig` dict for `even serve` (also given to uvicorn, which
    applies it in every worker): everything to stderr in `log_format`."""
    formatter = "even.logs.JsonFormatter" if log_format == "json" else "even.logs.TextFormatter"
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"even": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "even",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": upper},
        "loggers": {
            # uvicorn's loggers would otherwise bring handlers of their own.
            "uvicorn": {"handlers": [], "level": upper, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": upper, "propagate": True},
            # Replaced by even.access, which knows the route template and the caller.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
