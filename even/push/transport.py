"""The paramiko `Transport` Even's pusher uses: paramiko's, plus an answer to no-reply requests.

Why: right after authentication OpenSSH's sshd sends a `hostkeys-00@openssh.com` global
request without want-reply (its host-keys notice), then, a moment later, the confirmation of
the channel Even opened. sshd leaves Nagle on for a session without a terminal, so its second
small write waits until the first is ACKed, and paramiko, which sends nothing back for a
request that wants no reply, leaves the ACK to the kernel's delayed-ACK timer: ~40 ms on every
new connection, measured on the bastion and on every hop (bench/README.md). Answering such a
request with an `SSH_MSG_IGNORE` (RFC 4253 §11.2: content-free, allowed at any time, dropped
by the peer) puts the ACK on the wire at once; the first channel then opens in a round trip.

Invariants: only in client mode and only for a request that wants no reply (one that wants a
reply already gets paramiko's answer); one empty IGNORE per request, nothing else changes.
It relies on two paramiko internals (`_parse_global_request`, called by the transport thread,
and `_send_message`, which that thread may call at any time, as paramiko's own replies do);
paramiko is pinned in constraints.txt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import paramiko
from paramiko.common import cMSG_IGNORE
from paramiko.message import Message


class AckingTransport(paramiko.Transport):
    # The two internals are not in paramiko's type stubs, hence the ignores.
    def _parse_global_request(self, m: Message) -> None:
        want_reply = _wants_reply(m)
        super()._parse_global_request(m)  # type: ignore[misc]
        if not self.server_mode and not want_reply:
            ignore = Message()
            ignore.add_byte(cMSG_IGNORE)
            ignore.add_string(b"")
            self._send_message(ignore)  # type: ignore[attr-defined]


def acking_transport(
    sock: Any,
    /,
    *,
    gss_kex: bool = False,
    gss_deleg_creds: bool = True,
    disabled_algorithms: Mapping[str, Iterable[str]] | None = None,
) -> paramiko.Transport:
    """`SSHClient.connect(transport_factory=…)`: an `AckingTransport` (GSS is never used)."""
    return AckingTransport(sock, disabled_algorithms=disabled_algorithms)


def _wants_reply(m: Any) -> bool:
    """The request's want-reply flag, read without moving `m`'s position."""
    position = m.packet.tell()
    try:
        m.get_text()  # the request name
        return bool(m.get_boolean())
    finally:
        m.packet.seek(position)
