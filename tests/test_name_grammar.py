"""even.names, odd.names and piu agree on every name vector (tests/name_vectors.py)."""

import pytest

from even import names
from odd import names as odd_names
from odd.errors import InvalidHostname, InvalidLogin
from piu.models import is_hostname as piu_is_hostname
from tests.name_vectors import (
    INVALID_HOSTNAMES,
    INVALID_LOGINS,
    SELF_NAMES,
    VALID_HOSTNAMES,
    VALID_LOGINS,
)


def _odd_hostname(value: str) -> bool:
    try:
        odd_names.check_hostname(value)
    except InvalidHostname:
        return False
    return True


def _odd_identity(value: str) -> bool:
    try:
        odd_names.check_host_identity(value)
    except InvalidHostname:
        return False
    return True


def _odd_login(value: str) -> bool:
    try:
        odd_names.check_login(value)
    except InvalidLogin:
        return False
    return True


@pytest.mark.parametrize("value", VALID_HOSTNAMES)
def test_valid_hostnames_everywhere(value: str) -> None:
    assert names.is_hostname(value)
    assert _odd_hostname(value)
    assert piu_is_hostname(value)


@pytest.mark.parametrize("value", INVALID_HOSTNAMES)
def test_invalid_hostnames_everywhere(value: str) -> None:
    assert not names.is_hostname(value)
    assert not _odd_hostname(value)
    assert not piu_is_hostname(value)


@pytest.mark.parametrize("value", SELF_NAMES)
def test_names_every_machine_has_are_never_targets_or_identities(value: str) -> None:
    assert names.is_self_name(value)
    assert not names.is_grant_target(value)
    assert not _odd_identity(value)


@pytest.mark.parametrize("value", [v for v in VALID_HOSTNAMES if "." in v and v not in SELF_NAMES])
def test_qualified_names_are_targets_and_identities(value: str) -> None:
    assert names.is_grant_target(value)
    assert _odd_identity(value)


@pytest.mark.parametrize("value", VALID_LOGINS)
def test_valid_logins_everywhere(value: str) -> None:
    assert names.is_login(value) and _odd_login(value)


@pytest.mark.parametrize("value", INVALID_LOGINS)
def test_invalid_logins_everywhere(value: str) -> None:
    assert not names.is_login(value) and not _odd_login(value)


def test_bastion_principal_round_trips() -> None:
    principal = names.bastion_principal("alice", "odd-eu", "db-1.lab.example.org")
    assert principal == "alice@odd-eu/db-1.lab.example.org"
    assert names.parse_bastion_principal(principal) == ("alice", "odd-eu", "db-1.lab.example.org")
    for bad in [
        "alice@odd-eu",
        "alice@odd-eu/localhost",
        "Alice@odd-eu/a.b",
        "alice@/a.b",
        "alice@odd-eu/127.0.0.1",
        "alice@odd-eu/a.b\n",
    ]:
        assert names.parse_bastion_principal(bad) is None, bad


def test_the_schema_patterns_are_the_grammar() -> None:
    import re

    for value in VALID_HOSTNAMES:
        assert re.fullmatch(names.HOSTNAME_PATTERN[1:-1], value)
    for value in VALID_LOGINS:
        assert re.fullmatch(names.LOGIN_PATTERN[1:-1], value)
