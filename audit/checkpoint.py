"""Signed statements about the log: checkpoints, receipts and the public keys that check them.

SPEC §8. Pure: no I/O (keys arrive as bytes), no clock (the caller passes the time string).

Invariants:
- A checkpoint signs the JCS form of exactly `{"origin", "size", "head", "time"}`; a receipt
  signs exactly `{"seq", "hash"}`. Nothing else in the line is covered by the signature, so the
  checkpoint line of an export may hold nothing else either (`parse_checkpoint` refuses extras).
- Signatures are standard base64 (padded, canonical) of the 64 raw Ed25519 bytes; `key_id` is
  the hex SHA-256 of the raw 32-byte public key. A signature is checked only under the key its
  `key_id` names; an unknown `key_id` fails, so rotation means passing every key in use.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.chain import MAX_SAFE_INT, canonical
from audit.signing import AuditSigner, public_key_id

CHECKPOINT_TYPE = "checkpoint"
CHECKPOINT_MEMBERS = frozenset(("type", "origin", "size", "head", "time", "key_id", "signature"))

_HEX64 = re.compile(r"[0-9a-f]{64}")

PublicKeys = Mapping[str, Ed25519PublicKey]
"""Audit public keys by key_id (hex SHA-256 of the raw key)."""


class SignedObjectError(Exception):
    """Base of checkpoint and receipt errors."""


class MalformedSignedObject(SignedObjectError):
    """The object does not have the members and types SPEC §8 gives it."""


class UnknownKey(SignedObjectError):
    """Signed by a key_id that is not among the auditor's public keys."""


class BadSignature(SignedObjectError):
    """The signature does not verify under the key its key_id names."""


class KeyFormatError(ValueError):
    """A public key file holds something other than Ed25519 PEM keys or ssh-ed25519 lines."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    head: str
    time: str
    key_id: str
    signature: str

    def signed_body(self) -> dict[str, Any]:
        return {"origin": self.origin, "size": self.size, "head": self.head, "time": self.time}

    def line(self) -> dict[str, Any]:
        """The JSONL checkpoint line object of an export."""
        return {
            "type": CHECKPOINT_TYPE,
            **self.signed_body(),
            "key_id": self.key_id,
            "signature": self.signature,
        }


@dataclass(frozen=True)
class Receipt:
    seq: int
    hash: str
    key_id: str
    signature: str

    def signed_body(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}


def make_checkpoint(
    signer: AuditSigner, *, origin: str, size: int, head: str, time: str
) -> dict[str, Any]:
    """Sign that record `size` of the log at `origin` has hash `head`; returns the line object."""
    _check_position(size, head)
    body = {"origin": origin, "size": size, "head": head, "time": time}
    return Checkpoint(origin, size, head, time, signer.key_id, signer.sign(body)).line()


def parse_checkpoint(obj: object, *, line: bool = True) -> Checkpoint:
    """A checkpoint from its JSON object; `line=False` also accepts it without `type`.

    Export lines must be exactly the SPEC's members (anything more would be unsigned data
    dressed as signed); a saved checkpoint (`--checkpoint FILE`) may omit `type`.
    """
    if not isinstance(obj, dict):
        raise MalformedSignedObject("a checkpoint must be a JSON object")
    members = set(obj)
    required = CHECKPOINT_MEMBERS if line else CHECKPOINT_MEMBERS - {"type"}
    if not required <= members <= CHECKPOINT_MEMBERS:
        raise MalformedSignedObject(
            f"a checkpoint has exactly the members {', '.join(sorted(CHECKPOINT_MEMBERS))}"
        )
    if "type" in obj and obj["type"] != CHECKPOINT_TYPE:
        raise MalformedSignedObject('a checkpoint\'s type is "checkpoint"')
    origin, size, head, time = obj["origin"], obj["size"], obj["head"], obj["time"]
    if not isinstance(origin, str) or not isinstance(time, str):
        raise MalformedSignedObject("checkpoint origin and time must be strings")
    _check_position(size, head)
    key_id, signature = _key_id_and_signature(obj)
    return Checkpoint(origin, size, head, time, key_id, signature)


def parse_receipt(obj: object) -> Receipt:
    """A receipt from its JSON object; extra members (piu may add context) are ignored."""
    if not isinstance(obj, dict) or not {"seq", "hash", "key_id", "signature"} <= set(obj):
        raise MalformedSignedObject("a receipt is an object with seq, hash, signature, key_id")
    seq, record_hash = obj["seq"], obj["hash"]
    _check_position(seq, record_hash)
    key_id, signature = _key_id_and_signature(obj)
    return Receipt(seq, record_hash, key_id, signature)


def verify_checkpoint(checkpoint: Checkpoint, keys: PublicKeys) -> None:
    """Raise UnknownKey or BadSignature unless the audit key signed this checkpoint."""
    verify_signature(keys, checkpoint.key_id, checkpoint.signed_body(), checkpoint.signature)


def verify_receipt(receipt: Receipt, keys: PublicKeys) -> None:
    """Raise UnknownKey or BadSignature unless the audit key signed this receipt."""
    verify_signature(keys, receipt.key_id, receipt.signed_body(), receipt.signature)


def verify_signature(
    keys: PublicKeys, key_id: str, body: Mapping[str, Any], signature: str
) -> None:
    key = keys.get(key_id)
    if key is None:
        raise UnknownKey(f"signed by unknown key {key_id[:16]}…")
    raw = _decode_signature(signature)
    try:
        key.verify(raw, canonical(body))
    except InvalidSignature:
        raise BadSignature(f"signature does not verify under key {key_id[:16]}…") from None


def key_ring(public_keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    return {public_key_id(key): key for key in public_keys}


def load_public_keys(data: bytes) -> dict[str, Ed25519PublicKey]:
    """Every Ed25519 key in a file: PEM SubjectPublicKeyInfo blocks and/or `ssh-ed25519` lines.

    Blank lines and `#` comments are skipped; anything else is an error rather than ignored,
    so a mistyped file cannot silently leave the auditor with fewer keys than they meant.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFormatError("not a PEM or OpenSSH public key file (not ASCII)") from None
    keys: list[Ed25519PublicKey] = []
    for block in _PEM_BLOCK.findall(text):
        keys.append(_from_pem(block.encode("ascii")))
    for raw_line in _PEM_BLOCK.sub("", text).split("\n"):
        entry = raw_line.strip()
        if not entry or entry.startswith("#"):
            continue
        if not entry.startswith("ssh-ed25519 "):
            raise KeyFormatError(f"not an Ed25519 public key: {entry[:40]!r}")
        keys.append(_from_openssh(entry))
    if not keys:
        raise KeyFormatError("no public key found")
    return key_ring(keys)


_PEM_BLOCK = re.compile(
    r"-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]*?-----END PUBLIC KEY-----"
)


def _from_pem(block: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(block)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"unreadable PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFormatError("the audit key is Ed25519; this PEM key is another type")
    return key


def _from_openssh(entry: str) -> Ed25519PublicKey:
    # Only "ssh-ed25519 BASE64 [comment]": no authorized_keys options, no certificates.
    parts = entry.split(None, 2)
    if len(parts) < 2:
        raise KeyFormatError("an ssh-ed25519 line needs its base64 key")
    try:
        key = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode("ascii"))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"unreadable ssh-ed25519 key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFormatError("not an Ed25519 key")
    return key


def _check_position(seq: object, record_hash: object) -> None:
    # bool is an int in Python but not a seq; JSON true must not pass for 1.
    if type(seq) is not int or not 1 <= seq <= MAX_SAFE_INT:
        raise MalformedSignedObject("seq/size must be an integer from 1 to 2^53-1")
    if not isinstance(record_hash, str) or not _HEX64.fullmatch(record_hash):
        raise MalformedSignedObject("hash/head must be 64 lowercase hex digits")


def _key_id_and_signature(obj: Mapping[str, Any]) -> tuple[str, str]:
    key_id, signature = obj["key_id"], obj["signature"]
    if not isinstance(key_id, str) or not isinstance(signature, str):
        raise MalformedSignedObject("key_id and signature must be strings")
    return key_id, signature


def _decode_signature(signature: str) -> bytes:
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature("signature is not standard base64") from None
    # Only the one canonical spelling: other encodings of the same bytes are refused, so a
    # signature string is as unique as the signature.
    if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != signature:
        raise BadSignature("signature is not the standard base64 of 64 bytes")
    return raw
