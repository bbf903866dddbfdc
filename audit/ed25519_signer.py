"""Ed25519 signing through libsodium: the same 64 bytes as cryptography's, in less CPU.

Ed25519 signatures are deterministic (RFC 8032 §5.1.6): one key and one message have exactly
one signature, whichever correct implementation computes it. libsodium's `crypto_sign`
(PyNaCl, which paramiko already requires) takes ~20 µs per signature on our 2-CPU
benchmark machine where cryptography's OpenSSL EVP path takes ~34 µs, and a certificate
grant signs twice (the certificate, the receipt). So the audit key and Ed25519 CA keys sign
here; everything else about the key (loading, PEM, public key) stays with cryptography.

Without PyNaCl the signer falls back to cryptography's own `sign`; tests compare the two over
random keys and messages, and the certificates still verify with real sshd.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

try:
    import nacl.bindings
except ImportError:  # pragma: no cover - PyNaCl is a dependency; this is the safety net
    HAVE_LIBSODIUM = False
else:
    HAVE_LIBSODIUM = True

SIGNATURE_BYTES = 64


class Ed25519Signer:
    """Signs with one Ed25519 private key; `sign(message)` is the 64-byte signature."""

    __slots__ = ("_key", "_secret")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._secret: bytes | None = None
        if HAVE_LIBSODIUM:
            seed = key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            # libsodium's secret key is the seed followed by the public key.
            _, self._secret = nacl.bindings.crypto_sign_seed_keypair(seed)

    @property
    def uses_libsodium(self) -> bool:
        return self._secret is not None

    def sign(self, message: bytes) -> bytes:
        if self._secret is None:
            return self._key.sign(message)
        # crypto_sign returns the signature followed by the message ("combined mode").
        return nacl.bindings.crypto_sign(message, self._secret)[:SIGNATURE_BYTES]
