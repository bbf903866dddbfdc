"""Hostname and login validation (SPEC §1) as odd applies it."""

import pytest

from odd.errors import InvalidHostname, InvalidLogin, UsageError
from odd.names import check_host_identity, check_hostname, check_login

LONGEST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters


@pytest.mark.parametrize(
    "name",
    ["host-1.even.test", "a.b", "123.example.org", "x" * 63 + ".org", LONGEST, "web1", "a"],
)
def test_valid_hostnames(name: str) -> None:
    assert check_hostname(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Host.example.org",
        "host.example.org.",
        "-a.example.org",
        "a-.example.org",
        "a..example.org",
        ".example.org",
        "a_b.example.org",
        "*.example.org",
        "x" * 64 + ".org",
        LONGEST + "e",
        "héllo.example.org",
        "host.example.org\n",
        " host.example.org",
        "host example.org",
        "host.example.org\x00",
        "127.0.0.1",
        "10.1",
        "1.2.3.4.5",
        "0x7f.1",
        "2130706433",
        "host.example.123",
        "::1",
        "[::1]",
    ],
)
def test_invalid_hostnames(name: str) -> None:
    with pytest.raises(InvalidHostname):
        check_hostname(name)


def test_long_name_message_does_not_echo_it() -> None:
    with pytest.raises(InvalidHostname, match="longer than 253"):
        check_hostname("a" * 300)


@pytest.mark.parametrize(
    "name", ["localhost", "localhost.localdomain", "localhost6", "app.localhost", "web1"]
)
def test_host_identity_refuses_names_every_machine_has(name: str) -> None:
    with pytest.raises(InvalidHostname):
        check_host_identity(name)


def test_host_identity_accepts_qualified_names() -> None:
    assert check_host_identity("db-1.prod.example.org") == "db-1.prod.example.org"
    # Only the whole name `localhost` (or the .localhost domain) is special.
    assert check_host_identity("localhost.example.org") == "localhost.example.org"


@pytest.mark.parametrize("name", ["piutest", "_svc", "a", "a" * 32, "deploy-1.x", "a_b.c-d"])
def test_valid_logins(name: str) -> None:
    assert check_login(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Root", "1abc", "-x", ".x", "a" * 33, "piutest\n", "a b", "ü", "a@b", "a/b", "a\x00"],
)
def test_invalid_logins(name: str) -> None:
    with pytest.raises(InvalidLogin):
        check_login(name)


def test_name_errors_are_usage_errors() -> None:
    assert issubclass(InvalidHostname, UsageError)
    assert issubclass(InvalidLogin, UsageError)
    assert UsageError.exit_code == 2
