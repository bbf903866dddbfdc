"""Exit codes and messages of SPEC §9: 2 usage, 3 not authenticated, 4 denied, 6 unavailable."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from piu_fakes import TOKEN, Piu, problem

HOST = "db-1.prod.example.org"


def answer(response: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: response


def test_no_token_is_3(run: Piu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIU_TOKEN")
    result = run(HOST, "debug INC-1")
    assert result.exit_code == 3
    assert "piu: not logged in: run `piu login`" in result.stderr
    assert "PIU_TOKEN" in result.stderr and "--token-command" in result.stderr
    assert run.fake.requests == []
    assert not run.ssh_dir.exists()  # nothing created before the token is known


def test_401_is_3_and_never_shows_the_token(run: Piu) -> None:
    run.fake.queue.append(
        lambda r: problem(401, "invalid_token", "token expired", {"WWW-Authenticate": "Bearer"})
    )
    result = run("whoami")
    assert result.exit_code == 3
    assert "token expired" in result.stderr
    assert TOKEN not in result.output
    assert "Traceback" not in result.output


def test_403_is_4(run: Piu) -> None:
    run.fake.queue.append(lambda r: problem(403, "no_matching_rule", "no rule allows this"))
    result = run(HOST, "debug INC-1")
    assert result.exit_code == 4
    assert "piu: denied: no rule allows this [no_matching_rule]" in result.stderr
    assert "piu whoami" in result.stderr


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("reason_rejected", "a ticket id"),
        ("lifetime_too_long", "-t MIN"),
        ("login_not_allowed", "piu whoami"),
    ],
)
def test_policy_422_is_4_with_a_hint(run: Piu, code: str, hint: str) -> None:
    run.fake.queue.append(lambda r: problem(422, code, "rule sre-prod says no"))
    result = run(HOST, "debug")
    assert result.exit_code == 4
    assert f"piu: denied: rule sre-prod says no [{code}]" in result.stderr
    assert hint in result.stderr.splitlines()[-1]


def test_other_422_is_1(run: Piu) -> None:
    run.fake.queue.append(lambda r: problem(422, "invalid_hostname", "upper case"))
    result = run("DB.example.org", "debug INC-1")
    assert result.exit_code == 1
    assert "upper case [invalid_hostname]" in result.stderr


@pytest.mark.parametrize("status", [502, 503])
def test_502_503_are_6(run: Piu, status: int) -> None:
    run.fake.queue.append(
        lambda r: problem(status, "audit_unavailable", "audit store down", {"Retry-After": "3"})
    )
    result = run(HOST, "debug INC-1")
    assert result.exit_code == 6
    assert "try again in 3 s" in result.stderr
    assert not list(run.ssh_dir.glob("*-cert.pub"))


def test_429_is_retried_once_then_6(run: Piu) -> None:
    limited = problem(429, "rate_limited", "slow down", {"Retry-After": "2"})
    run.fake.queue += [answer(limited), answer(limited)]
    result = run(HOST, "debug INC-1")
    assert result.exit_code == 6
    assert run.sleeps == [2.0]
    assert len(run.fake.requests) == 2
    # Same idempotency key on the retry: Even cannot grant twice.
    keys = {r.headers["Idempotency-Key"] for r in run.fake.requests}
    assert len(keys) == 1


def test_429_then_success(run: Piu) -> None:
    run.fake.queue.append(answer(problem(429, "rate_limited", "slow down")))
    assert run(HOST, "debug INC-1").exit_code == 0
    assert run.sleeps == [1.0]


def test_429_with_long_retry_after_is_not_waited_out(run: Piu) -> None:
    run.fake.queue.append(answer(problem(429, "rate_limited", "x", {"Retry-After": "120"})))
    result = run("whoami")
    assert result.exit_code == 6
    assert run.sleeps == []


def test_connection_error_is_6(run: Piu) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    run.fake.queue.append(refuse)
    result = run(HOST, "debug INC-1")
    assert result.exit_code == 6
    assert "Even unreachable at https://even.example.com: Connection refused" in result.stderr


def test_timeout_is_6(run: Piu) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    run.fake.queue.append(slow)
    assert run("list-access").exit_code == 6


def test_missing_reason_is_usage_2(run: Piu) -> None:
    result = run("request-access", HOST)
    assert result.exit_code == 2
    assert run.fake.requests == []


def test_unknown_command_is_2_not_a_request(run: Piu) -> None:
    result = run("lst-access")
    assert result.exit_code == 2
    assert "No such command" in result.output
    assert run.fake.requests == []


def test_remote_form_rejects_a_login_on_the_bastion(run: Piu) -> None:
    assert run("request-access", "x@odd-eu", "INC-1", "--remote", HOST).exit_code == 2


def test_bad_revoke_id_is_2(run: Piu) -> None:
    assert run("revoke", "../../admin").exit_code == 2
    assert run.fake.requests == []


def test_no_even_url_is_2(run: Piu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIU_EVEN_URL")
    result = run("whoami")
    assert result.exit_code == 2
    assert "PIU_EVEN_URL" in result.stderr


def test_plain_http_to_a_remote_host_is_refused(run: Piu) -> None:
    result = run("--even-url", "http://even.example.com", "whoami")
    assert result.exit_code == 2
    assert run.fake.requests == []


def test_non_json_success_is_1(run: Piu) -> None:
    run.fake.queue.append(answer(httpx.Response(200, text="<html>proxy</html>")))
    result = run("whoami")
    assert result.exit_code == 1
    assert "without valid JSON" in result.stderr


def test_unexpected_error_has_no_traceback(run: Piu, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug")

    run.fake.queue.append(boom)
    result = run("whoami")
    assert result.exit_code == 1
    assert "unexpected error: RuntimeError: bug" in result.stderr
    assert "Traceback" not in result.output


def test_version(run: Piu) -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("piu, version ")
