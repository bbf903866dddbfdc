"""`odd sshd-config` output: the directives SPEC §5/§6 fix, nothing injectable."""

from pathlib import Path

import pytest

from odd.errors import InvalidHostname, InvalidLogin, InvalidPath
from odd.paths import check_config_path
from odd.sshd_config import SshdPaths, render_sshd_config

EXPECTED = [
    "TrustedUserCAKeys /etc/ssh/even_user_ca.pub",
    "RevokedKeys /etc/ssh/even_revoked.krl",
    "AuthorizedPrincipalsCommand /usr/local/libexec/odd-principals --hostname host-1.even.test %u",
    "AuthorizedPrincipalsCommandUser nobody",
    "AuthorizedKeysFile /etc/ssh/even_authorized_keys/%u",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "LogLevel VERBOSE",
]


def _directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_default_lines() -> None:
    text = render_sshd_config("host-1.even.test")
    assert _directives(text) == EXPECTED
    assert text.endswith("\n")
    assert all(line.startswith("#") for line in text.splitlines() if line not in EXPECTED)


def test_paths_are_overridable(tmp_path: Path) -> None:
    paths = SshdPaths(
        ca_file=tmp_path / "ca.pub",
        krl_file=tmp_path / "revoked.krl",
        principals_command=Path("/run/x/libexec/odd-principals"),
        authorized_keys_file=tmp_path / "keys" / "%u",
    )
    lines = _directives(render_sshd_config("host-1.even.test", paths))
    assert f"TrustedUserCAKeys {tmp_path}/ca.pub" in lines
    assert f"RevokedKeys {tmp_path}/revoked.krl" in lines
    assert (
        "AuthorizedPrincipalsCommand /run/x/libexec/odd-principals --hostname host-1.even.test %u"
        in lines
    )
    assert f"AuthorizedKeysFile {tmp_path}/keys/%u" in lines


def test_push_block_comes_last() -> None:
    text = render_sshd_config("host-1.even.test", push_user="granting-service")
    lines = _directives(text)
    assert lines[: len(EXPECTED)] == EXPECTED
    assert lines[len(EXPECTED) :] == [
        "Match User granting-service",
        "    AuthorizedKeysFile /etc/ssh/even_push_keys",
        "    TrustedUserCAKeys none",
        "    SetEnv SHLVL=1",
    ]


def test_push_as_root_allows_only_forced_commands() -> None:
    lines = _directives(render_sshd_config("host-1.even.test", push_user="root"))
    assert lines[-1] == "    PermitRootLogin forced-commands-only"


def test_invalid_push_user() -> None:
    with pytest.raises(InvalidLogin):
        render_sshd_config("host-1.even.test", push_user="x\nPermitRootLogin yes")


@pytest.mark.parametrize(
    "hostname",
    ["localhost", "web1", "127.0.0.1", "h.example.org\nPermitRootLogin yes", "h.example.org %u"],
)
def test_hostname_is_validated(hostname: str) -> None:
    with pytest.raises(InvalidHostname):
        render_sshd_config(hostname)


@pytest.mark.parametrize(
    "path",
    ["relative/ca.pub", "/a b", "/a\nPermitRootLogin yes", "/a#b", '/a"b', "/a%u", "", "/a\tb"],
)
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidPath):
        check_config_path(path)
    with pytest.raises(InvalidPath):
        render_sshd_config("host-1.even.test", SshdPaths(ca_file=Path(path)))


def test_keys_pattern_allows_only_sshd_tokens() -> None:
    assert check_config_path("/k/%u/%h/%U/%%", keys_pattern=True) == "/k/%u/%h/%U/%%"
    with pytest.raises(InvalidPath):
        check_config_path("/k/%d", keys_pattern=True)
    with pytest.raises(InvalidPath):
        check_config_path("/k/%", keys_pattern=True)
