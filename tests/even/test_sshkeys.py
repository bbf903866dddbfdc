"""even.sshkeys: the Ed25519 fast path decides exactly as the general loader does."""

from __future__ import annotations

import base64
import random

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from even.errors import InvalidRequest
from even.sshkeys import _ed25519_key, _load_key, parse_public_key


def _outcome(decide, blob: bytes) -> bytes | None:
    """The raw public key accepted, or None when refused."""
    try:
        key = decide(blob)
    except InvalidRequest:
        return None
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _general(blob: bytes) -> ed25519.Ed25519PublicKey:
    key = _load_key("ssh-ed25519", base64.b64encode(blob).decode(), blob)
    assert isinstance(key, ed25519.Ed25519PublicKey)
    return key


def _mutations(blob: bytes, rng: random.Random) -> list[bytes]:
    out = [blob, blob[:-1], blob + b"\x00", blob + blob[-32:], blob[:19]]
    for _ in range(300):
        mutated = bytearray(blob)
        mutated[rng.randrange(len(blob))] = rng.randrange(256)
        out.append(bytes(mutated))
    for length in (0, 31, 33, 64, 0x20 + 256):  # the key's length field
        out.append(blob[:15] + length.to_bytes(4, "big") + blob[19:])
    return out


def test_fast_path_agrees_with_the_general_loader() -> None:
    rng = random.Random(8)
    accepted = refused = 0
    for _ in range(5):
        line = (
            ed25519.Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        )
        blob = base64.b64decode(line.split()[1])
        for candidate in _mutations(blob, rng):
            fast = _outcome(_ed25519_key, candidate)
            assert fast == _outcome(_general, candidate), candidate.hex()
            accepted += fast is not None
            refused += fast is None
    # Both sides of the property were exercised.
    assert accepted > 100 and refused > 100


@pytest.mark.parametrize("blob_suffix", [b"\x00", b"extra"])
def test_trailing_bytes_are_refused(blob_suffix: bytes) -> None:
    line = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    blob = base64.b64decode(line.split()[1]) + blob_suffix
    with pytest.raises(InvalidRequest):
        parse_public_key("ssh-ed25519 " + base64.b64encode(blob).decode())
