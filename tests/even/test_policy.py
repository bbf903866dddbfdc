import pytest

from even.errors import (
    ConfigError,
    LifetimeTooLong,
    LoginNotAllowed,
    NoMatchingRule,
    ReasonRejected,
)
from even.policy import Subject, parse_policy
from tests.conftest import TEST_POLICY

POLICY = parse_policy(TEST_POLICY.encode())
ALICE = Subject("alice", ())
SRE = Subject("carol", ("sre",))


def test_first_matching_rule_decides() -> None:
    rule = POLICY.decide(SRE, hostname="db-1.prod.even.test", login="carol", mode="certificate")
    assert rule.name == "sre-prod"
    assert (
        POLICY.decide(SRE, hostname="db-1.prod.even.test", login="deploy", mode="certificate").name
        == "sre-prod"
    )


@pytest.mark.parametrize(
    ("subject", "host", "login", "mode"),
    [
        (Subject("mallory", ("dev",)), "db-1.prod.even.test", "mallory", "certificate"),
        (SRE, "db-1.staging.even.test", "carol", "certificate"),
        (SRE, "db-1.prod.even.test.evil.org", "carol", "certificate"),
        (SRE, "db-1.prod.even.test", "carol", "push"),
    ],
)
def test_default_deny_names_no_rule(subject, host, login, mode) -> None:
    with pytest.raises(NoMatchingRule) as info:
        POLICY.decide(subject, hostname=host, login=login, mode=mode)
    assert "sre-prod" not in str(info.value) and not info.value.extra


def test_login_outside_the_rule_is_login_not_allowed() -> None:
    with pytest.raises(LoginNotAllowed):
        POLICY.decide(SRE, hostname="db-1.prod.even.test", login="root", mode="certificate")
    # {username} expands to the requester only, never to someone else.
    with pytest.raises(LoginNotAllowed):
        POLICY.decide(SRE, hostname="db-1.prod.even.test", login="alice", mode="certificate")


def test_reason_rules_name_the_rule() -> None:
    rule = POLICY.decide(ALICE, hostname="x.prod.even.test", login="alice", mode="certificate")
    with pytest.raises(ReasonRejected, match="sre-prod") as info:
        POLICY.check(rule, reason="short", lifetime_minutes=None)
    assert info.value.extra["rule"] == "sre-prod"
    with pytest.raises(ReasonRejected, match="sre-prod"):
        POLICY.check(rule, reason="a long reason without ticket", lifetime_minutes=None)
    grant = POLICY.check(rule, reason="debug INC-123 please", lifetime_minutes=None)
    assert grant.lifetime_minutes == 60


def test_rule_reason_overrides_default_and_lifetime_is_capped() -> None:
    rule = POLICY.decide(ALICE, hostname="h.lab.even.test", login="alice", mode="certificate")
    assert POLICY.check(rule, reason="lab work", lifetime_minutes=10).lifetime_minutes == 10
    with pytest.raises(LifetimeTooLong, match="lab"):
        POLICY.check(rule, reason="lab work", lifetime_minutes=31)


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("approval: {approvers: [x]}", "approvers"),
        ("emergency: true", "emergency"),
        ("hosts: ['[a-z]*.prod']", "host pattern"),
        ("logins: ['root,admin']", "not a valid login"),
        ("extensions: [permit-everything]", "unknown certificate extensions"),
        ("source_addresses: ['10.0.0.1/8']", "source address"),
        ("bastion: odd-eu", "not configured"),
        ("logins: [granting-service]", "push user"),
        ("unknown_key: 1", "Extra inputs"),
    ],
)
def test_invalid_policies_fail_at_load(snippet: str, message: str) -> None:
    key = snippet.split(":", maxsplit=1)[0]
    base = {
        "subjects": "subjects: {users: [a]}",
        "hosts": "hosts: ['*.x.test']",
        "logins": "logins: [a]",
    }
    base.pop(key, None)
    lines = "\n".join(f"    {v}" for v in [*base.values(), snippet])
    text = f"rules:\n  - name: r\n{lines}\n"
    with pytest.raises(ConfigError, match=message):
        parse_policy(text.encode(), push_user="granting-service")


def test_policy_hash_is_sha256_of_the_file() -> None:
    import hashlib

    assert POLICY.sha256 == hashlib.sha256(TEST_POLICY.encode()).hexdigest()


def test_roles_and_allowed_rules() -> None:
    assert POLICY.roles_for(Subject("x", ("audit",))) == ["auditor"]
    assert [r.name for r in POLICY.rules_for(ALICE)] == ["sre-prod", "lab"]
