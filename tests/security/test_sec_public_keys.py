"""Public keys: only one plain key of an accepted type, exactly as sent, is ever certified."""

from __future__ import annotations

import base64
import struct
import subprocess

import pytest


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _keygen(tmp_path, *args: str) -> str:
    path = tmp_path / f"k{len(list(tmp_path.iterdir()))}"
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-f", str(path), *args], check=True)
    return (path.with_name(path.name + ".pub")).read_text().strip()


def _assert_422(secure, public_key: str) -> None:
    response = secure.post(secure.body(public_key=public_key))
    assert response.status_code == 422, response.text
    secure.assert_nothing_issued()


def test_two_keys(secure) -> None:
    _assert_422(secure, f"{secure.user_key} {secure.user_key}")
    _assert_422(secure, f"{secure.user_key}\n{secure.user_key}")


@pytest.mark.parametrize(
    "prefix",
    [
        'command="/bin/sh"',
        'from="0.0.0.0/0"',
        'environment="LD_PRELOAD=/tmp/x"',
        "restrict,pty",
        "no-touch-required",
    ],
)
def test_options_prefix(secure, prefix) -> None:
    _assert_422(secure, f"{prefix} {secure.user_key}")


@pytest.mark.parametrize("junk", ["\r", "\n", "\x00", "\r\nssh-ed25519 AAAA", "\x1b[2J"])
def test_cr_lf_nul(secure, junk) -> None:
    _assert_422(secure, secure.user_key + junk)
    _assert_422(secure, secure.user_key.replace(" ", junk, 1))


def test_certificate_blob_as_key(secure, tmp_path) -> None:
    answer = secure.post(secure.body())
    assert answer.status_code == 201
    certificate = answer.json()["certificate"]
    _assert_rejected_after_grant(secure, certificate)
    # The certificate blob under a plain key label.
    _assert_rejected_after_grant(secure, "ssh-ed25519 " + certificate.split()[1])


def _assert_rejected_after_grant(secure, key: str) -> None:
    before = _grants(secure)
    response = secure.post(secure.body(public_key=key))
    assert response.status_code == 422, response.text
    assert _grants(secure) == before


def _grants(secure) -> int:
    from sqlalchemy import text

    with secure.components.engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM access_requests WHERE status='GRANTED'")
        ).scalar_one()


def test_type_label_not_matching_blob(secure, tmp_path) -> None:
    rsa = _keygen(tmp_path, "-t", "rsa", "-b", "3072")
    _assert_422(secure, "ssh-ed25519 " + rsa.split()[1])
    _assert_422(secure, "ecdsa-sha2-nistp256 " + secure.user_key.split()[1])


def test_truncated_or_trailing_bytes(secure) -> None:
    blob = base64.b64decode(secure.user_key.split()[1])
    for bad in (blob[:-1], blob[:10], blob + b"\x00", blob + _string(b"extra")):
        _assert_422(secure, "ssh-ed25519 " + base64.b64encode(bad).decode())


def test_rsa_below_2048_bits(secure, tmp_path) -> None:
    _assert_422(secure, _keygen(tmp_path, "-t", "rsa", "-b", "1024"))


def test_rsa_2048_is_accepted_as_control(secure, tmp_path) -> None:
    assert (
        secure.post(
            secure.body(public_key=_keygen(tmp_path, "-t", "rsa", "-b", "2048"))
        ).status_code
        == 201
    )


def test_ssh_dss(secure) -> None:
    fake = _string(b"ssh-dss") + b"".join(_string(b"\x01" * n) for n in (129, 21, 128, 128))
    _assert_422(secure, "ssh-dss " + base64.b64encode(fake).decode())


def test_the_cas_own_public_key(secure) -> None:
    _assert_422(secure, secure.components.ca_registry.configured_active.public_line)


@pytest.mark.parametrize(
    "junk", ["", "ssh-ed25519", "ssh-ed25519 !!!!", "ssh-ed25519 AAAA====", "x" * 20000]
)
def test_garbage(secure, junk) -> None:
    _assert_422(secure, junk)
