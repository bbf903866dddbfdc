"""even.sshcert writes exactly the certificate cryptography's builder writes (same nonce)."""

from __future__ import annotations

import base64
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import ssh

from audit.ed25519_signer import Ed25519Signer
from even.ca import CAKey, CertificateRequest, UserCA
from even.sshcert import ed25519_user_certificate
from even.sshkeys import parse_public_key

CA = ed25519.Ed25519PrivateKey.generate()
CA_LINE = CA.public_key().public_bytes(
    serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
)
CA_BLOB = base64.b64decode(CA_LINE.split()[1])

USER_KEYS = {
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
    "p256": ec.generate_private_key(ec.SECP256R1()),
    "p384": ec.generate_private_key(ec.SECP384R1()),
    "p521": ec.generate_private_key(ec.SECP521R1()),
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
}
OPTION_SETS = [
    ([], []),
    ([], ["permit-pty"]),
    ([("source-address", "10.0.0.0/8,192.0.2.1")], ["permit-pty", "permit-agent-forwarding"]),
    ([("force-command", "/usr/sbin/nologin")], ["permit-port-forwarding"]),
    ([("source-address", "10.1.2.3"), ("force-command", "id")], ["permit-X11-forwarding", "a"]),
]


def _line(private_key) -> str:
    public = private_key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode()


def _nonce(certificate_line: str) -> bytes:
    blob = base64.b64decode(certificate_line.split()[1])
    (type_length,) = struct.unpack_from(">I", blob)
    at = 4 + type_length
    (nonce_length,) = struct.unpack_from(">I", blob, at)
    return blob[at + 4 : at + 4 + nonce_length]


@pytest.mark.parametrize("signer", ["cryptography", "libsodium"])
@pytest.mark.parametrize("key_name", sorted(USER_KEYS))
@pytest.mark.parametrize(("options", "extensions"), OPTION_SETS)
def test_bytes_equal_the_builders(key_name, options, extensions, signer) -> None:
    parsed = parse_public_key(_line(USER_KEYS[key_name]))
    principals = [b"deploy", b"alice@db-1.prod"]
    builder = (
        ssh.SSHCertificateBuilder()
        .public_key(parsed.key)
        .serial(2**53 - 1)
        .type(ssh.SSHCertificateType.USER)
        .key_id(b"even:0f8a:alice")
        .valid_principals(principals)
        .valid_after(1_767_225_600)
        .valid_before(1_767_229_200)
    )
    for name, value in options:
        builder = builder.add_critical_option(name.encode(), value.encode())
    for extension in extensions:
        builder = builder.add_extension(extension.encode(), b"")
    expected = builder.sign(CA).public_bytes().decode()
    ours = ed25519_user_certificate(
        # UserCA signs through audit.ed25519_signer (libsodium): the same bytes either way.
        ca_key=CA if signer == "cryptography" else Ed25519Signer(CA),
        ca_blob=CA_BLOB,
        public_key_blob=parsed.blob,
        serial=2**53 - 1,
        key_id=b"even:0f8a:alice",
        principals=principals,
        valid_after=1_767_225_600,
        valid_before=1_767_229_200,
        critical_options=[(n.encode(), v.encode()) for n, v in options],
        extensions=[e.encode() for e in extensions],
        nonce=_nonce(expected),
    )
    assert ours == expected


def test_user_ca_signs_what_ssh_keygen_reads(tmp_path: Path) -> None:
    ca = UserCA([CAKey(private_key=CA, public_line=CA_LINE.decode())])
    now = datetime(2026, 3, 1, tzinfo=UTC)
    line = ca.sign(
        CertificateRequest(
            public_key=parse_public_key(_line(USER_KEYS["ed25519"])),
            serial=42,
            key_id="even:0f8a:alice",
            principals=["deploy"],
            valid_after=now,
            valid_before=now + timedelta(minutes=30),
            extensions=["permit-pty"],
            critical_options=[("source-address", "10.0.0.0/8")],
        )
    )
    certificate = ssh.load_ssh_public_identity(line.encode())
    assert isinstance(certificate, ssh.SSHCertificate)
    certificate.verify_cert_signature()
    assert (certificate.serial, certificate.key_id) == (42, b"even:0f8a:alice")
    path = tmp_path / "id-cert.pub"
    path.write_text(line + "\n")
    shown = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert 'Key ID: "even:0f8a:alice"' in shown and "Serial: 42" in shown
    assert "source-address 10.0.0.0/8" in shown and "permit-pty" in shown
