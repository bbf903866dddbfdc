"""The user CA (SPEC §4): loads CA keys and signs short-lived OpenSSH user certificates.

Critical options and extensions come only from the caller (the policy), never from the
client. Principals are never empty and never contain wildcards or commas.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from audit.ed25519_signer import Ed25519Signer
from even.errors import ConfigError, InvalidRequest
from even.sshcert import ed25519_user_certificate
from even.sshkeys import ParsedPublicKey

CAPrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
MAX_SERIAL = 2**53


@dataclass(frozen=True)
class CertificateRequest:
    public_key: ParsedPublicKey
    serial: int
    key_id: str
    principals: Sequence[str]
    valid_after: datetime
    valid_before: datetime
    extensions: Sequence[str] = ()
    critical_options: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True)
class CAKey:
    private_key: CAPrivateKey
    public_line: str

    @functools.cached_property
    def fingerprint(self) -> str:
        blob = base64.b64decode(self.public_line.split(" ")[1])
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")

    @functools.cached_property
    def ed25519_signer(self) -> Ed25519Signer | None:
        """The key's libsodium signer (the same signatures, less CPU), for Ed25519 keys."""
        key = self.private_key
        return Ed25519Signer(key) if isinstance(key, ed25519.Ed25519PrivateKey) else None

    @functools.cached_property
    def blob(self) -> bytes:
        return base64.b64decode(self.public_line.split(" ")[1])


def load_ca_key(path: Path) -> CAKey:
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read CA key {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not an unencrypted OpenSSH private key") from exc
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ):
        raise ConfigError(f"{path}: CA keys must be Ed25519, ECDSA or RSA")
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return CAKey(private_key=key, public_line=public.decode("ascii"))


def generate_ca_key_bytes() -> bytes:
    """A new Ed25519 CA key in OpenSSH private key format (for `even init`)."""
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def _check_principal(principal: str) -> None:
    # A comma splits principals in sshd's matching; `*`/`?` are patterns there; empty means any.
    if not principal or any(c in principal for c in ",*? \t\r\n\0"):
        raise InvalidRequest(f"refusing to sign principal {principal!r}")


class UserCA:
    """Signs with the active key; publishes every configured key."""

    def __init__(self, keys: Sequence[CAKey]) -> None:
        if not keys:
            raise ConfigError("at least one CA key is required")
        self.keys = list(keys)
        self.active = self.keys[0]

    def published_lines(self) -> str:
        return "".join(f"{key.public_line}\n" for key in self.keys)

    def is_ca_key(self, public_key: ParsedPublicKey) -> bool:
        return any(key.blob == public_key.blob for key in self.keys)

    def sign(self, request: CertificateRequest) -> str:
        """The certificate as one OpenSSH line (`TYPE-cert-v01@openssh.com BASE64`)."""
        if not request.principals:
            raise InvalidRequest("refusing to sign a certificate without principals")
        for principal in request.principals:
            _check_principal(principal)
        if not 1 <= request.serial < MAX_SERIAL:
            raise InvalidRequest("serial out of range")
        if self.is_ca_key(request.public_key):
            raise InvalidRequest("public_key: the CA's own key cannot be certified")
        signer = self.active.ed25519_signer
        if signer is not None:
            return self._sign_ed25519(request, signer)  # the same bytes, several times faster
        builder = (
            serialization.ssh.SSHCertificateBuilder()
            .public_key(request.public_key.key)
            .serial(request.serial)
            .type(serialization.ssh.SSHCertificateType.USER)
            .key_id(request.key_id.encode("ascii"))
            .valid_principals([p.encode("ascii") for p in request.principals])
            .valid_after(int(request.valid_after.timestamp()))
            .valid_before(int(request.valid_before.timestamp()))
        )
        for name, value in request.critical_options:
            builder = builder.add_critical_option(name.encode(), value.encode())
        for extension in request.extensions:
            builder = builder.add_extension(extension.encode(), b"")
        # cryptography signs RSA certificates with rsa-sha2-512, never SHA-1.
        cert = builder.sign(self.active.private_key)
        return cert.public_bytes().decode("ascii")

    def _sign_ed25519(self, request: CertificateRequest, signer: Ed25519Signer) -> str:
        return ed25519_user_certificate(
            ca_key=signer,
            ca_blob=self.active.blob,
            public_key_blob=request.public_key.blob,
            serial=request.serial,
            key_id=request.key_id.encode("ascii"),
            principals=[p.encode("ascii") for p in request.principals],
            valid_after=int(request.valid_after.timestamp()),
            valid_before=int(request.valid_before.timestamp()),
            critical_options=[(n.encode(), v.encode()) for n, v in request.critical_options],
            extensions=[e.encode() for e in request.extensions],
        )
