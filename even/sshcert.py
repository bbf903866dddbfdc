"""OpenSSH user certificates encoded directly (PROTOCOL.certkeys), for Ed25519 CA keys.

cryptography's SSHCertificateBuilder does the same in general but spends several times the
Ed25519 signature itself in Python on every grant. This writes the fields in the protocol's
order and signs them once; tests check that the bytes are exactly the builder's for the same
nonce, and real sshd accepts the result (tests/integration). Other CA key types keep using
the builder (even.ca).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Protocol

from even.randomness import random_bytes

USER_CERT = 1
NONCE_BYTES = 32
_UINT32 = struct.Struct(">I")
_UINT64 = struct.Struct(">Q")


class Signs(Protocol):
    """An Ed25519 private key's signing half: cryptography's key, or audit.ed25519_signer's."""

    def sign(self, data: bytes, /) -> bytes: ...


def _string(data: bytes) -> bytes:
    return _UINT32.pack(len(data)) + data


def _options(pairs: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Critical options or extensions: (name, data) pairs, sorted by name as OpenSSH wants."""
    return b"".join(_string(name) + _string(data) for name, data in sorted(pairs))


def ed25519_user_certificate(
    *,
    ca_key: Signs,
    ca_blob: bytes,
    public_key_blob: bytes,
    serial: int,
    key_id: bytes,
    principals: Sequence[bytes],
    valid_after: int,
    valid_before: int,
    critical_options: Sequence[tuple[bytes, bytes]] = (),
    extensions: Sequence[bytes] = (),
    nonce: bytes | None = None,
) -> str:
    """The certificate as one OpenSSH line. The caller has validated every field (even.ca):
    `public_key_blob` is a key's wire form (string type, then its fields); `ca_blob` the CA's."""
    type_length = _UINT32.unpack_from(public_key_blob)[0]
    key_type = public_key_blob[4 : 4 + type_length]
    cert_type = key_type + b"-cert-v01@openssh.com"
    body = b"".join(
        (
            _string(cert_type),
            _string(nonce if nonce is not None else random_bytes(NONCE_BYTES)),
            public_key_blob[4 + type_length :],  # the key's own fields, as in its wire form
            _UINT64.pack(serial),
            _UINT32.pack(USER_CERT),
            _string(key_id),
            _string(b"".join(_string(p) for p in principals)),
            _UINT64.pack(valid_after),
            _UINT64.pack(valid_before),
            # A critical option's data is itself a string; an empty extension's data is empty.
            _string(_options([(name, _string(value)) for name, value in critical_options])),
            _string(_options([(name, b"") for name in extensions])),
            _string(b""),  # reserved
            _string(ca_blob),
        )
    )
    signature = _string(b"ssh-ed25519") + _string(ca_key.sign(body))
    blob = body + _string(signature)
    return f"{cert_type.decode('ascii')} {base64.b64encode(blob).decode('ascii')}"
