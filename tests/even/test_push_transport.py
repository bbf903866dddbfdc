"""even.push.transport: a server's no-reply global request is answered with one IGNORE.

The transport is paramiko's own, over a socket pair, never started: the handler is called as
the transport thread would call it, and what it would send is captured.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from paramiko.common import MSG_IGNORE, MSG_REQUEST_FAILURE, cMSG_GLOBAL_REQUEST
from paramiko.message import Message

from even.push.transport import AckingTransport, acking_transport


@pytest.fixture
def transport(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AckingTransport, list[int]]]:
    ours, theirs = socket.socketpair()
    made = acking_transport(ours)
    assert isinstance(made, AckingTransport)
    sent: list[int] = []
    monkeypatch.setattr(made, "_send_message", lambda m: sent.append(m.asbytes()[0]))
    yield made, sent
    made.close()
    ours.close()
    theirs.close()


def request(name: str, want_reply: bool) -> Message:
    m = Message()
    m.add_byte(cMSG_GLOBAL_REQUEST)
    m.add_string(name)
    m.add_boolean(want_reply)
    m.add_string(b"host key blob")
    m.rewind()
    m.get_byte()  # the transport has read the message type before it calls the handler
    return m


def test_a_no_reply_request_gets_one_ignore(transport: tuple[AckingTransport, list[int]]) -> None:
    made, sent = transport
    made._parse_global_request(request("hostkeys-00@openssh.com", want_reply=False))
    assert sent == [MSG_IGNORE]


def test_a_request_wanting_a_reply_gets_paramikos_answer_only(
    transport: tuple[AckingTransport, list[int]],
) -> None:
    made, sent = transport
    made._parse_global_request(request("keepalive@openssh.com", want_reply=True))
    assert sent == [MSG_REQUEST_FAILURE]
