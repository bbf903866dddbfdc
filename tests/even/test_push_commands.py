"""Push mode's pure parts: odd command lines, expiry rounding, the host plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from even.push.commands import (
    UnsafeCommand,
    command_line,
    floor_seconds,
    grant_argv,
    grant_id,
    odd_expiry,
    revoke_argv,
)
from even.push.plan import PushKey, plan_from_json, plan_push
from odd.grant import GrantRequest, RevokeRequest, parse_command

KEY = PushKey(
    "ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIGJ5b3xbp2dFq8kTqYIYq1QWn1qZ0aRjE8sT4Q1wUO4k", "x"
)
REQUEST_ID = "0b6c7f5e-3c1d-4d2a-9a57-0c2b8f1e6d41"


def test_expiry_is_rounded_down_never_after_the_grant() -> None:
    end = datetime(2031, 5, 6, 7, 8, 9, 999_999, tzinfo=UTC)
    assert odd_expiry(end) == "20310506070809Z"
    assert floor_seconds(end) <= end
    assert floor_seconds(end) == end.replace(microsecond=0)
    # Another zone's wall clock is converted, not relabelled.
    plus_two = end.astimezone(timezone(timedelta(hours=2)))
    assert odd_expiry(plus_two) == "20310506070809Z"


def test_grant_command_is_the_argv_joined_by_single_spaces_and_odd_parses_it_back() -> None:
    expires = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    argv = grant_argv(
        grant_id=REQUEST_ID,
        login="alice",
        expires=expires,
        key_type=KEY.key_type,
        key_base64=KEY.base64,
        sources=["10.0.0.0/8", "192.0.2.0/24"],
        jump_to=["target.even.test"],
    )
    line = command_line(argv)
    assert line == (
        f"grant --grant-id {REQUEST_ID} --login alice --expires 20310102030405Z "
        "--from 10.0.0.0/8,192.0.2.0/24 --jump-to target.even.test "
        f"--key ssh-ed25519 {KEY.base64}"
    )
    parsed = parse_command(line)  # the real forced command's parser
    assert isinstance(parsed, GrantRequest)
    assert parsed.login == "alice" and parsed.line.grant_id == REQUEST_ID
    assert parsed.line.expires == expires and parsed.line.jump_to == ("target.even.test",)
    assert parsed.line.sources == ("10.0.0.0/8", "192.0.2.0/24")
    revoke = parse_command(command_line(revoke_argv(grant_id=REQUEST_ID, login="alice")))
    assert revoke == RevokeRequest(grant_id=REQUEST_ID, login="alice", end_sessions=False)


@pytest.mark.parametrize(
    "word", ["a b", "x;id", "$(id)", "a\nb", "a\rb", "a\x00b", "", "'q'", "é", "a\tb"]
)
def test_words_odd_would_not_read_back_unchanged_are_refused(word: str) -> None:
    with pytest.raises(UnsafeCommand):
        command_line(["grant", "--login", word])


def test_grant_ids_stay_within_odds_grammar() -> None:
    assert grant_id(REQUEST_ID, 0) == REQUEST_ID
    assert grant_id(REQUEST_ID, 2) == f"{REQUEST_ID}-k3"
    with pytest.raises(UnsafeCommand):
        grant_id("-leading-hyphen", 0)
    with pytest.raises(UnsafeCommand):
        grant_id("x" * 64, 1)  # too long once suffixed


def test_plan_through_a_bastion_pushes_the_hop_first_and_the_requester_jumps() -> None:
    plan = plan_push(
        request_id=REQUEST_ID,
        username="alice",
        login="deploy",
        hostname="db-1.prod.even.test",
        bastion="odd-eu",
        sources=["10.0.0.0/8"],
        key_count=2,
    )
    assert plan.hosts == ["odd-eu", "db-1.prod.even.test"]
    bastion, target = plan.steps
    assert (bastion.login, bastion.jump_to, bastion.sources) == (
        "alice",
        ("db-1.prod.even.test",),
        (),
    )
    assert (target.login, target.via, target.sources) == ("deploy", "odd-eu", ("10.0.0.0/8",))
    expires = datetime(2031, 1, 1, tzinfo=UTC)
    commands = plan.grant_commands([KEY, KEY], expires)
    assert [(s.host, g) for s, g, _ in commands] == [
        ("odd-eu", REQUEST_ID),
        ("odd-eu", f"{REQUEST_ID}-k2"),
        ("db-1.prod.even.test", REQUEST_ID),
        ("db-1.prod.even.test", f"{REQUEST_ID}-k2"),
    ]
    assert "--jump-to db-1.prod.even.test" in commands[0][2] and "--from" not in commands[0][2]
    assert "--from 10.0.0.0/8" in commands[2][2] and "--jump-to" not in commands[2][2]
    revokes = plan.revoke_commands(end_sessions=True)
    assert revokes[0][1] == f"revoke --grant-id {REQUEST_ID} --login alice"  # never on a bastion
    assert revokes[2][1] == f"revoke --grant-id {REQUEST_ID} --login deploy --end-sessions"
    assert plan_from_json(plan.as_json()) == plan  # what push_started records is enough


def test_plan_without_a_bastion_is_the_target_alone() -> None:
    plan = plan_push(
        request_id=REQUEST_ID,
        username="alice",
        login="alice",
        hostname="host.even.test",
        bastion=None,
        sources=[],
        key_count=1,
    )
    assert [(s.host, s.role, s.via) for s in plan.steps] == [("host.even.test", "target", None)]
    with pytest.raises(ValueError):
        plan_from_json({"steps": []})
