"""piu.sshwire against the real formats: keys from cryptography and ssh-keygen, certificates
signed by ssh-keygen, each read back and compared with what cryptography reads."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from piu import sshwire

KEYGEN = shutil.which("ssh-keygen")
needs_keygen = pytest.mark.skipif(KEYGEN is None, reason="ssh-keygen not installed")


def _openssh_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def _public_line(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return raw.decode("ascii")


def _keygen(*args: str) -> None:
    assert KEYGEN is not None
    subprocess.run([KEYGEN, "-q", *args], check=True, capture_output=True)


def _sign(tmp_path: Path, public_line: str, *extra: str) -> str:
    ca = tmp_path / "ca"
    if not ca.exists():
        _keygen("-t", "ed25519", "-N", "", "-f", str(ca))
    pub = tmp_path / "user.pub"
    pub.write_text(public_line + "\n")
    _keygen("-s", str(ca), "-I", "id", "-n", "alice", "-V", "+30m", "-z", "42", *extra, str(pub))
    return (tmp_path / "user-cert.pub").read_text().strip()


def test_private_key_from_cryptography_reads_back_the_same() -> None:
    key = Ed25519PrivateKey.generate()
    read = sshwire.read_private_key(_openssh_private(key))
    raw = serialization.Encoding.Raw
    assert read.public == key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    assert read.seed == key.private_bytes(
        raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert read.public_line("piu") == _public_line(key) + " piu"


@needs_keygen
def test_private_key_from_ssh_keygen_and_encrypted_or_other_keys(tmp_path: Path) -> None:
    _keygen("-t", "ed25519", "-N", "", "-C", "a comment", "-f", str(tmp_path / "plain"))
    read = sshwire.read_private_key((tmp_path / "plain").read_bytes())
    expected = (tmp_path / "plain.pub").read_text().split()[:2]
    assert read.public_line("x").split()[:2] == expected
    _keygen("-t", "ed25519", "-N", "secret-pass", "-f", str(tmp_path / "locked"))
    with pytest.raises(ValueError, match="encrypted"):
        sshwire.read_private_key((tmp_path / "locked").read_bytes())
    _keygen("-t", "ecdsa", "-N", "", "-f", str(tmp_path / "ecdsa"))
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        sshwire.read_private_key((tmp_path / "ecdsa").read_bytes())


def test_damaged_private_keys_are_refused() -> None:
    good = _openssh_private(Ed25519PrivateKey.generate())
    lines = good.decode().strip().splitlines()
    blob = base64.b64decode("".join(lines[1:-1]))

    def wrap(data: bytes) -> bytes:
        return f"{lines[0]}\n{base64.b64encode(data).decode()}\n{lines[-1]}\n".encode()

    for bad in (
        b"not a key",
        wrap(blob[:-9]),  # truncated
        wrap(blob + b"\0"),  # trailing data
        wrap(blob.replace(b"openssh-key-v1", b"openssh-key-v2")),
        wrap(blob[:-1] + bytes([blob[-1] ^ 0xFF])),  # padding
    ):
        with pytest.raises(ValueError):
            sshwire.read_private_key(bad)


@needs_keygen
def test_certificate_fields_match_ssh_keygen_and_cryptography(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    line = _sign(tmp_path, _public_line(key))
    cert = sshwire.read_certificate(line)
    theirs = serialization.load_ssh_public_identity(line.encode())
    assert isinstance(theirs, serialization.SSHCertificate)
    assert cert.kind == sshwire.ED25519_CERT
    assert cert.serial == theirs.serial == 42
    assert cert.cert_type == sshwire.USER_CERT
    assert (cert.valid_after, cert.valid_before) == (theirs.valid_after, theirs.valid_before)
    assert sshwire.Ed25519Key(cert.public, b"").public_line("").strip() == _public_line(key)


@needs_keygen
def test_host_plain_other_type_and_damaged_certificates(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    host = sshwire.read_certificate(_sign(tmp_path, _public_line(key), "-h"))
    assert host.cert_type == sshwire.HOST_CERT
    with pytest.raises(sshwire.NotACertificate):
        sshwire.read_certificate(_public_line(key))
    _keygen("-t", "ecdsa", "-N", "", "-f", str(tmp_path / "ecdsa"))
    ecdsa = _sign(tmp_path, (tmp_path / "ecdsa.pub").read_text().strip())
    with pytest.raises(sshwire.OtherKeyType):
        sshwire.read_certificate(ecdsa)
    kind, b64 = _sign(tmp_path, _public_line(key)).split()[:2]
    blob = base64.b64decode(b64)
    for bad in (
        "",
        "garbage",
        f"{kind} !!!notbase64",
        f"{kind} {base64.b64encode(blob[:-3]).decode()}",
        f"{kind} {base64.b64encode(blob + b'x').decode()}",
        f"unknown-type {b64}",
    ):
        with pytest.raises(ValueError):
            sshwire.read_certificate(bad)
