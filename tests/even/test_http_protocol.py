"""even serve's HTTP protocol sends exactly uvicorn's bytes, with an answer's writes joined."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from even.api.http_protocol import FLUSH_AT, CoalescingHttpToolsProtocol, CoalescingTransport
from harness.ports import free_port

# -- the transport alone ----------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.eof = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def write_eof(self) -> None:
        self.eof = True

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str) -> str:
        return f"extra:{name}"


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_writes_of_one_iteration_leave_as_one_in_order() -> None:
    async def scenario() -> FakeTransport:
        fake = FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 201 Created\r\n\r\n")
        transport.write(memoryview(b"{}"))
        transport.write(b"")
        assert fake.writes == []  # held until the iteration ends
        assert transport.get_write_buffer_size() == 7 + 26
        await asyncio.sleep(0)
        transport.writelines([b"a", b"b"])
        await asyncio.sleep(0)
        return fake

    fake = _run(scenario())
    assert fake.writes == [b"HTTP/1.1 201 Created\r\n\r\n{}", b"ab"]


def test_a_large_write_goes_at_once_with_what_was_held() -> None:
    async def scenario() -> FakeTransport:
        fake = FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"head")
        transport.write(b"x" * FLUSH_AT)
        assert fake.writes == [b"head" + b"x" * FLUSH_AT]  # not held: flow control still holds
        await asyncio.sleep(0)  # the scheduled flush finds nothing
        return fake

    assert len(_run(scenario()).writes) == 1


def test_close_and_eof_send_what_is_held_abort_drops_it() -> None:
    async def scenario() -> tuple[FakeTransport, FakeTransport, FakeTransport]:
        loop = asyncio.get_running_loop()
        closed, eofed, aborted = FakeTransport(), FakeTransport(), FakeTransport()
        held = CoalescingTransport(closed, loop)  # type: ignore[arg-type]
        held.write(b"last ")
        held.write(b"words")
        held.close()
        assert closed.writes == [b"last words"]  # before the close, not a loop turn later
        ended = CoalescingTransport(eofed, loop)  # type: ignore[arg-type]
        ended.write(b"bye")
        ended.write_eof()
        assert eofed.writes == [b"bye"]
        dropped = CoalescingTransport(aborted, loop)  # type: ignore[arg-type]
        dropped.write(b"never")
        dropped.abort()
        assert dropped.get_write_buffer_size() == 7  # only the real transport's: nothing held
        await asyncio.sleep(0)  # the flushes the first writes scheduled find nothing to send
        return closed, eofed, aborted

    closed, eofed, aborted = _run(scenario())
    assert closed.closed and closed.writes == [b"last words"]
    assert eofed.eof and eofed.writes == [b"bye"]
    assert aborted.aborted and aborted.writes == []


def test_everything_else_is_the_real_transports() -> None:
    fake = FakeTransport()
    transport = CoalescingTransport(fake, asyncio.new_event_loop())  # type: ignore[arg-type]
    assert transport.get_extra_info("peername") == "extra:peername"
    assert transport.is_closing() is False


# -- whole responses through uvicorn, with and without ----------------------------------------


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/fixed":
        answer = b'{"echo":' + str(len(body)).encode() + b"}"
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for size in (10, 0, FLUSH_AT + 5, 3, 2 * FLUSH_AT):
            await send({"type": "http.response.body", "body": b"s" * size, "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    else:
        raise RuntimeError("a bug: uvicorn answers 500")


REQUESTS = {
    "fixed": b"POST /fixed HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nhello",
    "stream": b"GET /stream HTTP/1.1\r\nhost: t\r\n\r\n",
    "head": b"HEAD /fixed HTTP/1.1\r\nhost: t\r\n\r\n",
    "empty": b"GET /empty HTTP/1.1\r\nhost: t\r\n\r\n",
    "error": b"GET /boom HTTP/1.1\r\nhost: t\r\n\r\n",
    "malformed": b"GET / HTTP/1.1\r\nhost t\r\n\r\n",
}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, int]]:
    started: list[tuple[uvicorn.Server, threading.Thread]] = []
    ports: dict[str, int] = {}
    for name, protocol in (
        ("plain", HttpToolsProtocol),
        ("coalescing", CoalescingHttpToolsProtocol),
    ):
        port = free_port()
        config = uvicorn.Config(
            _app, host="127.0.0.1", port=port, http=protocol, loop="uvloop", lifespan="off",
            log_level="critical", date_header=False, server_header=False,
        )  # fmt: skip
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        started.append((server, thread))
        ports[name] = port
    deadline = time.monotonic() + 10
    while not all(server.started for server, _ in started):
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield ports
    for server, thread in started:
        server.should_exit = True
        thread.join(timeout=10)


def _exchange(port: int, requests: list[bytes]) -> bytes:
    """Send the requests on one connection (then ask to close) and read until EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for request in requests:
            sock.sendall(request)
            time.sleep(0.05)  # one request at a time, as keep-alive clients do
        sock.sendall(b"GET /empty HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_the_bytes_on_the_wire_are_uvicorns(servers: dict[str, int], name: str) -> None:
    plain = _exchange(servers["plain"], [REQUESTS[name]])
    coalescing = _exchange(servers["coalescing"], [REQUESTS[name]])
    assert coalescing == plain
    assert plain.startswith(b"HTTP/1.1 ")


def test_keep_alive_answers_in_order(servers: dict[str, int]) -> None:
    sequence = [REQUESTS["fixed"], REQUESTS["empty"], REQUESTS["stream"], REQUESTS["fixed"]]
    plain = _exchange(servers["plain"], sequence)
    assert _exchange(servers["coalescing"], sequence) == plain
    assert plain.count(b"HTTP/1.1 ") == 5
