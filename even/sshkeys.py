"""Parsing of client-supplied OpenSSH public keys: one key, no options, nothing we can't sign.

The key is re-encoded from the parsed object, so what we sign and record is never the client's
raw text. Certificates, DSA, short RSA keys and the CA's own keys are refused.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from even.errors import InvalidRequest

ALLOWED_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
    }
)
MIN_RSA_BITS = 2048
MAX_KEY_LINE = 16 * 1024
_B64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_COMMENT_RE = re.compile(r"[\x20-\x7e]{0,256}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_ED25519_PREFIX = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20"

SSHPublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True)
class ParsedPublicKey:
    key: SSHPublicKey
    key_type: str
    blob: bytes

    @property
    def openssh(self) -> str:
        return f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"

    @functools.cached_property  # read several times per grant, some under the write lock
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _wire_type(blob: bytes) -> str:
    if len(blob) < 4:
        raise InvalidRequest("public_key: truncated key blob")
    length = int.from_bytes(blob[:4], "big")
    if length > 64 or len(blob) < 4 + length:
        raise InvalidRequest("public_key: malformed key blob")
    return blob[4 : 4 + length].decode("ascii", errors="replace")


def _ed25519_key(blob: bytes) -> ed25519.Ed25519PublicKey:
    """The one canonical Ed25519 blob: its type, then exactly 32 bytes (the grant's hot path;
    the general loader decides the same, tested on mutated blobs, at several times the cost)."""
    if len(blob) != len(_ED25519_PREFIX) + 32 or not blob.startswith(_ED25519_PREFIX):
        raise InvalidRequest("public_key: the key could not be parsed")
    return ed25519.Ed25519PublicKey.from_public_bytes(blob[len(_ED25519_PREFIX) :])


def _load_key(key_type: str, b64: str, blob: bytes) -> SSHPublicKey:
    try:
        key = serialization.load_ssh_public_key(f"{key_type} {b64}".encode("ascii"))
    except (ValueError, TypeError) as exc:
        raise InvalidRequest("public_key: the key could not be parsed") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise InvalidRequest("public_key: key type is not accepted")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise InvalidRequest(f"public_key: RSA keys need at least {MIN_RSA_BITS} bits")
    reencoded = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    canonical_blob = base64.b64decode(reencoded.split(b" ")[1])
    if canonical_blob != blob:
        # Trailing or non-canonical bytes: refuse rather than sign something else than was sent.
        raise InvalidRequest("public_key: the key blob has trailing or non-canonical bytes")
    return key


def parse_public_key(line: str) -> ParsedPublicKey:
    """Parse `TYPE BASE64 [COMMENT]` strictly; raise InvalidRequest with a clear reason."""
    if len(line) > MAX_KEY_LINE:
        raise InvalidRequest("public_key: too long")
    if _CONTROL_RE.search(line):
        raise InvalidRequest("public_key: control characters are not allowed")
    parts = line.strip().split(" ")
    if len(parts) not in (2, 3):
        raise InvalidRequest("public_key: expected one 'TYPE BASE64 [COMMENT]' line, no options")
    key_type, b64 = parts[0], parts[1]
    if len(parts) == 3 and not _COMMENT_RE.fullmatch(parts[2]):
        raise InvalidRequest("public_key: comment has unsupported characters")
    if "-cert-v01@openssh.com" in key_type:
        raise InvalidRequest("public_key: a certificate is not a public key")
    if key_type not in ALLOWED_TYPES:
        raise InvalidRequest(f"public_key: key type {key_type[:40]!r} is not accepted")
    if not _B64_RE.fullmatch(b64):
        raise InvalidRequest("public_key: the key is not valid base64")
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("public_key: the key is not valid base64") from exc
    if _wire_type(blob) != key_type:
        raise InvalidRequest("public_key: the type label does not match the key")
    if key_type == "ssh-ed25519":
        key: SSHPublicKey = _ed25519_key(blob)
    else:
        key = _load_key(key_type, b64, blob)
    return ParsedPublicKey(key=key, key_type=key_type, blob=blob)
