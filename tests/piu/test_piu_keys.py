"""`piu keys add FILE`: merge with what Even holds, never send a private key."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from piu_fakes import Piu, problem

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ5b3xbp2dFq8kTqYIYq1QWn1qZ0aRjE8sT4Q1wUO4k"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHEfEn0d570rXocgAT1Og4wSlYLWNstxs5DbwqyoXX4u"


def _keys_server(run: Piu, held: list[str]) -> list[list[str]]:
    """GET answers `held`; PUT stores and answers; returns the bodies PUT."""
    puts: list[list[str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/users/me/keys"
        if request.method == "PUT":
            keys = json.loads(request.content)["keys"]
            puts.append(keys)
            held[:] = [" ".join(k.split()[:2]) for k in keys]
        return httpx.Response(200, json={"keys": held})

    run.fake.queue += [handle] * 4
    return puts


def test_add_merges_with_the_registered_keys(run: Piu, tmp_path: Path) -> None:
    pub = tmp_path / "id_ed25519.pub"
    pub.write_text(KEY_B + " me@laptop\n")
    puts = _keys_server(run, [KEY_A])
    result = run("keys", "add", str(pub))
    assert result.exit_code == 0, result.output
    assert puts == [[KEY_A, KEY_B + " me@laptop"]]
    assert "registered ssh-ed25519 SHA256:" in result.stdout
    assert "2 keys registered with Even" in result.stdout
    again = run("keys", "add", str(pub))  # already there: nothing is replaced
    assert again.exit_code == 0 and len(puts) == 1


def test_a_private_key_is_refused_before_anything_is_sent(run: Piu, tmp_path: Path) -> None:
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n")
    result = run("keys", "add", str(private))
    assert result.exit_code == 2
    assert "private key" in result.stderr and "id_ed25519.pub" in result.stderr
    assert run.fake.requests == []


def test_a_file_without_a_key_line_is_a_usage_error(run: Piu, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pub"
    junk.write_text("hello\n")
    result = run("keys", "add", str(junk))
    assert result.exit_code == 2 and "not an OpenSSH public key" in result.stderr
    assert run.fake.requests == []


def test_even_refusing_the_key_is_reported(run: Piu, tmp_path: Path) -> None:
    pub = tmp_path / "k.pub"
    pub.write_text(KEY_A + "\n")
    run.fake.queue += [
        lambda r: httpx.Response(200, json={"keys": []}),
        lambda r: problem(422, "invalid_request", "keys[0]: RSA keys need at least 2048 bits"),
    ]
    result = run("keys", "add", str(pub))
    assert result.exit_code == 1 and "2048 bits" in result.stderr
