"""The libsodium signer gives cryptography's signatures byte for byte (Ed25519 is deterministic)."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.ed25519_signer import Ed25519Signer


def test_libsodium_is_in_use() -> None:
    # The fast path must actually run where the dependency is installed (as in CI).
    assert Ed25519Signer(Ed25519PrivateKey.generate()).uses_libsodium


@pytest.mark.parametrize("length", [0, 1, 31, 32, 64, 200, 1000, 70_000])
def test_signatures_equal_cryptographys(length: int) -> None:
    for _ in range(20):
        key = Ed25519PrivateKey.generate()
        message = os.urandom(length)
        signature = Ed25519Signer(key).sign(message)
        assert signature == key.sign(message)
        key.public_key().verify(signature, message)  # raises if invalid


def test_fallback_without_libsodium_signs_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    import audit.ed25519_signer as module

    monkeypatch.setattr(module, "HAVE_LIBSODIUM", False)
    key = Ed25519PrivateKey.generate()
    plain = Ed25519Signer(key)
    assert not plain.uses_libsodium
    assert plain.sign(b"receipt") == key.sign(b"receipt")
