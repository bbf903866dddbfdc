"""Logins, hosts and the fields a client must not send: 422 (or 403 for a login the policy
does not give), never a certificate."""

from __future__ import annotations

import pytest

BAD_LOGINS = [
    "a,b",
    "a b",
    "a*",
    "a?",
    "a%u",
    "-oProxyCommand=x",
    "$(id)",
    "`id`",
    "a;b",
    "a\nb",
    "аlice",
    "ａlice",
    "Alice",
    "root\n",
    "a" * 33,
    "",
]
BAD_HOSTS = [
    "db,1.prod.even.test",
    "db 1.prod.even.test",
    "*.prod.even.test",
    "db?.prod.even.test",
    "db%.prod.even.test",
    "-db.prod.even.test",
    "$(id).prod.even.test",
    "`id`.prod.even.test",
    "db;1.prod.even.test",
    "db-1.prod.even.test\n",
    "db-1.prоd.even.test",
    "ｄｂ.prod.even.test",
    "a" * 300,
    "a" * 64 + ".prod.even.test",
    "127.1",
    "010.0.0.1",
    "127.0.0.1",
    "[::1]",
    "DB-1.prod.even.test",
    "db-1.prod.even.test.",
    "",
]


def _assert_status(secure, status: int, **fields) -> None:
    response = secure.post(secure.body(**fields))
    assert response.status_code == status, response.text
    secure.assert_nothing_issued()


@pytest.mark.parametrize("login", BAD_LOGINS)
def test_bad_login(secure, login) -> None:
    _assert_status(secure, 422, login=login)


@pytest.mark.parametrize("hostname", BAD_HOSTS)
def test_bad_hostname(secure, hostname) -> None:
    _assert_status(secure, 422, hostname=hostname)


@pytest.mark.parametrize(
    "field",
    [
        {"force_command": "/bin/sh"},
        {"force-command": "/bin/sh"},
        {"source_address": "0.0.0.0/0"},
        {"source_addresses": ["10.0.0.0/8 "]},
        {"extensions": ["permit-port-forwarding"]},
        {"principals": ["root"]},
        {"critical_options": {"force-command": "x"}},
        {"serial": 1},
        {"valid_before": "forever"},
    ],
)
def test_client_supplied_certificate_content(secure, field) -> None:
    _assert_status(secure, 422, **field)


def test_several_logins_where_one_is_allowed(secure) -> None:
    _assert_status(secure, 422, login=["alice", "root"])
    _assert_status(secure, 422, login="alice,root")
    _assert_status(secure, 422, login="alice root")


def test_login_the_policy_does_not_give(secure) -> None:
    _assert_status(secure, 403, login="root")


def test_bastion_junk(secure) -> None:
    _assert_status(secure, 422, bastion="odd eu")
    _assert_status(secure, 422, bastion="odd\neu")
    _assert_status(secure, 403, bastion="odd-eu")
