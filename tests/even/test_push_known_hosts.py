"""push.known_hosts: exact-name pinning (hashed names too), nothing vouched for by a pattern."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from even.push.known_hosts import KnownHostsError, KnownHostsFile, lookup_name, parse_known_hosts

ED25519_B64 = "AAAAC3NzaC1lZDI1NTE5AAAAIGJ5b3xbp2dFq8kTqYIYq1QWn1qZ0aRjE8sT4Q1wUO4k"


def _key() -> tuple[str, bytes]:
    line = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    key_type, data = line.split()
    return f"{key_type} {data}", base64.b64decode(data)


def _hashed(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def test_only_the_exact_name_is_pinned() -> None:
    (a, blob_a), (b, blob_b), (c, _) = _key(), _key(), _key()
    text = "\n".join(
        [
            "# comment",
            f"bastion.even.test,10.79.2.2 {a}",
            f"[bastion.even.test]:2222 {b} a comment",
            f"*.even.test {c}",  # a pattern pins nothing
            f"!evil.even.test,target?.even.test {c}",
            "",
        ]
    )
    pins = parse_known_hosts(text)
    assert [k.blob for k in pins.keys_for("bastion.even.test")] == [blob_a]
    assert [k.blob for k in pins.keys_for("BASTION.even.test")] == [blob_a]
    assert [k.blob for k in pins.keys_for("10.79.2.2")] == [blob_a]
    assert [k.blob for k in pins.keys_for(lookup_name("bastion.even.test", 2222))] == [blob_b]
    assert pins.keys_for("target.even.test") == []
    assert pins.keys_for("other.even.test") == []
    assert pins.keys_for("even.test") == []


def test_hashed_names_match_like_openssh() -> None:
    (a, blob_a) = _key()
    pins = parse_known_hosts(f"{_hashed('target.even.test')} {a}\n")
    assert [k.blob for k in pins.keys_for("target.even.test")] == [blob_a]
    assert pins.keys_for("target2.even.test") == []


def test_revoked_keys_are_never_pinned_and_ca_lines_are_ignored() -> None:
    (a, _), (b, blob_b) = _key(), _key()
    pins = parse_known_hosts(
        f"host.even.test {a}\nhost.even.test {b}\n@revoked * {a}\n@cert-authority * {b}\n"
    )
    assert [k.blob for k in pins.keys_for("host.even.test")] == [blob_b]
    assert pins.keys_for("other.even.test") == []  # the CA line vouches for nobody


@pytest.mark.parametrize(
    "line",
    [
        "host.even.test ssh-ed25519",
        "host.even.test ssh-ed25519 !!!notbase64",
        f"host.even.test ssh-rsa {ED25519_B64}",  # the type label lies
        "@trusted host.even.test ssh-ed25519 AAAA",
        f"|1|bad host ssh-ed25519 {ED25519_B64}",
    ],
)
def test_a_malformed_line_makes_the_file_unusable(line: str) -> None:
    # A typo must not silently unpin (or mis-pin) a host: the whole file is refused.
    with pytest.raises(KnownHostsError, match="line 2"):
        parse_known_hosts(f"# first\n{line}\n")


def test_the_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    (a, blob_a), (b, blob_b) = _key(), _key()
    path = tmp_path / "known_hosts"
    pins = KnownHostsFile(path)
    assert pins.current().keys_for("host.even.test") == []  # no file: nothing is trusted
    path.write_text(f"host.even.test {a}\n")
    assert [k.blob for k in pins.current().keys_for("host.even.test")] == [blob_a]
    path.write_text(f"host.even.test {b}\nother.even.test {a}\n")
    assert [k.blob for k in pins.current().keys_for("host.even.test")] == [blob_b]
