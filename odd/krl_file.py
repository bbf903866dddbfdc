"""OpenSSH KRL files as `odd sync` checks them before installing (structure, not policy).

A KRL that sshd cannot load makes it refuse every key, so a body is installed only when every
section reads as OpenSSH 9.x would read it: magic, version, the section types it accepts,
bounds-checked lengths, no serial 0, no negative or oversized bitmaps. Standard library only.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

from odd.errors import BadResponse
from odd.sshkey import InvalidKey, parse_public_key

KRL_MAGIC = b"SSHKRL\n\0"
KRL_FORMAT_VERSION = 1
# Sections OpenSSH 9.x loads: certificates, explicit keys, SHA1 and SHA256 fingerprints. Not
# signatures (OpenSSH >= 9.4 refuses KRLs containing them) nor extensions (older ones refuse).
_KRL_SECTIONS = {1, 2, 3, 5}
_HASH_LENGTHS = {3: 20, 5: 32}
_CERT_SERIAL_LIST, _CERT_SERIAL_RANGE, _CERT_SERIAL_BITMAP, _CERT_KEY_ID = 0x20, 0x21, 0x22, 0x23
_MAX_BIGNUM = 2048  # OpenSSH's SSHBUF_MAX_BIGNUM, in bytes


@dataclass(frozen=True)
class KrlSummary:
    generation: int
    serials: int  # revoked certificate serials (ranges counted in full)
    sections: int


def check_krl(body: bytes) -> KrlSummary:
    """Check `body` is a KRL OpenSSH will load (structure, not policy); raise `BadResponse`."""
    if not body.startswith(KRL_MAGIC):
        raise BadResponse("KRL: bad magic (not an OpenSSH KRL)")
    reader = _Wire(body)
    reader.take(len(KRL_MAGIC))
    if reader.u32() != KRL_FORMAT_VERSION:
        raise BadResponse("KRL: unsupported format version")
    generation = reader.u64()
    reader.take(16)  # generated date, flags
    reader.string()  # reserved
    if b"\0" in reader.string():
        raise BadResponse("KRL: NUL in comment")
    serials = sections = 0
    while not reader.done():
        kind, section = reader.u8(), _Wire(reader.string())
        if kind not in _KRL_SECTIONS:
            raise BadResponse(f"KRL: section type {kind} that OpenSSH would refuse")
        sections += 1
        if kind == 1:
            serials += _check_certificates(section)
            continue
        while not section.done():
            item = section.string()
            if len(item) != _HASH_LENGTHS.get(kind, len(item)) or not item:
                raise BadResponse("KRL: malformed key or hash entry")
    return KrlSummary(generation=generation, serials=serials, sections=sections)


def _check_certificates(section: _Wire) -> int:
    _check_key_blob(section.string())
    section.string()  # reserved
    count = 0
    while not section.done():
        kind, sub = section.u8(), _Wire(section.string())
        if kind == _CERT_SERIAL_LIST:
            while not sub.done():
                _nonzero(sub.u64())
                count += 1
        elif kind == _CERT_SERIAL_RANGE:
            low, high = _nonzero(sub.u64()), sub.u64()
            if low > high:
                raise BadResponse("KRL: serial range runs backwards")
            count += high - low + 1
        elif kind == _CERT_SERIAL_BITMAP:
            offset, bitmap = sub.u64(), sub.string()
            value = int.from_bytes(bitmap, "big")
            # OpenSSH's bignum rules: not negative, at most 2048 bytes plus a 0x00 sign byte.
            sign_byte = bitmap[:1] == b"\0"
            if (bitmap and bitmap[0] & 0x80) or len(bitmap) > _MAX_BIGNUM + sign_byte:
                raise BadResponse("KRL: negative or oversized serial bitmap")
            if (offset == 0 and value & 1) or offset + value.bit_length() - 1 >= 2**64:
                raise BadResponse("KRL: bitmap holds serial 0 or wraps past 2^64")
            count += value.bit_count()
        elif kind == _CERT_KEY_ID:
            while not sub.done():
                sub.string()
        else:
            raise BadResponse(f"KRL: certificate subsection type {kind:#x} OpenSSH would refuse")
        if not sub.done():
            raise BadResponse("KRL: trailing bytes in a certificate subsection")
    return count


def _check_key_blob(blob: bytes) -> None:
    # sshd fails the whole KRL on a CA key it cannot parse, and then refuses every login.
    key_type = _Wire(blob).string().decode("ascii", errors="replace")
    try:
        parse_public_key(key_type, base64.b64encode(blob).decode("ascii"))
    except InvalidKey as exc:
        raise BadResponse(f"KRL: CA key: {exc}") from None


def _nonzero(serial: int) -> int:
    if serial == 0:
        raise BadResponse("KRL: serial 0 (OpenSSH refuses the whole file)")
    return serial


class _Wire:
    """Bounds-checked reads of SSH wire types; a shortfall is a `BadResponse`."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def done(self) -> bool:
        return self.pos == len(self.data)

    def take(self, count: int) -> bytes:
        if count > len(self.data) - self.pos:
            raise BadResponse("KRL: truncated")
        self.pos += count
        return self.data[self.pos - count : self.pos]

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def string(self) -> bytes:
        return self.take(self.u32())


def empty_krl(generated_date: int, generation: int = 0) -> bytes:
    """A valid KRL that revokes nothing."""
    header = struct.pack(">IQQQ", KRL_FORMAT_VERSION, generation, generated_date, 0)
    return KRL_MAGIC + header + struct.pack(">II", 0, 0)  # empty reserved, empty comment
