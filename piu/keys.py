"""piu's one SSH key pair, ~/.ssh/piu/id_ed25519 (0600, OpenSSH format) and its .pub.

Made with `cryptography` on first use and reused after that; the private key never leaves
this machine, only the public line is sent to Even. `cryptography` is imported only to make
the key: it is the heaviest import piu has, so an existing key file and Even's certificates
are read with piu.sshwire (the standard library) instead.
Also checks that a certificate Even returns certifies this very key.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from piu import sshwire
from piu.errors import BadResponse, KeyProblem
from piu.files import create_private, ensure_private_dir, write_private
from piu.held import KEY_COMMENT

if TYPE_CHECKING:
    from piu.sshwire import Ed25519Key


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    public_line: str  # "ssh-ed25519 AAAA… piu", what Even certifies


def ensure_key_pair(ssh_dir: Path) -> KeyPair:
    """Return the key pair under `ssh_dir`, creating it (and the 0700 dir) if missing."""
    if not ssh_dir.parent.exists():  # ~/.ssh is the user's: create it like ssh would, else leave it
        ensure_private_dir(ssh_dir.parent)
    ensure_private_dir(ssh_dir)
    private_path, public_path = ssh_dir / "id_ed25519", ssh_dir / "id_ed25519.pub"
    if not private_path.exists():
        create_private(private_path, _new_private_key())  # False: a concurrent piu made one
    public_line = _load_private(private_path).public_line(KEY_COMMENT)
    try:
        current = public_path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        current = ""
    if current != public_line:  # missing, or not this key's: derive it again
        write_private(public_path, (public_line + "\n").encode("ascii"))
    return KeyPair(private_path, public_path, public_line)


def check_certificate(certificate: str, key: KeyPair) -> None:
    """Raise BadResponse unless `certificate` is an OpenSSH user certificate for `key`."""
    try:
        cert = sshwire.read_certificate(certificate)
    except sshwire.NotACertificate as exc:
        raise BadResponse("Even returned a public key where a certificate was expected") from exc
    except sshwire.OtherKeyType as exc:
        raise BadResponse("Even returned a certificate for a different key than piu's") from exc
    except ValueError as exc:
        raise BadResponse(f"Even returned an unreadable certificate: {exc}") from exc
    if cert.cert_type != sshwire.USER_CERT:
        raise BadResponse("Even returned a host certificate where a user certificate was due")
    certified = sshwire.Ed25519Key(cert.public, b"").public_line("").rstrip()
    if certified != key.public_line.rsplit(" ", 1)[0]:
        raise BadResponse("Even returned a certificate for a different key than piu's")


def _new_private_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def _load_private(path: Path) -> Ed25519Key:
    """The key in `path` (fixing a too-open mode), or KeyProblem saying what is wrong."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise KeyProblem(f"{path} is not a regular file")
        if mode & 0o077:
            os.chmod(path, 0o600)  # ssh refuses a private key others can read
        data = path.read_bytes()
    except OSError as exc:
        raise KeyProblem(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return sshwire.read_private_key(data)
    except ValueError as exc:
        hint = "piu needs an unencrypted Ed25519 key there; move the file away to get a new one"
        if "not an Ed25519 key" in str(exc):
            raise KeyProblem(
                f"{path} is not an Ed25519 key", hint="move it away and piu will make a new one"
            ) from exc
        raise KeyProblem(f"cannot use {path}: {exc}", hint=hint) from exc
