"""A real HTTP webhook receiver on loopback for the notification tests.

A threaded `http.server` on 127.0.0.1 that verifies each delivery's Standard Webhooks
signature with the `standardwebhooks` package (as a receiving service would), records every
request, and can misbehave on purpose: fail the first N requests, hang, or redirect.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int


@dataclass
class Receiver:
    secret: str | None = None
    fail_first: int = 0
    fail_status: int = 500
    hang_seconds: float = 0.0
    hang_first: int = 0
    redirect_to: str | None = None
    # Answer 2xx with a body announced as huge that never comes (a client reading it hangs).
    stall_body: bool = False
    # Verify against the signature alone, not the package's ±5 min window around the real
    # clock (for tests that move the deliverer's injected clock by hours).
    ignore_timestamp_window: bool = False
    # A fixed port, for a receiver that comes up later at the URL Even already has (0: any).
    port: int = 0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                status = receiver.answer(dict(self.headers.items()), body)
                if status == 0:  # hang: hold the connection without answering
                    receiver.release.wait(receiver.hang_seconds)
                    status = 503
                self.send_response(status)
                if receiver.redirect_to is not None and 300 <= status < 400:
                    self.send_header("location", receiver.redirect_to)
                if receiver.stall_body:
                    self.send_header("content-length", str(10**9))
                    self.end_headers()
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    receiver.release.wait(30)
                    return
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            index = len(self.received)
            verified = self._verify(headers, body)
            if index < self.hang_first:
                status = 0
            elif self.redirect_to is not None:
                status = 302
            elif not verified:
                status = 401
            elif index < self.fail_first:
                status = self.fail_status
            else:
                status = 200 if self.stall_body else 204  # a 204 has no body to stall
            lowered = {k.lower(): v for k, v in headers.items()}
            self.received.append(Received(lowered, body, verified, status))
        return status

    def _verify(self, headers: dict[str, str], body: bytes) -> bool:
        if self.secret is None:
            return True
        hook = Webhook(self.secret)
        try:
            if self.ignore_timestamp_window:
                lowered = {k.lower(): v for k, v in headers.items()}
                moment = datetime.fromtimestamp(int(lowered["webhook-timestamp"]), UTC)
                expected = hook.sign(lowered["webhook-id"], moment, body)
                return expected in lowered["webhook-signature"].split(" ")
            hook.verify(body, headers)
        except (WebhookVerificationError, KeyError, ValueError):
            return False
        return True

    def ids(self) -> Counter[str]:
        with self.lock:
            return Counter(r.headers["webhook-id"] for r in self.received)

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if 200 <= r.answered < 300]


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: three deliverers posting ten rows each at
    # once overflowed it, a dropped SYN came back after the client's 1 s retransmit, and on a
    # busy machine a POST could time out (a retry the tests' fixed clocks never make due).
    request_queue_size = 128
