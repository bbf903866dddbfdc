"""Rate limits: a burst from one subject gets 429 + Retry-After while another is served;
failed authentication is limited per client address before any token work."""

from __future__ import annotations

import pytest

from even.config import RateLimitSettings
from tests.security.conftest import make_secure


@pytest.fixture
def limited(settings, clock, tmp_path):
    limits = RateLimitSettings(per_user_per_second=1, burst=5, failed_auth_per_ip_per_second=1)
    yield from make_secure(settings.model_copy(update={"rate_limits": limits}), clock, tmp_path)


def _whoami(limited, token: str):
    return limited.client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})


def test_burst_from_one_subject_is_429_while_another_is_served(limited) -> None:
    alice, bob = limited.dev_token("alice"), limited.dev_token("bob")
    statuses = [_whoami(limited, alice).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}
    limited_answer = _whoami(limited, alice)
    assert int(limited_answer.headers["retry-after"]) >= 1
    assert limited_answer.json()["code"] == "rate_limited"
    assert _whoami(limited, bob).status_code == 200


def test_grants_are_limited_too_and_nothing_is_issued_when_limited(limited) -> None:
    statuses = [limited.post(limited.body()).status_code for _ in range(7)]
    assert statuses.count(201) == 5 and statuses[-1] == 429


def test_failed_authentication_is_limited_per_address(limited) -> None:
    statuses = [_whoami(limited, "garbage").status_code for _ in range(4)]
    assert statuses[0] == 401 and statuses[-1] == 429
    # Even a valid token from that address waits: the address is limited, not the token.
    assert _whoami(limited, limited.dev_token("bob")).status_code == 429
