"""The audit signing key (Ed25519, separate from the CA): receipts and checkpoints (SPEC §8).

Signatures are standard base64 of the 64 raw bytes over the JCS form of the signed object;
`key_id` is the hex SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.chain import canonical
from audit.ed25519_signer import Ed25519Signer


def public_key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


class AuditSigner:
    """Signs receipts (and, later, checkpoints) with the audit key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._signer = Ed25519Signer(private_key)  # libsodium: the same bytes, less CPU
        self.public_key = private_key.public_key()
        self.key_id = public_key_id(self.public_key)

    @classmethod
    def from_file(cls, path: Path) -> AuditSigner:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: the audit key must be an Ed25519 private key")
        return cls(key)

    def sign(self, obj: dict[str, Any]) -> str:
        return base64.b64encode(self._signer.sign(canonical(obj))).decode("ascii")

    def receipt(self, seq: int, record_hash: str) -> dict[str, Any]:
        """Proof that record `seq` with `record_hash` was committed under this key."""
        signature = self.sign({"seq": seq, "hash": record_hash})
        return {"seq": seq, "hash": record_hash, "signature": signature, "key_id": self.key_id}

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def generate_key_pem() -> bytes:
    """A new Ed25519 audit key in PKCS#8 PEM (for `even init`)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
