"""Fast paths on every request, each held equal to the plain path it replaces."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from audit.chain import AuditEvent, SealTemplate, record_hash, seal
from even import logs
from even.api import body, middleware
from even.api.middleware import HardeningMiddleware
from even.api.tuning import lean_log_records
from even.clock import rfc3339
from even.metrics import _ProcessId

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOxvLJ3xQ5+YwJ1n2rA0xGxkW7m7b5I8yZ alice@laptop"
PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXkA\n-----END OPENSSH PRIVATE KEY-----"


def _plain_redact(text: str) -> str:
    for _marker, pattern in logs._REDACTIONS:
        text = pattern.sub("[redacted]", text)
    return text


def _corpus() -> list[str]:
    rng = random.Random(21)
    pieces = [JWT, KEY, PEM, "eyJ", "AAAA", "-----BEGIN ", "BEGIN", "eyJx.y.z", "AAAA" + "B" * 30]
    pieces += ["POST /v1/access-requests 201 3.1ms", "ä", "\n", " ", "x", "-----", "eyj", "aaaa"]
    found = ["", *pieces]
    for _ in range(3000):
        found.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))))
    return found


def test_redact_equals_the_plain_regex_passes() -> None:
    for text in _corpus():
        assert logs.redact(text) == _plain_redact(text), text
    assert JWT not in logs.redact(f"token {JWT} here")


def test_text_formatter_time_equals_loggings_own() -> None:
    ours, plain = logs.TextFormatter(), logging.Formatter(logs.TEXT_FORMAT)
    base = 1_796_574_993.0
    stamps = [base + n * 0.137 for n in range(200)] + [base + 0.9999, base + 1.0, base - 0.0001]
    stamps += [base + 86_400 * n + 0.5 for n in range(400)]  # across days (and DST changes)
    for created in stamps:
        record = logging.LogRecord("even.access", logging.INFO, __file__, 1, "m", None, None)
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert ours.formatTime(record) == plain.formatTime(record), created
        assert ours.formatTime(record, "%H:%M") == plain.formatTime(record, "%H:%M")


def test_security_headers_equal_the_per_header_choice() -> None:
    paths = ["/", "/v1/access-requests", "/docs", "/docs/oauth2-redirect", "/docsx", "/console"]
    paths += ["/console/", "/console/approvals", "/consolex", ""]
    for path in paths:
        expected = [
            (name, middleware._header_for(path, name, value))
            for name, value in middleware.SECURITY_HEADERS
        ]
        assert middleware._security_headers(path) == expected, path


def _call(scope: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    reached = False

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        nonlocal reached
        reached = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(HardeningMiddleware(inner)({"type": "http", "headers": [], **scope}, receive, send))
    return sent, reached


@pytest.mark.parametrize(
    ("path", "query"),
    [("/v1/keys/a\x00b", b""), ("/v1/audit/export", b"format=%00jsonl"), ("/x\x7f", b"")],
)
def test_control_characters_are_refused_before_the_app_with_security_headers(
    path: str, query: bytes
) -> None:
    sent, reached = _call({"path": path, "query_string": query})
    assert not reached
    assert sent[0]["status"] == 422
    headers = dict(sent[0]["headers"])
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert b'"code": "control_character"' in sent[1]["body"]


def test_a_plain_request_reaches_the_app() -> None:
    sent, reached = _call({"path": "/v1/keys", "query_string": b"a=%41"})
    assert reached and sent[0]["status"] == 200


def test_an_oversized_declared_body_is_still_413_first() -> None:
    scope = {"path": "/a\x00", "query_string": b"", "headers": [(b"content-length", b"999999")]}
    sent, reached = _call(scope)
    assert not reached and sent[0]["status"] == 413


def test_the_kept_pid_is_the_pid_also_after_a_fork() -> None:
    kept = _ProcessId()
    assert kept() == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        os.write(write, f"{kept()} {os.getpid()}".encode())
        os._exit(0)
    os.close(write)
    reported, real = os.read(read, 64).decode().split()
    os.close(read)
    os.waitpid(child, 0)
    assert reported == real != str(os.getpid())


def test_lean_records_keep_every_field_the_formats_print() -> None:
    saved = (logging._srcfile, logging.logThreads, logging.logMultiprocessing)
    try:
        lean_log_records()
        record = logging.LogRecord("even.x", logging.INFO, "f.py", 1, "hello %s", ("a",), None)
        line = logs.JsonFormatter().format(record)
        assert f'"pid":{os.getpid()}' in line and '"message":"hello a"' in line
        assert logs.TextFormatter().format(record).endswith(" INFO even.x: hello a")
    finally:
        logging._srcfile, logging.logThreads, logging.logMultiprocessing = saved


def test_rfc3339_equals_strftime() -> None:
    rng = random.Random(3339)
    for _ in range(5000):
        year = rng.choice([1, 999, 1000, 1970, 2026, 9998])
        zone = timezone(timedelta(hours=rng.randint(-12, 12)))
        moment = datetime(
            year, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59),
            rng.randint(0, 59), rng.randint(0, 999_999), tzinfo=zone,
        )  # fmt: skip
        assert rfc3339(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    "text", [None, "", "alice", "é ü", "\u2028 \x7f \x01", 'q"b\\', "😀", "x" * 300]
)
def test_seal_template_equals_seal_for_string_and_null_members(text: str | None) -> None:
    event = AuditEvent(
        type="access.granted",
        username=text,
        login=text,
        hostname=text,
        request_id=text,
        reason=text,
        details={"serial": 7, "ü": [text, 1], "n": None},
    )
    sealed = SealTemplate(event).seal(seq=3, time="2026-12-06T12:00:00Z", prev_hash="a" * 64)
    assert sealed == seal(event, seq=3, time="2026-12-06T12:00:00Z", prev_hash="a" * 64)
    assert record_hash(sealed) == sealed["hash"]


def _outcome(parse: Any, text: str) -> tuple[str, Any]:
    try:
        return ("value", parse(text))
    except Exception as exc:  # the type decides the answer (duplicate_key or malformed_json)
        return ("error", type(exc).__name__)


def test_the_kept_json_decoder_parses_as_json_loads_with_the_hook() -> None:
    texts = ['{"a": 1}', '{"a": 1, "a": 2}', '{"a": {"b": [1, {"c": null}]}}', "\ufeff{}", "", "{"]
    texts += ['{"x": NaN}', '{"n": 1e400}', "[1, 2] x", '"\\ud800"', "[" * 50 + "]" * 50]
    texts += ['{"é": "ü", "k": true}', '{"a": {"a": 1}, "b": {"a": 1, "a": 1}}', " [] "]
    for text in texts:
        plain = _outcome(lambda t: json.loads(t, object_pairs_hook=body._no_duplicates), text)
        assert _outcome(body._DECODER.decode, text) == plain, text
