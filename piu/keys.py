"""piu's one SSH key pair, ~/.ssh/piu/id_ed25519 (0600, OpenSSH format) and its .pub.

Made with `cryptography` on first use and reused after that; the private key never leaves
this machine, only the public line is sent to Even. `cryptography` is imported inside the
functions: it is the heaviest import piu has, and most commands never need it.
Also checks that a certificate Even returns certifies this very key.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from piu.errors import BadResponse, KeyProblem
from piu.files import create_private, ensure_private_dir, write_private

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_COMMENT = "piu"


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    public_line: str  # "ssh-ed25519 AAAA… piu", what Even certifies


def ensure_key_pair(ssh_dir: Path) -> KeyPair:
    """Return the key pair under `ssh_dir`, creating it (and the 0700 dir) if missing."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not ssh_dir.parent.exists():  # ~/.ssh is the user's: create it like ssh would, else leave it
        ensure_private_dir(ssh_dir.parent)
    ensure_private_dir(ssh_dir)
    private_path, public_path = ssh_dir / "id_ed25519", ssh_dir / "id_ed25519.pub"
    if not private_path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        create_private(private_path, pem)  # False: a concurrent piu made one; use that
    public_line = _public_line(_load_private(private_path))
    try:
        current = public_path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        current = ""
    if current != public_line:  # missing, or not this key's: derive it again
        write_private(public_path, (public_line + "\n").encode("ascii"))
    return KeyPair(private_path, public_path, public_line)


def check_certificate(certificate: str, key: KeyPair) -> None:
    """Raise BadResponse unless `certificate` is an OpenSSH user certificate for `key`."""
    from cryptography.hazmat.primitives import serialization

    try:
        cert = serialization.load_ssh_public_identity(certificate.encode("ascii"))
    except (ValueError, UnicodeEncodeError, TypeError) as exc:
        raise BadResponse(f"Even returned an unreadable certificate: {exc}") from exc
    if not isinstance(cert, serialization.SSHCertificate):
        raise BadResponse("Even returned a public key where a certificate was expected")
    if cert.type != serialization.SSHCertificateType.USER:
        raise BadResponse("Even returned a host certificate where a user certificate was due")
    certified = cert.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    if certified.decode("ascii") != key.public_line.rsplit(" ", 1)[0]:
        raise BadResponse("Even returned a certificate for a different key than piu's")


def _load_private(path: Path) -> Ed25519PrivateKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise KeyProblem(f"{path} is not a regular file")
        if mode & 0o077:
            os.chmod(path, 0o600)  # ssh refuses a private key others can read
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise KeyProblem(f"cannot read {path}: {exc.strerror}") from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyProblem(
            f"cannot use {path}: {exc}",
            hint="piu needs an unencrypted Ed25519 key there; move the file away to get a new one",
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyProblem(
            f"{path} is not an Ed25519 key", hint="move it away and piu will make a new one"
        )
    return key


def _public_line(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{raw.decode('ascii')} {KEY_COMMENT}"
