"""piu request-access end to end against the fake Even: body, files, output, --connect."""

from __future__ import annotations

import json
import stat

from piu_fakes import RECEIPT, REQUEST_ID, Piu

HOST = "db-1.prod.example.org"


def mode_of(path: object) -> int:
    from pathlib import Path

    return stat.S_IMODE(Path(str(path)).stat().st_mode)


def test_shorthand_host_reason_posts_joined_reason_and_public_key(run: Piu) -> None:
    result = run(HOST, "debug", "INC-123")
    assert result.exit_code == 0, result.output
    body = run.fake.posted()
    public_line = (run.ssh_dir / "id_ed25519.pub").read_text().strip()
    assert body == {
        "hostname": HOST,
        "reason": "debug INC-123",
        "mode": "certificate",
        "public_key": public_line,
    }
    request = run.fake.requests[-1]
    assert request.url == "https://even.example.com/v1/access-requests"
    assert request.headers["Authorization"].startswith("Bearer ")
    assert request.headers["Idempotency-Key"]


def test_explicit_command_with_login_lifetime_bastion_and_mode(run: Piu) -> None:
    result = run("request-access", f"deploy@{HOST}", "fix INC-9", "-t", "15", "-O", "odd-eu")
    assert result.exit_code == 0, result.output
    body = run.fake.posted()
    assert body["login"] == "deploy"
    assert body["hostname"] == HOST
    assert body["lifetime_minutes"] == 15
    assert body["bastion"] == "odd-eu"


def test_shorthand_with_login(run: Piu) -> None:
    assert run(f"deploy@{HOST}", "INC-1 restart").exit_code == 0
    assert run.fake.posted()["login"] == "deploy"


def test_classic_remote_form(run: Piu) -> None:
    result = run("request-access", "odd-eu", "debug INC-123", "--remote", HOST)
    assert result.exit_code == 0, result.output
    body = run.fake.posted()
    assert (body["hostname"], body["bastion"]) == (HOST, "odd-eu")
    assert "login" not in body
    bastion_cert = run.ssh_dir / f"odd-eu-{REQUEST_ID}-cert.pub"
    assert mode_of(bastion_cert) == 0o600
    # The jump carries its own key and certificate, in a ProxyCommand (ssh -J would not).
    assert f"CertificateFile={bastion_cert}" in result.stdout
    assert "-W %h:%p alice@odd-eu" in result.stdout


def test_key_pair_created_private_and_reused(run: Piu) -> None:
    assert run(HOST, "INC-1 debug").exit_code == 0
    private, public = run.ssh_dir / "id_ed25519", run.ssh_dir / "id_ed25519.pub"
    assert mode_of(run.ssh_dir) == 0o700
    assert mode_of(private) == 0o600
    assert private.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert public.read_text().startswith("ssh-ed25519 ")
    first_private, first_public = private.read_bytes(), run.fake.posted()["public_key"]

    assert run(HOST, "INC-2 again").exit_code == 0
    assert private.read_bytes() == first_private
    assert run.fake.posted()["public_key"] == first_public


def test_certificate_file_and_receipt(run: Piu) -> None:
    result = run(HOST, "debug INC-123")
    assert result.exit_code == 0, result.output
    cert = run.ssh_dir / f"{HOST}-{REQUEST_ID}-cert.pub"
    assert mode_of(cert) == 0o600
    assert cert.read_text().startswith("ssh-ed25519-cert-v01@openssh.com ")
    assert not list(run.ssh_dir.glob(".piu-*"))  # no temporary files left behind
    receipts = run.home / "state" / "piu" / "receipts.jsonl"
    assert [json.loads(line) for line in receipts.read_text().splitlines()] == [RECEIPT]
    assert run(HOST, "debug INC-124").exit_code == 0
    assert len(receipts.read_text().split("\n")) == 3  # two lines, newline-terminated


def test_text_output_has_the_ssh_command(run: Piu) -> None:
    result = run(HOST, "debug INC-123")
    key = run.ssh_dir / "id_ed25519"
    cert = run.ssh_dir / f"{HOST}-{REQUEST_ID}-cert.pub"
    expected = f"ssh -i {key} -o CertificateFile={cert} -o IdentitiesOnly=yes alice@{HOST}"
    assert result.stdout.rstrip().splitlines()[-1].strip() == expected
    assert "serial 42" in result.stdout


def test_json_output_is_the_answer_plus_file_paths(run: Piu) -> None:
    result = run(HOST, "debug INC-123", "-o", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["id"] == REQUEST_ID
    assert out["receipt"] == RECEIPT
    assert out["identity_file"] == str(run.ssh_dir / "id_ed25519")
    assert out["certificate_file"] == str(run.ssh_dir / f"{HOST}-{REQUEST_ID}-cert.pub")
    assert out["bastion_certificate_file"] is None
    assert out["ssh_command"] == f"ssh alice@{HOST}"


def test_connect_execs_ssh_with_an_argv_list(run: Piu) -> None:
    result = run(HOST, "debug INC-123", "--connect")
    assert result.exit_code == 0, result.output
    [(file, argv)] = run.execs
    assert file == "ssh"
    assert argv[0] == "ssh" and argv[-1] == f"alice@{HOST}"
    assert "-i" in argv and "IdentitiesOnly=yes" in argv
    assert result.stdout == ""  # the summary went to stderr; stdout belongs to the session


def test_certificate_for_another_key_is_refused_and_not_written(run: Piu) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    original = run.fake.grant
    run.fake.grant = lambda body: original({**body, "public_key": other})  # type: ignore[method-assign]
    result = run(HOST, "debug INC-123")
    assert result.exit_code == 1
    assert "different key" in result.stderr
    assert not list(run.ssh_dir.glob("*-cert.pub"))


def test_hostile_login_in_answer_is_refused(run: Piu) -> None:
    original = run.fake.grant
    run.fake.grant = lambda body: {**original(body), "login": "-oProxyCommand=sh"}  # type: ignore[method-assign]
    result = run(HOST, "debug INC-123")
    assert result.exit_code == 1
    assert "invalid 'login'" in result.stderr


def test_push_mode_has_no_certificate(run: Piu) -> None:
    original = run.fake.grant
    run.fake.grant = lambda body: {**original(body), "certificate": None, "serial": None}  # type: ignore[method-assign]
    result = run(HOST, "debug INC-1", "--mode", "push", "-o", "json")
    assert result.exit_code == 0, result.output
    assert run.fake.posted()["mode"] == "push"
    assert json.loads(result.stdout)["certificate_file"] is None
    assert not list(run.ssh_dir.glob("*-cert.pub"))


def test_missing_bastion_certificate_is_refused_before_writing(run: Piu) -> None:
    original = run.fake.grant
    run.fake.grant = lambda body: {**original(body), "bastion_certificate": None}  # type: ignore[method-assign]
    result = run(HOST, "debug INC-1", "-O", "odd-eu")
    assert result.exit_code == 1
    assert not list(run.ssh_dir.glob("*-cert.pub"))
    assert not (run.home / "state" / "piu" / "receipts.jsonl").exists()


def test_bastion_defaults_from_config_file(run: Piu) -> None:
    config = run.home / "config" / "piu" / "piu.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("bastion: odd-file\n")
    assert run(HOST, "debug INC-1").exit_code == 0
    assert run.fake.posted()["bastion"] == "odd-file"
    assert run(HOST, "debug INC-1", "-O", "odd-flag").exit_code == 0
    assert run.fake.posted()["bastion"] == "odd-flag"
