"""piu ssh (reuse or request, then exec), --tunnel, --clip, the reason prompt, agent warnings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from piu_fakes import REQUEST_ID, Piu

from piu.cli import cli as cli_group
from piu.runtime import Runtime

HOST = "db-1.prod.example.org"


def posts(run: Piu) -> int:
    return sum(1 for r in run.fake.requests if r.method == "POST")


def test_ssh_requests_then_execs_ssh_with_argv(run: Piu) -> None:
    result = run("ssh", f"deploy@{HOST}", "--reason", "INC-1 debug", "--", "hostname", "-f")
    assert result.exit_code == 0, result.output
    assert run.fake.posted()["login"] == "deploy"
    [(file, argv)] = run.execs
    key, cert = run.ssh_dir / "id_ed25519", run.ssh_dir / f"{HOST}-{REQUEST_ID}-cert.pub"
    assert file == "ssh"
    assert argv == [
        "ssh",
        "-i",
        str(key),
        "-o",
        f"CertificateFile={cert}",
        "-o",
        "IdentitiesOnly=yes",
        f"deploy@{HOST}",
        "hostname",
        "-f",
    ]
    assert f"granted {REQUEST_ID}" in result.stderr


def test_ssh_reuses_a_valid_certificate_without_a_second_request(run: Piu) -> None:
    assert run("ssh", HOST, "-r", "INC-1 debug").exit_code == 0
    assert posts(run) == 1
    result = run("ssh", HOST, "--", "uptime")
    assert result.exit_code == 0, result.output
    assert posts(run) == 1  # no second grant
    assert f"using grant {REQUEST_ID}" in result.stderr
    first, second = run.execs[0][1], run.execs[1][1]
    assert second == [*first, "uptime"]


def test_ssh_reuse_needs_no_token(run: Piu, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("ssh", HOST, "-r", "INC-1 debug").exit_code == 0
    monkeypatch.delenv("PIU_TOKEN")
    assert run("ssh", HOST).exit_code == 0
    assert len(run.execs) == 2


def test_ssh_does_not_reuse_for_another_login_or_bastion_or_with_new(run: Piu) -> None:
    assert run("ssh", HOST, "-r", "INC-1 debug").exit_code == 0
    assert run("ssh", f"deploy@{HOST}", "-r", "INC-2 debug").exit_code == 0
    assert posts(run) == 2
    assert run("ssh", HOST, "-O", "odd-eu", "-r", "INC-3 debug").exit_code == 0
    assert posts(run) == 3
    assert run("ssh", HOST, "--new", "-r", "INC-4 debug").exit_code == 0
    assert posts(run) == 4


def test_ssh_does_not_reuse_an_expiring_certificate(run: Piu) -> None:
    assert run("ssh", HOST, "-r", "INC-1 debug").exit_code == 0
    run.now = __import__("time").time() + 3600 - 30  # 30 s left: less than the margin
    assert run("ssh", HOST, "-r", "INC-2 debug").exit_code == 0
    assert posts(run) == 2


def test_ssh_does_not_trust_an_edited_index(run: Piu) -> None:
    assert run("ssh", HOST, "-r", "INC-1 debug").exit_code == 0
    index = run.home / "state" / "piu" / "grants.json"
    data = json.loads(index.read_text())
    cert = Path(data["grants"][0]["certificate_file"])
    cert.write_text(cert.read_text().replace("AAAA", "BBBB", 1))
    assert run("ssh", HOST, "-r", "INC-2 debug").exit_code == 0
    assert posts(run) == 2


def test_ssh_through_the_rules_bastion(run: Piu) -> None:
    assert run("ssh", HOST, "-O", "odd-eu", "-r", "INC-1 debug").exit_code == 0
    assert run("ssh", HOST).exit_code == 0  # no bastion asked for: the held one is fine
    assert posts(run) == 1
    argv = run.execs[-1][1]
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    assert f"odd-eu-{REQUEST_ID}-cert.pub" in proxy
    assert proxy.endswith("-W %h:%p alice@odd-eu")


def test_ssh_without_reason_and_without_terminal_is_2(run: Piu) -> None:
    result = run("ssh", HOST)
    assert result.exit_code == 2
    assert "a reason is required" in result.output
    assert run.fake.requests == []


def test_reason_is_asked_for_in_a_terminal(run: Piu) -> None:
    run.tty_in = True
    result = run("ssh", HOST, input="INC-7 restart\n")
    assert result.exit_code == 0, result.output
    assert run.fake.posted()["reason"] == "INC-7 restart"
    result = run("request-access", HOST, input="INC-8 look\n")
    assert result.exit_code == 0, result.output
    assert run.fake.posted()["reason"] == "INC-8 look"


def test_tunnel_adds_a_loopback_forward_and_no_command(run: Piu) -> None:
    result = run("request-access", HOST, "INC-1 db", "--tunnel", "15432:5432", "--connect")
    assert result.exit_code == 0, result.output
    argv = run.execs[0][1]
    assert argv[-4:] == ["-N", "-L", "127.0.0.1:15432:localhost:5432", f"alice@{HOST}"]


@pytest.mark.parametrize("spec", ["15432", "0:5432", "1:70000", "a:b", "1:2:3", "15432:5432\n"])
def test_bad_tunnel_is_2(run: Piu, spec: str) -> None:
    result = run("request-access", HOST, "INC-1 db", "--tunnel", spec)
    assert result.exit_code == 2
    assert run.fake.requests == []


def test_clip_copies_the_command(run: Piu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, copied = tmp_path / "bin", tmp_path / "copied"
    bin_dir.mkdir()
    tool = bin_dir / "xclip"
    tool.write_text(f"#!/bin/sh\nexec /bin/cat > {copied}\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    result = run(HOST, "INC-1 debug", "--clip")
    assert result.exit_code == 0, result.output
    assert "copied to the clipboard (xclip)" in result.stderr
    assert copied.read_text() == result.stdout.rstrip().splitlines()[-1].strip()


def test_clip_without_a_tool_warns(
    run: Piu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = run(HOST, "INC-1 debug", "--clip")
    assert result.exit_code == 0
    assert "warning: no clipboard tool found" in result.stderr


def test_unreachable_agent_is_a_warning_not_a_failure(
    run: Piu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "no-agent.sock"))
    result = run(HOST, "INC-1 debug")
    assert result.exit_code == 0, result.output
    assert "warning: not added to ssh-agent" in result.stderr
    assert "Connect with:" in result.stdout
    result = run(HOST, "INC-1 debug", "--no-agent")
    assert "ssh-agent" not in result.stderr


def test_expired_grants_are_pruned_with_their_files(run: Piu) -> None:
    assert run("ssh", HOST, "-r", "INC-1 debug").exit_code == 0
    index = run.home / "state" / "piu" / "grants.json"
    data = json.loads(index.read_text())
    old_cert = run.ssh_dir / f"{HOST}-older-cert.pub"
    old_cert.write_text("expired")
    outside = run.home / "not-piu-cert.pub"
    outside.write_text("the user's")
    for name, path in (("older", old_cert), ("odd", outside)):
        entry = {**data["grants"][0], "id": name, "certificate_file": str(path)}
        data["grants"].append({**entry, "valid_before": 1})  # long gone
    index.write_text(json.dumps(data))
    assert run("ssh", f"deploy@{HOST}", "-r", "INC-2 debug").exit_code == 0
    ids = [g["id"] for g in json.loads(index.read_text())["grants"]]
    assert ids == [REQUEST_ID]
    assert not old_cert.exists()
    assert outside.exists()  # piu deletes only in its own directory
    assert (run.ssh_dir / f"{HOST}-{REQUEST_ID}-cert.pub").exists()


# piu.launch: the held-grant path taken before click is imported


@pytest.mark.parametrize("tier", ["cheap", "general"])
def test_launch_execs_what_the_cli_execs_for_a_held_grant(
    run: Piu, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tier: str
) -> None:
    import time

    from piu import held, launch

    assert run("ssh", HOST, "-r", "INC-1 debug").exit_code == 0
    if tier == "general":  # a setting piu.held leaves to piu.config: the second tier answers
        monkeypatch.setenv("PIU_EVEN_URL", "HTTPS://even.example.com")
    assert (held.lookup(dict(os.environ), HOST, time.time()) is None) is (tier == "general")
    result = run("ssh", HOST, "--", "uptime", "-p")
    execs: list[tuple[str, list[str]]] = []

    def execvp(file: str, argv: list[str]) -> None:
        execs.append((file, argv))
        raise SystemExit(0)  # as an exec would: nothing after it runs

    capsys.readouterr()
    with pytest.raises(SystemExit):
        launch._held_ssh(["ssh", HOST, "--", "uptime", "-p"], Runtime(execvp=execvp))
    assert execs == [run.execs[-1]]
    assert capsys.readouterr().err == result.stderr
    assert posts(run) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["ssh", "other.prod.example.org"],  # no grant held for it
        ["ssh", HOST, "uptime"],  # ssh arguments without `--`: the CLI parses them
        ["ssh", "--new", HOST],
        ["-v", "ssh", HOST],
        ["ssh", "bad@"],  # an error: the CLI reports it
        ["list-access"],
    ],
)
def test_launch_leaves_everything_else_to_the_cli(run: Piu, args: list[str]) -> None:
    from piu import launch

    assert run("ssh", HOST, "-r", "INC-1 debug").exit_code == 0

    def execvp(file: str, argv: list[str]) -> None:
        raise AssertionError(f"exec'd {argv}")

    launch._held_ssh(args, Runtime(execvp=execvp))  # returns: the CLI takes over


def test_launch_reports_a_missing_ssh_as_the_cli_does(
    run: Piu, capsys: pytest.CaptureFixture[str]
) -> None:
    from piu import launch

    assert run("ssh", HOST, "-r", "INC-1 debug").exit_code == 0

    def execvp(file: str, argv: list[str]) -> None:
        raise FileNotFoundError(2, "No such file or directory")

    cli = CliRunner().invoke(cli_group, ["ssh", HOST], obj=Runtime(execvp=execvp))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        launch._held_ssh(["ssh", HOST], Runtime(execvp=execvp))
    assert exited.value.code == cli.exit_code == 1
    assert capsys.readouterr().err == cli.stderr
