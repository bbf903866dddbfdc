"""Reading piu's Ed25519 key file and Even's certificates with the standard library alone.

Why not `cryptography`: importing it costs more CPU than the rest of a `piu ssh` with a held
certificate, and reading these two formats needs no cryptography at all: the public key sits
in clear in an unencrypted OpenSSH key file, and a certificate's fields are length-prefixed
(RFC 4251 §5, OpenSSH's PROTOCOL.key and PROTOCOL.certkeys). `cryptography` is still what
*makes* the key (piu.keys), once. Nothing here verifies a signature; the certificate checks
are about which key and which kind of certificate Even returned (ssh verifies the CA).

Invariants: every parser is strict, every length is bounded by the data, and any deviation
(other cipher or key type, short data, trailing bytes, mismatched copies of the public key,
bad padding) raises ValueError; callers turn that into their own error.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

ED25519 = "ssh-ed25519"
ED25519_CERT = "ssh-ed25519-cert-v01@openssh.com"
CERT_SUFFIX = "-cert-v01@openssh.com"
USER_CERT, HOST_CERT = 1, 2
_MAGIC = b"openssh-key-v1\0"
_PEM_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
_PEM_END = "-----END OPENSSH PRIVATE KEY-----"


class _Reader:
    """Big-endian uint32/uint64 and uint32-length-prefixed strings, bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise ValueError("truncated data")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def uint32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def uint64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def string(self) -> bytes:
        return self.take(self.uint32())

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.at)

    def end(self) -> None:
        if self.at != len(self.data):
            raise ValueError("unexpected trailing data")


def _b64(text: str | bytes) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from exc


@dataclass(frozen=True)
class Ed25519Key:
    public: bytes  # 32 bytes
    seed: bytes  # 32 bytes, the private half

    def public_line(self, comment: str) -> str:
        blob = _wire(ED25519.encode()) + _wire(self.public)
        return f"{ED25519} {base64.b64encode(blob).decode('ascii')} {comment}"


def read_private_key(text: bytes) -> Ed25519Key:
    """An unencrypted OpenSSH-format Ed25519 private key file, or ValueError."""
    try:
        lines = text.decode("ascii").strip().splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError("not an OpenSSH private key file") from exc
    if len(lines) < 3 or lines[0].strip() != _PEM_BEGIN or lines[-1].strip() != _PEM_END:
        raise ValueError("not an OpenSSH private key file")
    outer = _Reader(_b64("".join(line.strip() for line in lines[1:-1])))
    if outer.take(len(_MAGIC)) != _MAGIC:
        raise ValueError("not an openssh-key-v1 key")
    cipher, kdf, _options = outer.string(), outer.string(), outer.string()
    if cipher != b"none" or kdf != b"none":
        raise ValueError("the key is encrypted")
    if outer.uint32() != 1:
        raise ValueError("expected exactly one key")
    header = _Reader(outer.string())
    if header.string() != ED25519.encode():
        raise ValueError("not an Ed25519 key")
    public = header.string()
    header.end()
    private = _Reader(outer.string())
    outer.end()
    if private.uint32() != private.uint32():
        raise ValueError("corrupt key: check values differ")
    if private.string() != ED25519.encode():
        raise ValueError("corrupt key: the private part is not Ed25519")
    inner_public, pair = private.string(), private.string()
    private.string()  # comment
    padding = private.rest()
    if padding != bytes(range(1, len(padding) + 1)):
        raise ValueError("corrupt key: invalid padding")
    if len(public) != 32 or inner_public != public or len(pair) != 64 or pair[32:] != public:
        raise ValueError("corrupt key: the copies of the public key differ")
    return Ed25519Key(public=public, seed=pair[:32])


@dataclass(frozen=True)
class Certificate:
    kind: str  # e.g. ssh-ed25519-cert-v01@openssh.com
    public: bytes  # the certified Ed25519 public key (32 bytes)
    serial: int
    cert_type: int  # USER_CERT or HOST_CERT
    valid_after: int
    valid_before: int


class NotACertificate(ValueError):
    """A readable public key line, but of a plain key, not a certificate."""


class OtherKeyType(ValueError):
    """A certificate, but for a key type piu never uses (so not for piu's key)."""


def read_certificate(line: str) -> Certificate:
    """An Ed25519 user or host certificate line ("KIND BASE64 [COMMENT]"), or ValueError."""
    parts = line.strip().split()
    if len(parts) < 2:
        raise ValueError("not a public key line")
    kind = parts[0]
    if not kind.endswith(CERT_SUFFIX):
        if kind.startswith(("ssh-", "ecdsa-", "sk-")):
            raise NotACertificate(f"a {kind} public key, not a certificate")
        raise ValueError(f"unknown key type {kind!r}")
    if kind != ED25519_CERT:
        raise OtherKeyType(f"a {kind} certificate")
    blob = _Reader(_b64(parts[1]))
    if blob.string() != kind.encode():
        raise ValueError("the certificate's inner key type differs from its line")
    blob.string()  # nonce
    public = blob.string()
    if len(public) != 32:
        raise ValueError("bad Ed25519 public key length")
    serial, cert_type = blob.uint64(), blob.uint32()
    if cert_type not in (USER_CERT, HOST_CERT):
        raise ValueError(f"unknown certificate type {cert_type}")
    blob.string()  # key id
    blob.string()  # valid principals
    valid_after, valid_before = blob.uint64(), blob.uint64()
    for _field in ("critical options", "extensions", "reserved", "signature key", "signature"):
        blob.string()
    blob.end()
    return Certificate(kind, public, serial, cert_type, valid_after, valid_before)


def _wire(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data
