"""piu and approvals against the fake Even: the 202 line, waiting with backoff and a spinner,
finishing like a direct grant, --no-wait/Ctrl-C (exit 5, `piu wait ID`), what ends a wait, and
the approve/deny/cancel/review/approvals verbs with Even's refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from piu_fakes import RECEIPT, REQUEST_ID, Piu, problem

HOST = "db-1.prod.example.org"
LINE = (
    "piu: waiting for 1 approval from sre-leads, expires 14:32 UTC; "
    f"Ctrl-C leaves it pending: piu wait {REQUEST_ID}"
)


@pytest.fixture
def approval(run: Piu) -> Piu:
    run.fake.approvals_needed = 1
    return run


def _cert(run: Piu):  # type: ignore[no-untyped-def]
    return run.ssh_dir / f"{HOST}-{REQUEST_ID}-cert.pub"


def test_waits_then_finishes_like_a_direct_grant(approval: Piu) -> None:
    approval.fake.on_poll = {3: ("approve", "carol")}
    result = approval("request-access", HOST, "debug INC-1")
    assert result.exit_code == 0, result.output
    assert LINE in result.stderr.splitlines()
    assert approval.sleeps == [1.0, 2.0, 4.0]  # polled after 1 s, doubling
    assert _cert(approval).exists()
    receipts = (approval.home / "state" / "piu" / "receipts.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in receipts] == [RECEIPT]
    assert f"Granted {REQUEST_ID}" in result.stdout and "ssh " in result.stdout
    assert "\r" not in result.stderr and "\x1b" not in result.stderr  # no spinner in a pipe
    gets = [r for r in approval.fake.requests if r.method == "GET"]
    assert {r.url.path for r in gets} == {f"/v1/access-requests/{REQUEST_ID}"}
    assert not (approval.home / "state" / "piu" / "pending.json").read_text().count(REQUEST_ID)


def test_backoff_caps_at_ten_seconds(approval: Piu) -> None:
    approval.fake.on_poll = {7: ("approve", "carol")}
    assert approval(HOST, "debug INC-1").exit_code == 0
    assert approval.sleeps == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_spinner_on_a_terminal_only(approval: Piu) -> None:
    approval.tty_err = True
    approval.fake.on_poll = {2: ("approve", "carol")}
    result = approval(HOST, "debug INC-1")
    assert result.exit_code == 0, result.output
    assert "\r\x1b[2K| waiting for approval of" in result.stderr
    assert f"({0}/1)" in result.stderr
    # The same 1 + 2 seconds, in spinner ticks.
    assert sum(approval.sleeps) == pytest.approx(3.0) and max(approval.sleeps) <= 0.25


def test_no_wait_exits_5_and_says_how_to_wait(approval: Piu) -> None:
    result = approval(HOST, "debug INC-1", "--no-wait")
    assert result.exit_code == 5, result.output
    assert result.stdout == ""
    assert f"to wait for it: piu wait {REQUEST_ID}" in result.stderr
    assert f"piu: hint: piu wait {REQUEST_ID}" in result.stderr
    assert not _cert(approval).exists() and approval.sleeps == []
    as_json = approval(HOST, "debug INC-1", "--no-wait", "-o", "json")
    assert as_json.exit_code == 5
    answer = json.loads(as_json.stdout)
    assert answer["status"] == "PENDING_APPROVAL" and answer["approval"]["needed"] == 1


def test_ctrl_c_leaves_it_pending(approval: Piu) -> None:
    approval.interrupt_after_sleeps = 2
    result = approval(HOST, "debug INC-1")
    assert result.exit_code == 5, result.output
    assert f"request {REQUEST_ID} is still pending" in result.stderr
    assert f"piu wait {REQUEST_ID}" in result.stderr
    assert approval.fake.pending is not None
    assert approval.fake.pending["status"] == "PENDING_APPROVAL"  # nothing was cancelled
    assert not _cert(approval).exists()


@pytest.mark.parametrize(
    ("event", "code", "words"),
    [
        (("deny", "dave"), 4, "was denied: denied by dave: scripted"),
        (("expire", ""), 5, "expired before enough approvers answered"),
        (("cancel", "alice"), 1, "was cancelled"),
    ],
)
def test_what_ends_a_wait_without_a_grant(
    approval: Piu, event: tuple[str, str], code: int, words: str
) -> None:
    approval.fake.on_poll = {2: event}
    result = approval(HOST, "debug INC-1")
    assert result.exit_code == code, result.output
    assert words in result.stderr
    assert "Traceback" not in result.output
    assert not _cert(approval).exists()


def test_a_few_unavailable_polls_are_waited_out(approval: Piu) -> None:
    fake = approval.fake
    fake.queue = [
        lambda r: fake.post_request(json.loads(r.content)),
        lambda r: problem(503, "store_unavailable", "busy"),
        lambda r: problem(503, "store_unavailable", "busy"),
    ]
    fake.on_poll = {1: ("approve", "carol")}
    assert approval(HOST, "debug INC-1").exit_code == 0
    assert approval.sleeps == [1.0, 2.0, 4.0]


def test_wait_command_picks_up_a_pending_request(approval: Piu) -> None:
    assert approval(HOST, "debug INC-1", "--no-wait").exit_code == 5
    pending = approval.home / "state" / "piu" / "pending.json"
    assert REQUEST_ID in pending.read_text()
    approval.fake.on_poll = {2: ("approve", "carol")}
    result = approval("wait", REQUEST_ID)
    assert result.exit_code == 0, result.output
    assert LINE in result.stderr.splitlines()
    assert _cert(approval).exists() and f"Granted {REQUEST_ID}" in result.stdout
    assert REQUEST_ID not in pending.read_text()
    # Already granted: nothing to wait for, the grant is kept at once.
    again = approval("wait", REQUEST_ID, "-o", "json")
    assert again.exit_code == 0 and json.loads(again.stdout)["status"] == "GRANTED"


def test_wait_on_a_denied_request(approval: Piu) -> None:
    assert approval(HOST, "debug INC-1", "--no-wait").exit_code == 5
    approval.fake.act("deny", "dave", {"comment": "not now"})
    result = approval("wait", REQUEST_ID)
    assert result.exit_code == 4 and "denied by dave: not now" in result.stderr
    assert approval("wait", "not an id").exit_code == 2


def _pending_for(run: Piu, needed: int = 1) -> None:
    run.fake.approvals_needed = needed
    assert run(HOST, "debug INC-1", "--no-wait").exit_code == 5


def test_approve_by_an_approver_grants(run: Piu) -> None:
    _pending_for(run)
    run.fake.caller = "carol"
    result = run("approve", REQUEST_ID, "-m", "ok for INC-1")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Approved {REQUEST_ID} (status GRANTED); access is granted"
    posted = run.fake.requests[-1]
    assert posted.url.path == f"/v1/access-requests/{REQUEST_ID}/approve"
    assert json.loads(posted.content) == {"comment": "ok for INC-1"}
    again = run("approve", REQUEST_ID)
    assert again.exit_code == 1
    assert "not possible: the request is GRANTED [not_pending]" in again.stderr
    assert "piu: hint:" in again.stderr


@pytest.mark.parametrize(
    ("caller", "code", "hint"),
    [
        ("alice", "self_approval", "nobody approves their own request"),
        ("bob", "not_an_approver", "`piu approvals` lists"),
    ],
)
def test_approve_refusals_exit_4_with_a_hint(run: Piu, caller: str, code: str, hint: str) -> None:
    _pending_for(run)
    run.fake.caller = caller
    result = run("approve", REQUEST_ID)
    assert result.exit_code == 4, result.output
    assert f"[{code}]" in result.stderr and hint in result.stderr


def test_count_two_and_the_same_approver_twice(run: Piu) -> None:
    _pending_for(run, needed=2)
    run.fake.caller = "carol"
    first = run("approve", REQUEST_ID)
    assert first.exit_code == 0
    assert first.stdout.strip().endswith("; 1 more approval(s) needed")
    twice = run("approve", REQUEST_ID)
    assert twice.exit_code == 1 and "[already_approved]" in twice.stderr
    run.fake.caller = "dave"
    assert "access is granted" in run("approve", REQUEST_ID).stdout


def test_deny_needs_a_comment(run: Piu) -> None:
    _pending_for(run)
    run.fake.caller = "dave"
    assert run("deny", REQUEST_ID).exit_code == 2
    assert run("deny", REQUEST_ID, "-m", "  ").exit_code == 2
    result = run("deny", REQUEST_ID, "-m", "freeze week")
    assert result.exit_code == 0 and f"Denied {REQUEST_ID} (status DENIED)" in result.stdout
    assert json.loads(run.fake.requests[-1].content) == {"comment": "freeze week"}


def test_cancel_is_for_the_requester(run: Piu) -> None:
    _pending_for(run)
    run.fake.caller = "carol"
    refused = run("cancel", REQUEST_ID)
    assert refused.exit_code == 4 and "[not_requester]" in refused.stderr
    run.fake.caller = "alice"
    result = run("cancel", REQUEST_ID)
    assert result.exit_code == 0 and "Cancelled" in result.stdout
    assert run.fake.requests[-1].content in (b"", b"null")
    pending = run.home / "state" / "piu" / "pending.json"
    assert REQUEST_ID not in pending.read_text()


def test_review_verdicts(run: Piu) -> None:
    _pending_for(run)
    run.fake.caller = "carol"
    assert run("review", REQUEST_ID, "-m", "x").exit_code == 2  # --verdict is required
    assert run("review", REQUEST_ID, "--verdict", "fine", "-m", "x").exit_code == 2
    result = run("review", REQUEST_ID, "--verdict", "unjustified", "-m", "no incident")
    assert result.exit_code == 0, result.output
    assert json.loads(run.fake.requests[-1].content) == {
        "verdict": "unjustified",
        "comment": "no incident",
    }
    run.fake.caller = "alice"
    assert run("review", REQUEST_ID, "--verdict", "justified", "-m", "me").exit_code == 4


def test_approvals_lists_what_waits(run: Piu) -> None:
    run.fake.caller = "carol"
    assert run("approvals").stdout.strip() == "no requests waiting for your approval"
    _pending_for(run)
    text = run("approvals")
    assert text.exit_code == 0
    header, row = text.stdout.strip().splitlines()
    assert header.split() == ["ID", "REQUESTER", "TARGET", "APPROVALS", "EXPIRES", "REASON"]
    assert row.split()[:5] == [REQUEST_ID, "alice", f"alice@{HOST}", "0/1", "2030-01-01T14:32:00Z"]
    as_json = json.loads(run("approvals", "-o", "json").stdout)
    assert as_json["items"][0]["approval"]["approver_groups"] == ["sre-leads"]


def test_emergency_request(run: Piu) -> None:
    refused = run(HOST, "INC-9 db down", "--emergency")
    assert refused.exit_code == 4
    assert "[emergency_not_allowed]" in refused.stderr and "without --emergency" in refused.stderr
    assert run.fake.posted()["emergency"] is True
    run.fake.emergency_allowed = True
    run.fake.approvals_needed = 1  # break-glass does not wait even where approval is needed
    granted = run("request-access", HOST, "INC-9 db down", "--emergency")
    assert granted.exit_code == 0, granted.output
    assert "break-glass access" in granted.stderr and run.sleeps == []
    plain = run(HOST, "INC-9 db down", "--no-wait")
    assert "emergency" not in json.loads(run.fake.requests[-1].content)
    assert plain.exit_code == 5


def test_list_access_shows_pending_ones(run: Piu) -> None:
    run.fake.list_items = [
        {
            "id": REQUEST_ID,
            "status": "PENDING_APPROVAL",
            "username": "alice",
            "login": "alice",
            "hostname": HOST,
            "mode": "certificate",
            "reason": "debug INC-1",
            "valid_before": None,
            "approval": {
                "needed": 2,
                "approvals": [{"username": "carol", "time": "2030-01-01T00:00:00Z"}],
                "approver_groups": ["sre-leads"],
                "expires_at": "2030-01-01T14:32:00Z",
            },
        }
    ]
    result = run("list-access", "--pending")
    assert result.exit_code == 0, result.output
    assert run.fake.requests[-1].url.params["status"] == "PENDING_APPROVAL"
    assert "PENDING_APPROVAL" in result.stdout and "approved 1/2" in result.stdout
    assert run("list-access", "--pending", "--status", "GRANTED").exit_code == 2


def test_completion_covers_the_new_verbs(approval: Piu) -> None:
    assert approval(HOST, "debug INC-1", "--no-wait").exit_code == 5
    env = {**os.environ, "_PIU_COMPLETE": "bash_complete", "COMP_WORDS": "piu ", "COMP_CWORD": "1"}

    def complete(words: str, cword: str) -> set[str]:
        env.update(COMP_WORDS=words, COMP_CWORD=cword)
        out = subprocess.run(
            [sys.executable, "-m", "piu"], env=env, capture_output=True, text=True, check=False
        )
        return set(out.stdout.splitlines())

    verbs = {"wait", "approvals", "approve", "deny", "cancel", "review"}
    assert {f"plain,{v}" for v in verbs} <= complete("piu ", "1")
    assert f"plain,{REQUEST_ID}" in complete("piu wait ", "2")
    assert f"plain,{REQUEST_ID}" in complete("piu cancel 0b", "2")
    assert {"plain,justified", "plain,unjustified"} <= complete("piu review x --verdict ", "4")


def test_stops_waiting_once_the_window_is_over(approval: Piu) -> None:
    from datetime import UTC, datetime

    # Even's expiry job has not marked it yet, but its window ended over a minute ago.
    approval.now = datetime(2030, 1, 1, 14, 33, 1, tzinfo=UTC).timestamp()
    result = approval(HOST, "debug INC-1")
    assert result.exit_code == 5, result.output
    assert "expired before enough approvers answered" in result.stderr
    assert approval.sleeps == [1.0]


def test_pending_line_wording() -> None:
    from piu_fakes import FakeEven

    from piu.models import parse_grant
    from piu.wait import backoff, pending_line

    fake = FakeEven(approvals_needed=3, approver_groups=("sre-leads", "dba"))
    body = {"hostname": HOST, "reason": "r", "public_key": "k", "login": "alice"}
    fake.pending = {"body": body, "status": "PENDING_APPROVAL", "approvals": [("carol", None)]}
    fake.pending["status_reason"] = None
    fake.grant = lambda body: {  # type: ignore[method-assign]
        "id": REQUEST_ID,
        "status": "GRANTED",
        "username": "alice",
        "login": "alice",
        "hostname": HOST,
        "mode": "certificate",
    }
    grant = parse_grant(fake.view())
    assert pending_line(grant, waiting=True).startswith(
        "waiting for 2 approvals from sre-leads, dba, expires 14:32 UTC;"
    )
    fake.approver_groups = ()
    assert "1 approval" not in pending_line(parse_grant(fake.view()), waiting=False)
    assert "from an approver" in pending_line(parse_grant(fake.view()), waiting=False)
    delays = backoff()
    assert [next(delays) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
