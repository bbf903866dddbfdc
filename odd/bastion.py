"""What a bastion lets a certificate open (SPEC §4, §6 "Bastions"); stdlib only, no I/O.

Even's bastion certificate carries one principal, `<username>@<bastion>/<target>`. On a bastion,
sshd runs `odd principals --hostname NAME --bastion-for GLOB… %u %k`; odd reads the principals
out of the certificate (`%k`, base64) and prints, for each `USER@NAME/TARGET` whose USER is the
login, whose NAME is this bastion and whose TARGET is a valid hostname matching a GLOB:

    restrict,port-forwarding,permitopen="TARGET:22" USER@NAME/TARGET

so plain OpenSSH confines the login to one `direct-tcpip` channel to TARGET:22 (no shell: the
certificate forces /usr/sbin/nologin; no `-R`: the bastion's sshd_config allows only local
forwarding). Invariants: a line is printed only for a principal that passed every check, and
the options come only from this module, never from the certificate; anything malformed prints
nothing (deny). sshd has verified the certificate's signature and CA before it runs the command,
and itself matches the printed principal against the certificate.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import re
from collections.abc import Iterator, Sequence

from odd.errors import UsageError
from odd.names import check_host_identity, check_hostname, check_login
from odd.sshkey import InvalidKey, _Reader

SSH_PORT = 22
BASTION_OPTIONS = 'restrict,port-forwarding,permitopen="{target}:22"'
# A glob over hostnames: the hostname alphabet plus `*` and `?` (no `[...]` classes, no `/`).
_GLOB_RE = re.compile(r"[a-z0-9*?](?:[a-z0-9.*?-]{0,252})")
MAX_CERT_BASE64 = 64 * 1024
# The public-key fields that sit between the nonce and the serial, per certificate type
# (OpenSSH PROTOCOL.certkeys): the number of strings/mpints to skip.
_KEY_FIELDS = {
    "ssh-ed25519-cert-v01@openssh.com": 1,
    "ssh-rsa-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp256-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp384-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp521-cert-v01@openssh.com": 2,
    "sk-ssh-ed25519-cert-v01@openssh.com": 2,
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com": 3,
}
_USER_CERT = 1


class InvalidGlob(UsageError):
    """A --bastion-for pattern is not a hostname glob."""


def check_glob(pattern: str) -> str:
    """Return `pattern` if it is a hostname glob (letters, digits, `.-*?`), else raise."""
    if _GLOB_RE.fullmatch(pattern) is None or pattern.endswith("."):
        raise InvalidGlob(
            f"--bastion-for {pattern!r} must be a hostname pattern of a-z 0-9 . - * ? "
            "(e.g. *.prod.example.com)"
        )
    return pattern


def certificate_principals(blob_base64: str) -> list[str]:
    """The valid principals of a user certificate given as base64 (sshd's %k); [] if it is
    not a user certificate this module can read (a plain key, or anything malformed)."""
    if len(blob_base64) > MAX_CERT_BASE64:
        return []
    try:
        blob = base64.b64decode(blob_base64, validate=True)
        reader = _Reader(blob)
        cert_type = reader.string().decode("ascii")
        fields = _KEY_FIELDS.get(cert_type)
        if fields is None:
            return []
        reader.string()  # nonce
        for _ in range(fields):
            reader.string()
        reader.take(8)  # serial
        if int.from_bytes(reader.take(4), "big") != _USER_CERT:
            return []
        reader.string()  # key id
        packed = _Reader(reader.string())
        principals = []
        while not packed.at_end():
            principals.append(packed.string().decode("utf-8"))
        reader.take(16)  # valid_after, valid_before
        for _ in range(5):  # critical options, extensions, reserved, signature key, signature
            reader.string()
        # The whole blob, or nothing: a truncated or padded certificate is not one sshd made.
        return principals if reader.at_end() else []
    except (binascii.Error, ValueError, InvalidKey):
        return []


def bastion_lines(
    login: str, hostname: str, globs: Sequence[str], certificate_base64: str
) -> Iterator[str]:
    """The principals lines for `login` on bastion `hostname` (see the module docstring)."""
    check_login(login)
    check_host_identity(hostname)
    patterns = [check_glob(g) for g in globs]
    prefix = f"{login}@{hostname}/"
    for principal in certificate_principals(certificate_base64):
        if not principal.startswith(prefix):
            continue
        target = principal[len(prefix) :]
        try:
            check_hostname(target)
        except UsageError:
            continue
        if any(fnmatch.fnmatchcase(target, pattern) for pattern in patterns):
            yield f"{BASTION_OPTIONS.format(target=target)} {principal}"
