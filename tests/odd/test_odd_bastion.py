"""A bastion's `odd principals` reads the certificate (%k) and opens exactly its one hop; the
bastion's sshd_config lines allow local forwarding only."""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from odd.bastion import bastion_lines, certificate_principals, check_glob
from odd.cli import main
from odd.errors import UsageError
from odd.sshd_config import render_sshd_config

BASTION = "bastion.example.org"
CA = ed25519.Ed25519PrivateKey.generate()


def _certificate(principals: list[str], *, key=None, user: bool = True) -> str:
    """A real certificate signed by `cryptography`, as sshd passes it in %k (base64)."""
    builder = (
        serialization.ssh.SSHCertificateBuilder()
        .public_key((key or ed25519.Ed25519PrivateKey.generate()).public_key())
        .serial(7)
        .type(
            serialization.ssh.SSHCertificateType.USER
            if user
            else serialization.ssh.SSHCertificateType.HOST
        )
        .key_id(b"even:req:alice:bastion")
        .valid_principals([p.encode() for p in principals])
        .valid_after(int((datetime.now(UTC) - timedelta(minutes=1)).timestamp()))
        .valid_before(int((datetime.now(UTC) + timedelta(minutes=30)).timestamp()))
        .add_critical_option(b"force-command", b"/usr/sbin/nologin")
        .add_extension(b"permit-port-forwarding", b"")
    )
    line = builder.sign(CA).public_bytes().decode()
    return line.split()[1]


def test_the_one_hop_is_printed() -> None:
    cert = _certificate([f"alice@{BASTION}/db-1.prod.example.org"])
    assert list(bastion_lines("alice", BASTION, ["*.prod.example.org"], cert)) == [
        'restrict,port-forwarding,permitopen="db-1.prod.example.org:22" '
        f"alice@{BASTION}/db-1.prod.example.org"
    ]


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        rsa.generate_private_key(65537, 2048),
    ],
    ids=["p256", "p384", "rsa"],
)
def test_every_certificate_key_type_is_read(key) -> None:
    principals = [f"alice@{BASTION}/db-1.prod.example.org", "x"]
    assert certificate_principals(_certificate(principals, key=key)) == principals


@pytest.mark.parametrize(
    "principal",
    [
        f"bob@{BASTION}/db-1.prod.example.org",  # another login than the one authenticating
        "alice@other.example.org/db-1.prod.example.org",  # another bastion
        f"alice@{BASTION}/db-1.staging.example.org",  # outside the globs
        f"alice@{BASTION}/DB-1.prod.example.org",  # not a valid hostname
        f"alice@{BASTION}/db-1.prod.example.org:2222",
        f'alice@{BASTION}/x.prod.example.org",permitlisten="*:80',
        f"alice@{BASTION}/db-1.prod.example.org extra",
        f"alice@{BASTION}/",
        f"alice@{BASTION}",  # the old, unconfined principal
        "alice",
    ],
)
def test_anything_else_prints_nothing(principal) -> None:
    cert = _certificate([principal])
    assert list(bastion_lines("alice", BASTION, ["*.prod.example.org"], cert)) == []


def test_garbage_and_non_user_certificates_print_nothing() -> None:
    host_cert = _certificate([f"alice@{BASTION}/db-1.prod.example.org"], user=False)
    plain = base64.b64encode(
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .split()[1]
    ).decode()
    good = _certificate([f"alice@{BASTION}/db-1.prod.example.org"])
    for blob in (host_cert, plain, "", "!!!", good[:40], good[:-8], "A" * 70000):
        assert list(bastion_lines("alice", BASTION, ["*"], blob)) == []


@pytest.mark.parametrize("glob", ["", "*.example.org.", "[a-z]*", "a/b", "x y", "A*", "*,x"])
def test_bad_globs_are_refused(glob) -> None:
    with pytest.raises(UsageError):
        check_glob(glob)


def test_cli_prints_the_lines_and_needs_the_key(capsys, tmp_path: Path) -> None:
    cert = _certificate([f"alice@{BASTION}/db-1.prod.example.org"])
    argv = ["principals", "--hostname", BASTION, "--bastion-for", "*.prod.example.org"]
    assert main([*argv, "--bastion-for", "x.example.org", "alice", cert]) == 0
    assert capsys.readouterr().out == (
        'restrict,port-forwarding,permitopen="db-1.prod.example.org:22" '
        f"alice@{BASTION}/db-1.prod.example.org\n"
    )
    assert main([*argv, "alice"]) == 2
    assert main(["principals", "--hostname", BASTION, "alice", cert]) == 2


def test_ssh_keygen_agrees_on_the_principals(tmp_path: Path) -> None:
    cert = _certificate([f"alice@{BASTION}/db-1.prod.example.org", "second"])
    path = tmp_path / "c-cert.pub"
    path.write_text(f"ssh-ed25519-cert-v01@openssh.com {cert}\n")
    shown = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(path)], capture_output=True, text=True, check=True
    ).stdout
    for principal in certificate_principals(cert):
        assert f"\n                {principal}\n" in shown


def test_bastion_sshd_config_lines() -> None:
    text = render_sshd_config(BASTION, bastion_for=["*.prod.example.org", "db-9.example.org"])
    directives = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert (
        "AuthorizedPrincipalsCommand /usr/local/libexec/odd-principals --hostname "
        f"{BASTION} --bastion-for *.prod.example.org --bastion-for db-9.example.org %u %k"
    ) in directives
    assert {
        "AllowTcpForwarding local",
        "PermitListen none",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "AllowStreamLocalForwarding no",
    } <= set(directives)
    assert sum(d.startswith("AuthorizedPrincipalsCommand ") for d in directives) == 1
    with pytest.raises(UsageError):
        render_sshd_config(BASTION, bastion_for=['x" %u'])
