"""OpenSSH key revocation lists (KRLs, OpenSSH PROTOCOL.krl): a writer and a strict reader.

Owns the binary format only: which serials are revoked, and which generation to stamp, is the
caller's business (the revoke use case), as is the clock (the time is passed in). Pure: bytes
out, no I/O.

Invariants of what `build_krl` writes:
- Format version 1, no flags, no signature section (OpenSSH ≥ 9.4 refuses KRLs with one).
- One KRL_SECTION_CERTIFICATES per CA key, CA keys in byte order, each serial in exactly one
  subsection, subsections in serial order: equal inputs give equal bytes (stable ETags).
- Only what sshd accepts: serials in 1..2^64-1 (OpenSSH refuses serial 0 in a KRL), CA keys
  that are plain (not certificate) Ed25519/ECDSA/RSA keys in canonical wire form, bitmaps far
  below OpenSSH's bignum limit. A KRL sshd cannot parse makes it refuse *every* key, so a bad
  input raises here instead of producing such a file.
- Compact: runs of serials become ranges, dense clusters bitmaps, isolated serials a list;
  the choice only changes the size, never which serials are revoked (`parse_krl` round-trips).
- Block-local: no subsection crosses a multiple of `BLOCK_SERIALS`, so a holder of many
  serials re-encodes only the blocks that changed (`encode_block`, `krl_from_blocks`).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives import serialization

from even.errors import EvenError

MAGIC = b"SSHKRL\n\0"
FORMAT_VERSION = 1
SECTION_CERTIFICATES = 1
CERT_SERIAL_LIST = 0x20
CERT_SERIAL_RANGE = 0x21
CERT_SERIAL_BITMAP = 0x22
CERT_KEY_ID = 0x23
MAX_U64 = 2**64 - 1
CA_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
    }
)
# OpenSSH reads a bitmap as a bignum of at most 2048 bytes (SSHBUF_MAX_BIGNUM, plus a 0x00 sign
# byte); our bitmaps stay at half that.
OPENSSH_MAX_BIGNUM_BYTES = 2048
MAX_BITMAP_BITS = 8192
# Clusters (and so subsections) never cross a multiple of this, so blocks encode independently.
BLOCK_SERIALS = 4096
# A gap of 64 unset bits costs 8 bytes, the price of one more list entry: beyond that, start a
# new cluster rather than pad a bitmap.
MAX_CLUSTER_GAP = 64
# Byte costs used to choose an encoding: subsection header (type + length), u64, mpint length.
_SUBSECTION = 5
_U64 = 8
_MPINT_LEN = 4


class KrlError(EvenError):
    """A KRL cannot be built from these inputs, or bytes are not a KRL sshd would accept."""

    code = "krl_error"


@dataclass(frozen=True)
class ParsedKrl:
    """What a KRL revokes: per CA key blob, sorted disjoint inclusive serial ranges."""

    generation: int
    generated_date: int
    comment: str
    revoked: Mapping[bytes, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    key_ids: Mapping[bytes, frozenset[str]] = field(default_factory=dict)

    def is_revoked(self, ca_key: bytes, serial: int) -> bool:
        """True if a certificate from `ca_key` with `serial` is revoked (serial 0 never is)."""
        runs = self.revoked.get(ca_key, ())
        index = bisect.bisect_right(runs, (serial, MAX_U64)) - 1
        return serial != 0 and index >= 0 and runs[index][0] <= serial <= runs[index][1]

    def serial_count(self) -> int:
        return sum(hi - lo + 1 for runs in self.revoked.values() for lo, hi in runs)


def build_krl(
    groups: Iterable[tuple[bytes, Iterable[int]]],
    *,
    generation: int,
    generated_at: datetime,
    comment: str = "",
) -> bytes:
    """A KRL revoking, for each `(ca_public_key_blob, serials)` group, those serials.

    Groups naming the same CA key are merged; groups without serials add nothing.
    `generation` is the KRL's version number: it must grow with every change, pruning expired
    serials included (`odd sync` refuses to go back). `generated_at` is timezone-aware; pass
    the time of the last change rather than now(), so an unchanged KRL keeps the same bytes
    (and ETag) and hosts do not rewrite their file on every sync.
    """
    merged: dict[bytes, set[int]] = {}
    for ca_key, serials in groups:
        check_ca_key_blob(ca_key)
        target = merged.setdefault(bytes(ca_key), set())
        for serial in serials:
            target.add(_check_serial(serial))
    sections = []
    for ca_key, serials in merged.items():
        blocks: dict[int, list[int]] = {}
        for serial in sorted(serials):
            blocks.setdefault(serial // BLOCK_SERIALS, []).append(serial)
        sections.append((ca_key, [encode_block(blocks[b]) for b in sorted(blocks)]))
    return krl_from_blocks(sections, generation=generation, generated_at=generated_at,
                           comment=comment)  # fmt: skip


@dataclass(frozen=True)
class EncodedBlock:
    """The serials of one block (serial // BLOCK_SERIALS), encoded: isolated serials for the
    section's shared list subsection, and the block's range and bitmap subsections."""

    listed: bytes
    others: bytes


def encode_block(serials: list[int]) -> EncodedBlock:
    """Encode sorted, distinct, checked serials that all lie in one block.

    Clusters never cross a block boundary, so a block's bytes depend on its serials alone: a
    caller holding many serials re-encodes only the blocks that changed (`krl_from_blocks`),
    and gets the bytes `build_krl` gives for the same serials.
    """
    listed: list[int] = []
    others: list[bytes] = []  # ranges and bitmaps, in serial order
    for cluster in _clusters(_runs(serials)):
        kind, payload = _encode_cluster(cluster)
        if kind == CERT_SERIAL_LIST:
            listed += [s for lo, hi in cluster for s in range(lo, hi + 1)]
        else:
            others.append(_section(kind, payload))
    return EncodedBlock(b"".join(struct.pack(">Q", s) for s in listed), b"".join(others))


def krl_from_blocks(
    sections: Iterable[tuple[bytes, Iterable[EncodedBlock]]],
    *,
    generation: int,
    generated_at: datetime,
    comment: str = "",
) -> bytes:
    """A KRL from (CA key blob, its encoded blocks in block order), one section per CA key in
    byte order; CA keys must be checked and distinct (`build_krl` is the checked entry)."""
    out = bytearray(_header(generation, generated_at, comment))
    for ca_key, blocks in sorted(sections, key=lambda section: section[0]):
        encoded = list(blocks)
        listed = b"".join(block.listed for block in encoded)
        others = b"".join(block.others for block in encoded)
        if not listed and not others:
            continue
        body = _string(ca_key) + _string(b"")  # CA key, reserved
        # All isolated serials share one list subsection: one header instead of many.
        if listed:
            body += _section(CERT_SERIAL_LIST, listed)
        out += _section(SECTION_CERTIFICATES, body + others)
    return bytes(out)


def empty_krl(*, generation: int, generated_at: datetime, comment: str = "") -> bytes:
    """A valid KRL revoking nothing (sshd refuses every key when its RevokedKeys file is absent)."""
    return build_krl([], generation=generation, generated_at=generated_at, comment=comment)


def ca_key_blob(public_line: str) -> bytes:
    """The wire blob of a public key line (`TYPE BASE64 [comment]`), checked as a CA key."""
    parts = public_line.split()
    if len(parts) < 2:
        raise KrlError("not an OpenSSH public key line")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error as exc:
        raise KrlError("CA key: invalid base64") from exc
    check_ca_key_blob(blob)
    return blob


def check_ca_key_blob(blob: bytes) -> None:
    """Raise unless `blob` is a plain Ed25519/ECDSA/RSA public key in canonical wire form.

    sshd fails the whole KRL when a CA key does not parse, and would then refuse every login.
    """
    reader = _Reader(bytes(blob), "CA key")
    key_type = reader.string().decode("ascii", errors="replace")
    if key_type not in CA_KEY_TYPES:
        raise KrlError(f"CA key: type {key_type!r} is not a plain Ed25519, ECDSA or RSA key")
    line = f"{key_type} {base64.b64encode(blob).decode('ascii')}".encode("ascii")
    try:
        key = serialization.load_ssh_public_key(line)
    except (ValueError, TypeError) as exc:
        raise KrlError(f"CA key: malformed {key_type} key") from exc
    canonical = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    if base64.b64decode(canonical.split()[1]) != blob:
        raise KrlError(f"CA key: {key_type} key is not in canonical wire form")


def _check_serial(serial: int) -> int:
    if isinstance(serial, bool) or not isinstance(serial, int):
        raise KrlError(f"serial {serial!r} is not an integer")
    # OpenSSH treats serial 0 as "no serial" and refuses it in a KRL (the whole file fails).
    if not 1 <= serial <= MAX_U64:
        raise KrlError(f"serial {serial} is outside 1..2^64-1")
    return serial


def _header(generation: int, generated_at: datetime, comment: str) -> bytes:
    if isinstance(generation, bool) or not 0 <= generation <= MAX_U64:
        raise KrlError(f"generation {generation!r} is outside 0..2^64-1")
    if generated_at.tzinfo is None:
        raise KrlError("generated_at must be timezone-aware")
    timestamp = int(generated_at.timestamp())
    if timestamp < 0:
        raise KrlError("generated_at is before 1970")
    # OpenSSH reads the comment as a C string: no NUL; keep it printable for `ssh-keygen -Ql`.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in comment):
        raise KrlError("the comment must not contain control characters")
    return (
        MAGIC
        + struct.pack(">IQQQ", FORMAT_VERSION, generation, timestamp, 0)
        + _string(b"")  # reserved
        + _string(comment.encode("utf-8"))
    )


def _runs(serials: list[int]) -> list[tuple[int, int]]:
    """Sorted serials as maximal inclusive runs of consecutive values."""
    runs: list[tuple[int, int]] = []
    for serial in serials:
        if runs and serial == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], serial)
        else:
            runs.append((serial, serial))
    return runs


def _clusters(runs: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Group nearby runs that one bitmap holds cheaply; a long run stands alone (a range)."""
    clusters: list[list[tuple[int, int]]] = []
    for lo, hi in runs:
        if clusters and not _is_long(lo, hi) and not _is_long(*clusters[-1][-1]):
            first, last = clusters[-1][0][0], clusters[-1][-1][1]
            if lo - last - 1 <= MAX_CLUSTER_GAP and hi - first < MAX_BITMAP_BITS:
                clusters[-1].append((lo, hi))
                continue
        clusters.append([(lo, hi)])
    return clusters


def _is_long(lo: int, hi: int) -> bool:
    """A run whose bits would cost more than a range subsection."""
    return hi - lo + 1 > 8 * (_SUBSECTION + 2 * _U64)


def _encode_cluster(cluster: list[tuple[int, int]]) -> tuple[int, bytes]:
    """The cheapest subsection for one cluster: (type, payload); a list's payload is unused."""
    first, last = cluster[0][0], cluster[-1][1]
    count = sum(hi - lo + 1 for lo, hi in cluster)
    span = last - first + 1
    costs = {CERT_SERIAL_LIST: _U64 * count}
    if span <= MAX_BITMAP_BITS:
        costs[CERT_SERIAL_BITMAP] = _SUBSECTION + _U64 + _MPINT_LEN + span // 8 + 1
    if len(cluster) == 1:
        costs[CERT_SERIAL_RANGE] = _SUBSECTION + 2 * _U64
    kind = min(costs, key=lambda k: (costs[k], k))
    if kind == CERT_SERIAL_RANGE:
        return kind, struct.pack(">QQ", first, last)
    if kind == CERT_SERIAL_BITMAP:
        return kind, struct.pack(">Q", first) + _mpint(_bitmap(cluster, first, span))
    return kind, b""


def _bitmap(cluster: list[tuple[int, int]], offset: int, span: int) -> bytes:
    """Big-endian bytes of the integer whose bit N is set when serial offset+N is revoked."""
    bits = bytearray((span + 7) // 8)
    for lo, hi in cluster:
        for serial in range(lo, hi + 1):
            index = serial - offset
            bits[len(bits) - 1 - index // 8] |= 1 << (index % 8)
    return bytes(bits)


def _mpint(magnitude: bytes) -> bytes:
    """SSH mpint of a non-negative big-endian magnitude: minimal, 0x00-prefixed if high bit set."""
    magnitude = magnitude.lstrip(b"\0")
    if magnitude and magnitude[0] & 0x80:
        magnitude = b"\0" + magnitude
    return _string(magnitude)


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _section(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + _string(payload)


def parse_krl(data: bytes) -> ParsedKrl:
    """Parse a KRL as strictly as OpenSSH does (certificate sections only); raise `KrlError`."""
    if not data.startswith(MAGIC):
        raise KrlError("KRL: bad magic")
    reader = _Reader(data, "KRL")
    reader.take(len(MAGIC))
    if reader.u32() != FORMAT_VERSION:
        raise KrlError("KRL: unsupported format version")
    generation, generated_date, _flags = reader.u64(), reader.u64(), reader.u64()
    reader.string()  # reserved
    comment = reader.string()
    if b"\0" in comment:
        raise KrlError("KRL: NUL in comment")
    revoked: dict[bytes, set[tuple[int, int]]] = {}
    key_ids: dict[bytes, set[str]] = {}
    while not reader.done():
        kind, body = reader.u8(), reader.string()
        if kind != SECTION_CERTIFICATES:
            raise KrlError(f"KRL: unsupported section type {kind}")
        _parse_certificates(_Reader(body, "KRL section"), revoked, key_ids)
    return ParsedKrl(
        generation=generation,
        generated_date=generated_date,
        comment=comment.decode("utf-8", errors="replace"),
        revoked={ca: tuple(_merge(runs)) for ca, runs in revoked.items()},
        key_ids={ca: frozenset(ids) for ca, ids in key_ids.items()},
    )


def _parse_certificates(
    reader: _Reader, revoked: dict[bytes, set[tuple[int, int]]], key_ids: dict[bytes, set[str]]
) -> None:
    ca_key = reader.string()
    check_ca_key_blob(ca_key)
    reader.string()  # reserved
    runs = revoked.setdefault(ca_key, set())
    while not reader.done():
        kind, sub = reader.u8(), _Reader(reader.string(), "KRL subsection")
        if kind == CERT_SERIAL_LIST:
            while not sub.done():
                serial = _parsed_serial(sub.u64())
                runs.add((serial, serial))
        elif kind == CERT_SERIAL_RANGE:
            lo, hi = _parsed_serial(sub.u64()), sub.u64()
            if lo > hi:
                raise KrlError("KRL: serial range runs backwards")
            runs.add((lo, hi))
        elif kind == CERT_SERIAL_BITMAP:
            offset, value = sub.u64(), int.from_bytes(sub.mpint(), "big")
            if offset + value.bit_length() - 1 > MAX_U64:
                raise KrlError("KRL: bitmap wraps past 2^64")
            for index in range(value.bit_length()):
                if value >> index & 1:
                    serial = _parsed_serial(offset + index)
                    runs.add((serial, serial))
        elif kind == CERT_KEY_ID:
            while not sub.done():
                key_ids.setdefault(ca_key, set()).add(sub.string().decode("utf-8", "replace"))
        else:
            raise KrlError(f"KRL: unsupported certificate subsection type {kind:#x}")
        if not sub.done():
            raise KrlError("KRL: trailing bytes in a subsection")


def _parsed_serial(serial: int) -> int:
    if serial == 0:
        raise KrlError("KRL: serial 0 (OpenSSH refuses it)")
    return serial


def _merge(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(runs):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


class _Reader:
    """Bounds-checked reads of SSH wire types; every shortfall is a `KrlError`."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def done(self) -> bool:
        return self.pos == len(self.data)

    def take(self, count: int) -> bytes:
        if count > len(self.data) - self.pos:
            raise KrlError(f"{self.what}: truncated")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def string(self) -> bytes:
        return self.take(self.u32())

    def mpint(self) -> bytes:
        value = self.string()
        if value and value[0] & 0x80:
            raise KrlError(f"{self.what}: negative bitmap")
        # OpenSSH's limit, sign byte included (sshbuf_get_bignum2_bytes_direct).
        if len(value) > OPENSSH_MAX_BIGNUM_BYTES + (1 if value[:1] == b"\0" else 0):
            raise KrlError(f"{self.what}: bitmap larger than OpenSSH accepts")
        return value
