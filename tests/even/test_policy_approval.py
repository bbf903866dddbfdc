"""A rule's `approval:` and `emergency:` sections: load-time validation, the approver question
the service asks, and the warnings `even policy check` prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from even.errors import ConfigError
from even.policy import Policy, Subject, parse_policy
from even.policy_approval import approval_warnings
from tests.conftest import make_even_dir

APPROVAL_POLICY = """
defaults: {max_lifetime_minutes: 60, reason: {min_length: 3}}
roles:
  admin: {groups: [security]}
rules:
  - name: prod-db
    subjects: {groups: [sre]}
    hosts: ["db-*.prod.even.test"]
    logins: ["{username}"]
    approval:
      approvers: {groups: [sre-leads], users: [carol]}
      count: 1
      pending_minutes: 60
    emergency: {allowed: true, max_lifetime_minutes: 30, review_within_hours: 24}
  - name: plain
    subjects: {groups: [sre]}
    hosts: ["*.lab.even.test"]
    logins: ["{username}"]
    max_lifetime_minutes: 20
    emergency: {allowed: false}
  - name: glass
    subjects: {groups: [sre]}
    hosts: ["*.glass.even.test"]
    logins: ["{username}"]
    max_lifetime_minutes: 40
    emergency: {allowed: true}
"""


def _policy(text: str = APPROVAL_POLICY) -> Policy:
    return parse_policy(text.encode())


def _rule_text(extra: str, *, subjects: str = "{groups: [sre]}", max_lifetime: int = 60) -> str:
    return (
        "rules:\n  - name: r\n"
        f"    subjects: {subjects}\n    hosts: ['*.x.test']\n    logins: [a]\n"
        f"    max_lifetime_minutes: {max_lifetime}\n"
        + "".join(f"    {line}\n" for line in extra.splitlines())
    )


def test_sections_load_and_answer_the_service_questions() -> None:
    policy = _policy()
    alice = Subject("alice", ("sre",))
    rule = policy.decide(alice, hostname="db-1.prod.even.test", login="alice", mode="certificate")
    assert rule.needs_approval and rule.emergency_allowed
    assert rule.approval is not None and rule.approval.count == 1
    assert policy.emergency_max_lifetime(rule) == 30
    lab = policy.decide(alice, hostname="h.lab.even.test", login="alice", mode="certificate")
    assert not lab.needs_approval and not lab.emergency_allowed
    glass = policy.rule_named("glass")
    assert glass is not None and glass.emergency_allowed
    # No explicit cap: the rule's own maximum.
    assert policy.emergency_max_lifetime(glass) == 40
    assert policy.rule_named("nope") is None


@pytest.mark.parametrize(
    ("approver", "expected"),
    [
        (Subject("dave", ("sre-leads",)), True),  # by group
        (Subject("carol", ()), True),  # by username
        (Subject("bob", ("sre",)), False),  # a subject, not an approver
        (Subject("alice", ("sre-leads",)), False),  # the requester, never
    ],
)
def test_is_approver_by_group_or_username_never_the_requester(
    approver: Subject, expected: bool
) -> None:
    policy = _policy()
    rule = policy.rule_named("prod-db")
    assert rule is not None
    assert policy.is_approver(rule, approver, requester="alice") is expected


def test_a_rule_without_approval_has_no_approvers() -> None:
    policy = _policy()
    rule = policy.rule_named("plain")
    assert rule is not None
    assert not policy.is_approver(rule, Subject("carol", ("sre-leads",)), requester="alice")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("approval: {approvers: {groups: [], users: []}}", "at least one user or group"),
        ("approval: {approvers: {groups: [leads]}, count: 0}", "greater than or equal to 1"),
        ("approval: {approvers: {groups: [leads]}, pending_minutes: 0}", "pending_minutes"),
        ("approval: {count: 1}", "approvers"),
        ("approval: {approvers: {users: ['Bad User']}}", "not a valid username"),
        ("approval: {approvers: {groups: [leads]}, quorum: 2}", "Extra inputs"),
        ("emergency: {allowed: true, max_lifetime_minutes: 0}", "max_lifetime_minutes"),
        ("emergency: {allowed: true, max_lifetime_minutes: 61}", "exceeds the rule's maximum"),
        ("emergency: {allowed: true, review_within_hours: 0}", "review_within_hours"),
        ("emergency: {allowed: yes-please}", "allowed"),
    ],
)
def test_invalid_sections_fail_at_load(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policy(_rule_text(extra).encode())


def _warnings(extra: str, subjects: str = "{groups: [sre]}") -> list[str]:
    policy = parse_policy(_rule_text(extra, subjects=subjects).encode())
    return approval_warnings(policy.document.rules[0])


def test_no_warning_for_a_separate_approver_group() -> None:
    assert _warnings("approval: {approvers: {groups: [sre-leads]}, count: 2}") == []
    assert _warnings("emergency: {allowed: true}") == []


def test_warns_when_listed_users_can_never_reach_the_count() -> None:
    (warning,) = _warnings("approval: {approvers: {users: [carol]}, count: 2}")
    assert "can ever be approved" in warning and "rule r" in warning


def test_warns_when_a_subject_is_one_of_too_few_approvers() -> None:
    warnings = _warnings(
        "approval: {approvers: {users: [alice, carol]}, count: 2}", subjects="{users: [alice]}"
    )
    assert any("alice is both a subject and an approver" in w for w in warnings)
    # Everyone would be fine with count 1: carol approves alice's requests.
    assert not any(
        "both a subject" in w
        for w in _warnings(
            "approval: {approvers: {users: [alice, carol]}, count: 1}",
            subjects="{users: [alice]}",
        )
    )


def test_warns_when_the_approvers_are_only_the_requesters_peers() -> None:
    (warning,) = _warnings("approval: {approvers: {groups: [sre]}}")
    assert "every approver may also request" in warning


def test_policy_check_prints_warnings_on_stderr_and_keeps_its_answer(tmp_path: Path) -> None:
    policy = APPROVAL_POLICY + (
        "  - name: peers\n    subjects: {groups: [ops]}\n    hosts: ['*.ops.even.test']\n"
        "    logins: ['{username}']\n    approval: {approvers: {groups: [ops]}}\n"
    )
    config = make_even_dir(tmp_path, policy)
    argv = [sys.executable, "-m", "even.cli", "policy", "check", "--config", str(config)]
    argv += ["--user", "alice", "--groups", "sre", "--host", "db-1.prod.even.test"]
    done = subprocess.run([*argv, "--login", "alice"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ALLOW rule=prod-db\n"
    assert "warning: rule peers: every approver may also request" in done.stderr
    denied = subprocess.run([*argv, "--login", "root"], capture_output=True, text=True, check=False)
    assert denied.returncode == 1 and denied.stdout == "DENY login_not_allowed\n"
    assert "warning: rule peers" in denied.stderr


def test_rules_approved_by_lists_rules_naming_the_subject() -> None:
    policy = _policy()
    assert policy.rules_approved_by(Subject("dave", ("sre-leads",))) == ["prod-db"]
    assert policy.rules_approved_by(Subject("carol", ())) == ["prod-db"]
    assert policy.rules_approved_by(Subject("bob", ("sre",))) == []
