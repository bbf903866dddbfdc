"""even.krl: OpenSSH itself (`ssh-keygen -Q`) agrees with every KRL we write.

Certificates are signed with cryptography (as Even's CA does) with chosen serials, then checked
against our KRL by ssh-keygen in one call per KRL (it accepts many certificate files).
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from even.ca import CAPrivateKey
from even.krl import (
    CERT_SERIAL_BITMAP,
    CERT_SERIAL_LIST,
    CERT_SERIAL_RANGE,
    MAX_U64,
    KrlError,
    build_krl,
    ca_key_blob,
    empty_krl,
    parse_krl,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SSH_KEYGEN = shutil.which("ssh-keygen")

needs_keygen = pytest.mark.skipif(SSH_KEYGEN is None, reason="ssh-keygen (openssh-client) missing")


class Lab:
    """CA keys, one user key, and certificate files signed with chosen serials."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.user = ed25519.Ed25519PrivateKey.generate().public_key()
        self.cas: dict[str, CAPrivateKey] = {}
        self._count = 0

    def ca(self, name: str, key: CAPrivateKey | None = None) -> bytes:
        """The wire blob of CA `name` (created on first use; Ed25519 unless `key` is given)."""
        if name not in self.cas:
            self.cas[name] = key or ed25519.Ed25519PrivateKey.generate()
        line = (
            self.cas[name]
            .public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        )
        return ca_key_blob(line.decode("ascii"))

    def cert(self, ca: str, serial: int) -> Path:
        cert = (
            serialization.ssh.SSHCertificateBuilder()
            .public_key(self.user)
            .serial(serial)
            .type(serialization.ssh.SSHCertificateType.USER)
            .key_id(b"test")
            .valid_principals([b"piutest@host-1.even.test"])
            .valid_after(0)
            .valid_before(2**63)
            .sign(self.cas[ca])
        )
        self._count += 1
        path = self.tmp / f"c{self._count}-cert.pub"
        path.write_bytes(cert.public_bytes() + b"\n")
        return path

    def revoked(self, krl: bytes, checks: Sequence[tuple[str, int]]) -> dict[tuple[str, int], bool]:
        """ssh-keygen's verdict (True = REVOKED) for a certificate per (CA name, serial)."""
        krl_path = self.tmp / f"k{self._count}.krl"
        krl_path.write_bytes(krl)
        paths = {self.cert(ca, serial): (ca, serial) for ca, serial in checks}
        result = subprocess.run(
            [str(SSH_KEYGEN), "-Q", "-f", str(krl_path), *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        verdicts: dict[tuple[str, int], bool] = {}
        for line in result.stdout.splitlines():
            path, _, verdict = line.partition(" (")
            verdicts[paths[Path(path)]] = verdict.rsplit(": ", 1)[1] == "REVOKED"
        assert len(verdicts) == len(paths), result.stderr
        assert result.returncode == (1 if any(verdicts.values()) else 0), result.stderr
        return verdicts


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def _around(serials: Iterable[int]) -> set[int]:
    """Each serial and its neighbours: the boundaries an encoder gets wrong."""
    return {s + d for s in serials for d in (-1, 0, 1) if 1 <= s + d <= MAX_U64}


def _assert_agrees(lab: Lab, krl: bytes, revoked: dict[str, set[int]], sample: set[int]) -> None:
    checks = [(ca, serial) for ca in sorted(revoked) for serial in sorted(sample)]
    verdicts = lab.revoked(krl, checks)
    wrong = {k: v for k, v in verdicts.items() if v != (k[1] in revoked[k[0]])}
    assert not wrong, f"ssh-keygen disagrees on {sorted(wrong)[:10]}"
    parsed = parse_krl(krl)
    for ca, serial in checks:
        assert parsed.is_revoked(lab.ca(ca), serial) == (serial in revoked[ca])


def _subsection_types(krl: bytes) -> list[int]:
    """The certificate subsection types in a KRL, in order (a minimal walk for assertions)."""
    pos = 8 + 4 + 24
    for _ in range(2):  # reserved, comment
        pos += 4 + struct.unpack_from(">I", krl, pos)[0]
    types = []
    while pos < len(krl):
        (length,) = struct.unpack_from(">I", krl, pos + 1)
        section, pos = krl[pos + 5 : pos + 5 + length], pos + 5 + length
        inner = 0
        for _ in range(2):  # CA key, reserved
            inner += 4 + struct.unpack_from(">I", section, inner)[0]
        while inner < len(section):
            types.append(section[inner])
            inner += 5 + struct.unpack_from(">I", section, inner + 1)[0]
    return types


@needs_keygen
@pytest.mark.parametrize(
    "serials",
    [
        {1},
        {1, 2**53 - 1},
        {2**53 - 2, 2**53 - 1, 2**53, 2**53 + 1},
        {MAX_U64},
        {7, 9, 10, 11, 40},
    ],
    ids=["one", "two", "near-2^53", "max-u64", "small-cluster"],
)
def test_ssh_keygen_agrees_on_small_krls(lab: Lab, serials: set[int]) -> None:
    lab.ca("a")
    krl = build_krl([(lab.ca("a"), serials)], generation=5, generated_at=NOW)
    _assert_agrees(lab, krl, {"a": serials}, _around(serials) | {1, 2, 100})


@needs_keygen
def test_ssh_keygen_agrees_on_ten_thousand_serials(lab: Lab) -> None:
    rng = random.Random(5)
    run = set(range(50_000, 53_000))  # consecutive: a range
    dense = {s for s in range(100_000, 108_000) if rng.random() < 0.3}  # bitmaps
    sparse = {rng.randrange(1, 2**53) for _ in range(10_000 - len(run) - len(dense))}  # a list
    revoked = run | dense | sparse
    assert len(revoked) >= 9_990
    krl = build_krl([(lab.ca("a"), revoked)], generation=9, generated_at=NOW)
    # Every section type is exercised, and the encoding beats a plain list of 8-byte serials.
    assert set(_subsection_types(krl)) == {CERT_SERIAL_LIST, CERT_SERIAL_RANGE, CERT_SERIAL_BITMAP}
    assert len(krl) < 8 * len(sparse) + len(dense) // 2 + 2_000
    parsed = parse_krl(krl)
    assert parsed.serial_count() == len(revoked)
    blob = lab.ca("a")
    assert all(parsed.is_revoked(blob, s) for s in revoked)
    sample = _around([min(run), max(run), min(dense), max(dense), 1, 2**53 - 1])
    sample |= set(rng.sample(sorted(revoked), 150)) | set(rng.sample(range(100_000, 108_000), 100))
    sample |= {rng.randrange(1, 2**53) for _ in range(50)}
    _assert_agrees(lab, krl, {"a": revoked}, sample)


@needs_keygen
def test_several_ca_keys_in_one_krl(lab: Lab) -> None:
    lab.ca("ed", ed25519.Ed25519PrivateKey.generate())
    lab.ca("ec", ec.generate_private_key(ec.SECP256R1()))
    lab.ca("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    lab.ca("clean")
    revoked = {"ed": {1, 2, 3}, "ec": {2, 500}, "rsa": set(range(10, 400)), "clean": set()}
    krl = build_krl(
        [(lab.ca(name), serials) for name, serials in revoked.items()],
        generation=2,
        generated_at=NOW,
    )
    # The same serial is revoked for one CA and not for another.
    _assert_agrees(lab, krl, revoked, {1, 2, 3, 4, 9, 10, 399, 400, 500})


@needs_keygen
def test_empty_krl_revokes_nothing_and_ssh_keygen_reads_it(lab: Lab, tmp_path: Path) -> None:
    lab.ca("a")
    krl = empty_krl(generation=0, generated_at=NOW)
    assert lab.revoked(krl, [("a", 1), ("a", 2**53 - 1)]) == {
        ("a", 1): False,
        ("a", 2**53 - 1): False,
    }
    path = tmp_path / "empty.krl"
    path.write_bytes(krl)
    listing = subprocess.run(
        [str(SSH_KEYGEN), "-Q", "-l", "-f", str(path)], capture_output=True, text=True, check=True
    )
    assert "# KRL version 0" in listing.stdout


@needs_keygen
def test_parse_reads_krls_written_by_ssh_keygen(lab: Lab, tmp_path: Path) -> None:
    lab.ca("a")
    ca_pub = tmp_path / "ca.pub"
    ca_pub.write_bytes(
        lab.cas["a"]
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    spec = tmp_path / "spec"
    spec.write_text("serial: 5\nserial: 7-9\nserial: 1000-5000\nserial: 9007199254740991\n")
    krl_path = tmp_path / "theirs.krl"
    subprocess.run(
        [str(SSH_KEYGEN), "-q", "-k", "-f", str(krl_path), "-s", str(ca_pub), "-z", "4", str(spec)],
        check=True,
        capture_output=True,
    )
    parsed = parse_krl(krl_path.read_bytes())
    assert parsed.generation == 4
    assert parsed.revoked[lab.ca("a")] == ((5, 5), (7, 9), (1000, 5000), (2**53 - 1, 2**53 - 1))


def test_header_and_round_trip() -> None:
    ca = ca_key_blob(_ed25519_line())
    krl = build_krl([(ca, [3, 1, 2])], generation=17, generated_at=NOW, comment="even")
    assert krl.startswith(b"SSHKRL\n\0\0\0\0\x01")
    parsed = parse_krl(krl)
    assert (parsed.generation, parsed.generated_date, parsed.comment) == (
        17,
        int(NOW.timestamp()),
        "even",
    )
    assert parsed.revoked == {ca: ((1, 3),)}
    assert not parsed.is_revoked(ca, 0)
    assert not parsed.is_revoked(ca, 4)
    assert not parsed.is_revoked(b"other", 1)


def test_output_is_deterministic() -> None:
    a, b = ca_key_blob(_ed25519_line()), ca_key_blob(_ed25519_line())
    one = build_krl([(a, [5, 1, 9]), (b, [2])], generation=1, generated_at=NOW)
    two = build_krl([(b, {2}), (a, (9, 5)), (a, [1, 5]), (b, [])], generation=1, generated_at=NOW)
    assert one == two


def test_groups_without_serials_add_no_section() -> None:
    ca = ca_key_blob(_ed25519_line())
    assert build_krl([(ca, [])], generation=1, generated_at=NOW) == empty_krl(
        generation=1, generated_at=NOW
    )


@pytest.mark.parametrize("serial", [0, -1, 2**64, True, 1.0])
def test_refuses_serials_openssh_would_reject(serial: int) -> None:
    ca = ca_key_blob(_ed25519_line())
    with pytest.raises(KrlError):
        build_krl([(ca, [serial])], generation=1, generated_at=NOW)


def test_refuses_bad_ca_keys_generations_and_times() -> None:
    good = ca_key_blob(_ed25519_line())
    user = ed25519.Ed25519PrivateKey.generate()
    cert = (
        serialization.ssh.SSHCertificateBuilder()
        .public_key(user.public_key())
        .serial(1)
        .type(serialization.ssh.SSHCertificateType.USER)
        .key_id(b"x")
        .valid_principals([b"x"])
        .valid_after(0)
        .valid_before(10)
        .sign(ed25519.Ed25519PrivateKey.generate())
    )
    cert_blob = cert.public_bytes().split()[1]
    for blob in [b"", b"\0\0\0\x0bssh-ed25519", good + b"\0", good[:-1], _decode(cert_blob)]:
        with pytest.raises(KrlError):
            build_krl([(blob, [1])], generation=1, generated_at=NOW)
    for generation in [-1, 2**64]:
        with pytest.raises(KrlError):
            empty_krl(generation=generation, generated_at=NOW)
    with pytest.raises(KrlError):
        empty_krl(generation=1, generated_at=datetime(2025, 1, 1))  # naive
    with pytest.raises(KrlError):
        empty_krl(generation=1, generated_at=NOW, comment="a\0b")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda k: b"SSHKRX" + k[6:],
        lambda k: k[:8] + b"\0\0\0\x02" + k[12:],
        lambda k: k[:-1],
        lambda k: k + b"\x01",
        lambda k: k + b"\x09\0\0\0\0",
        lambda k: b"",
    ],
    ids=["magic", "version", "truncated", "trailing", "unknown-section", "empty"],
)
def test_parse_is_strict(mutate: object) -> None:
    ca = ca_key_blob(_ed25519_line())
    krl = build_krl([(ca, [1, 2, 3, 70])], generation=1, generated_at=NOW)
    assert callable(mutate)
    with pytest.raises(KrlError):
        parse_krl(mutate(krl))


def _ed25519_line() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def _decode(b64: bytes) -> bytes:
    import base64

    return base64.b64decode(b64)
