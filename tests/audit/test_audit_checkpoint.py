"""Checkpoints, receipts and audit public keys (SPEC §8), checked against the spec's own terms."""

from __future__ import annotations

import base64
import hashlib

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from audit.checkpoint import (
    BadSignature,
    KeyFormatError,
    MalformedSignedObject,
    UnknownKey,
    key_ring,
    load_public_keys,
    make_checkpoint,
    parse_checkpoint,
    parse_receipt,
    verify_checkpoint,
    verify_receipt,
)
from audit.signing import AuditSigner

HEAD = "ab" * 32


@pytest.fixture
def signer() -> AuditSigner:
    return AuditSigner(Ed25519PrivateKey.generate())


def test_checkpoint_line_signs_the_jcs_of_origin_size_head_time(signer: AuditSigner) -> None:
    line = make_checkpoint(signer, origin="https://even.test", size=7, head=HEAD, time="T")
    assert set(line) == {"type", "origin", "size", "head", "time", "key_id", "signature"}
    assert line["type"] == "checkpoint"
    raw_key = signer.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert line["key_id"] == hashlib.sha256(raw_key).hexdigest()
    body = {"origin": "https://even.test", "size": 7, "head": HEAD, "time": "T"}
    signature = base64.b64decode(line["signature"], validate=True)
    assert len(signature) == 64
    signer.public_key.verify(signature, rfc8785.dumps(body))  # raises if not
    verify_checkpoint(parse_checkpoint(line), key_ring([signer.public_key]))


def test_receipt_signs_the_jcs_of_seq_and_hash(signer: AuditSigner) -> None:
    receipt = signer.receipt(12, HEAD)
    keys = key_ring([signer.public_key])
    verify_receipt(parse_receipt(receipt), keys)
    signer.public_key.verify(
        base64.b64decode(receipt["signature"]), rfc8785.dumps({"seq": 12, "hash": HEAD})
    )
    with pytest.raises(BadSignature):
        verify_receipt(parse_receipt({**receipt, "seq": 13}), keys)
    with pytest.raises(UnknownKey):
        verify_receipt(
            parse_receipt(receipt), key_ring([Ed25519PrivateKey.generate().public_key()])
        )
    # piu may keep context next to the receipt; only the signed members count.
    assert parse_receipt({**receipt, "request_id": "x"}).seq == 12


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"size": True},
        {"size": 0},
        {"size": 2**53},
        {"head": HEAD.upper()},
        {"head": HEAD + "\n"},
        {"origin": None},
        {"type": "Checkpoint"},
        {"signature": 5},
    ],
)
def test_malformed_checkpoints_are_refused(signer: AuditSigner, change: dict[str, object]) -> None:
    line = make_checkpoint(signer, origin="o", size=3, head=HEAD, time="T")
    with pytest.raises(MalformedSignedObject):
        parse_checkpoint({**line, **change})


def test_a_saved_checkpoint_may_omit_type_but_an_export_line_may_not(signer: AuditSigner) -> None:
    line = make_checkpoint(signer, origin="o", size=3, head=HEAD, time="T")
    del line["type"]
    assert parse_checkpoint(line, line=False).size == 3
    with pytest.raises(MalformedSignedObject):
        parse_checkpoint(line)


@pytest.mark.parametrize("mangle", ["drop_padding", "non_canonical_bits", "not_base64", "short"])
def test_only_the_standard_base64_of_64_bytes_is_a_signature(
    signer: AuditSigner, mangle: str
) -> None:
    line = make_checkpoint(signer, origin="o", size=3, head=HEAD, time="T")
    sig = line["signature"]
    assert sig.endswith("==")
    changed = {
        "drop_padding": sig.rstrip("="),
        # The last character carries 2 unused bits; setting them gives other text, same bytes.
        "non_canonical_bits": sig[:-3] + chr(ord(sig[-3]) ^ 1) + "==",
        "not_base64": sig[:-4] + "*" + sig[-3:],
        "short": base64.b64encode(b"x" * 63).decode(),
    }[mangle]
    with pytest.raises(BadSignature):
        verify_checkpoint(
            parse_checkpoint({**line, "signature": changed}), key_ring([signer.public_key])
        )


def test_public_keys_load_from_pem_and_ssh_lines_several_per_file() -> None:
    a, b = Ed25519PrivateKey.generate().public_key(), Ed25519PrivateKey.generate().public_key()
    pem = a.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ssh = b.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert set(load_public_keys(pem)) == set(key_ring([a]))
    assert set(load_public_keys(ssh + b" audit@even\n")) == set(key_ring([b]))
    both = b"# rotated 2026-03\n" + pem + b"\n" + ssh + b" new key\r\n\n"
    assert set(load_public_keys(both)) == set(key_ring([a, b]))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"# only a comment\n",
        b"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x\n",
        b"ssh-ed25519 not-base64\n",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "ssh-ed25519 AAAA é\n".encode(),
        b"garbage\n",
    ],
)
def test_unreadable_key_files_are_errors_not_empty_key_sets(data: bytes) -> None:
    with pytest.raises(KeyFormatError):
        load_public_keys(data)


def test_an_rsa_pem_key_is_refused() -> None:
    rsa = generate_private_key(public_exponent=65537, key_size=1024).public_key()
    pem = rsa.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyFormatError, match="Ed25519"):
        load_public_keys(pem)


@pytest.mark.parametrize(("size", "head"), [(0, HEAD), (True, HEAD), (1, "x" * 64), (1, HEAD[:-1])])
def test_make_checkpoint_refuses_what_a_verifier_would_refuse(
    signer: AuditSigner, size: object, head: str
) -> None:
    with pytest.raises(MalformedSignedObject):
        make_checkpoint(signer, origin="o", size=size, head=head, time="T")  # type: ignore[arg-type]
