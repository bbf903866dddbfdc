"""Reading piu's Ed25519 key file and Even's certificates with the standard library alone.

Why not `cryptography`: importing it costs more CPU than the rest of a `piu ssh` with a held
certificate, and reading these two formats needs no cryptography at all: the public key sits
in clear in an unencrypted OpenSSH key file, and a certificate's fields are length-prefixed
(RFC 4251 §5, OpenSSH's PROTOCOL.key and PROTOCOL.certkeys). `cryptography` is still what
*makes* the key (piu.keys), once. Nothing here verifies a signature; the certificate checks
are about which key and which kind of certificate Even returned (ssh verifies the CA).

Only `binascii` is imported (not base64, struct or dataclasses, which pull in re, inspect and
more): `piu ssh` with a held grant reads its key and certificates through this module before
anything else is loaded (piu.held).

Invariants: every parser is strict, every length is bounded by the data, and any deviation
(other cipher or key type, short data, trailing bytes, mismatched copies of the public key,
bad padding) raises ValueError; callers turn that into their own error.
"""

from __future__ import annotations

import binascii

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
        return int.from_bytes(self.take(4), "big")

    def uint64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def string(self) -> bytes:
        return self.take(self.uint32())

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.at)

    def end(self) -> None:
        if self.at != len(self.data):
            raise ValueError("unexpected trailing data")


def _b64(text: str | bytes) -> bytes:
    """base64.b64decode(text, validate=True), without importing base64 (and re)."""
    try:
        data = text.encode("ascii") if isinstance(text, str) else text
    except UnicodeEncodeError as exc:
        raise ValueError(
            "invalid base64: string argument should contain only ASCII characters"
        ) from exc
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from exc


class _Record:
    """A read-only record with value equality (what dataclass(frozen=True) gave, without
    importing dataclasses); subclasses name their fields, in order, in `_fields`."""

    __slots__: tuple[str, ...] = ()
    _fields: tuple[str, ...] = ()

    def _set(self, *values: object) -> None:
        for name, value in zip(self._fields, values, strict=True):
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Record) and (type(other), other._values()) == (
            type(self),
            self._values(),
        )

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        pairs = zip(self._fields, self._values(), strict=True)
        return f"{type(self).__name__}({', '.join(f'{n}={v!r}' for n, v in pairs)})"


class Ed25519Key(_Record):
    __slots__ = ("public", "seed")
    _fields = ("public", "seed")
    public: bytes  # 32 bytes
    seed: bytes  # 32 bytes, the private half

    def __init__(self, public: bytes, seed: bytes) -> None:
        self._set(public, seed)

    def public_line(self, comment: str) -> str:
        blob = _wire(ED25519.encode()) + _wire(self.public)
        return f"{ED25519} {binascii.b2a_base64(blob, newline=False).decode('ascii')} {comment}"


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


class Certificate(_Record):
    __slots__ = ("cert_type", "kind", "public", "serial", "valid_after", "valid_before")
    _fields = ("kind", "public", "serial", "cert_type", "valid_after", "valid_before")
    kind: str  # e.g. ssh-ed25519-cert-v01@openssh.com
    public: bytes  # the certified Ed25519 public key (32 bytes)
    serial: int
    cert_type: int  # USER_CERT or HOST_CERT
    valid_after: int
    valid_before: int

    def __init__(
        self,
        kind: str,
        public: bytes,
        serial: int,
        cert_type: int,
        valid_after: int,
        valid_before: int,
    ) -> None:
        self._set(kind, public, serial, cert_type, valid_after, valid_before)


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
    return len(data).to_bytes(4, "big") + data
