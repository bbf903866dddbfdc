"""Loading a grant's certificate into the user's ssh-agent for exactly the grant's lifetime.

Speaks the agent protocol (draft-miller-ssh-agent: SSH_AGENTC_ADD_ID_CONSTRAINED with
SSH_AGENT_CONSTRAIN_LIFETIME) over $SSH_AUTH_SOCK rather than running ssh-add: OpenSSH 9.2's
ssh-add has no way to load only a certificate (it always loads the plain key too, which the
agent would then offer to every server the user visits) and insists on `<key>-cert.pub` names.
The agent itself drops the identity when the lifetime ends, so nothing of piu has to run then.

Failures are AgentError; the CLI reports them as warnings, since a grant is just as usable
with `ssh -i … -o CertificateFile=…`. The private key is read from piu's own key file and
sent only to the socket the user's environment names.
"""

from __future__ import annotations

import base64
import socket
import struct
from pathlib import Path

from piu import sshwire
from piu.errors import PiuError

ADD_ID_CONSTRAINED = 25
CONSTRAIN_LIFETIME = 1
SUCCESS = 6
TIMEOUT = 5.0
MAX_LIFETIME = 2**32 - 1  # the constraint is a uint32


class AgentError(PiuError):
    """The agent could not be reached or refused the identity."""


def add_certificate(
    socket_path: str, key_file: Path, certificate: str, lifetime: int, comment: str
) -> None:
    """Add key + certificate to the agent at `socket_path` for `lifetime` seconds."""
    if lifetime <= 0:
        raise AgentError("the certificate has already expired")
    message = _add_message(key_file, certificate, min(lifetime, MAX_LIFETIME), comment)
    answer = _exchange(socket_path, message)
    if answer[:1] != bytes([SUCCESS]):
        raise AgentError("the ssh-agent refused the certificate")


def certificate_valid_before(certificate: str) -> int:
    """The certificate's valid_before (epoch seconds), read from the certificate itself."""
    try:
        return sshwire.read_certificate(certificate).valid_before
    except ValueError as exc:
        raise AgentError(f"not a usable certificate: {exc}") from exc


def _add_message(key_file: Path, certificate: str, lifetime: int, comment: str) -> bytes:
    try:
        key = sshwire.read_private_key(key_file.read_bytes())
    except OSError as exc:
        raise AgentError(f"cannot read {key_file}: {exc}") from exc
    except ValueError as exc:
        raise AgentError(f"cannot use {key_file}: {exc}") from exc
    kind, blob_b64 = certificate.split()[:2]
    if kind != "ssh-ed25519-cert-v01@openssh.com":
        raise AgentError(f"cannot add a {kind} certificate")
    seed, public = key.seed, key.public
    body = (
        bytes([ADD_ID_CONSTRAINED])
        + _string(kind.encode())
        + _string(base64.b64decode(blob_b64))
        + _string(public)
        + _string(seed + public)  # the agent format's "k || ENC(A)"
        + _string(comment.encode("utf-8"))
        + bytes([CONSTRAIN_LIFETIME])
        + struct.pack(">I", lifetime)
    )
    return _string(body)


def _exchange(socket_path: str, message: bytes) -> bytes:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(socket_path)
            sock.sendall(message)
            (length,) = struct.unpack(">I", _read(sock, 4))
            return _read(sock, min(length, 1 << 16))
    except OSError as exc:
        raise AgentError(f"cannot talk to the ssh-agent at {socket_path}: {exc}") from exc


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("the agent closed the connection")
        data += chunk
    return data


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data
