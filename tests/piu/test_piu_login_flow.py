"""piu login / logout and the cached token, against a fake issuer (no waiting: sleep is recorded).

The same flow against the real npm oidc-provider is tests/integration/test_piu_login.py.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from piu_fakes import ISSUER, TOKEN, FakeEven, FakeIdp, Piu

from piu import errors
from piu.login import World, cached_token
from piu.oidc import DeviceCode, OidcClient
from piu.paths import resolve_paths
from piu.tokencache import CachedLogin, load, save

NOW = 1_900_000_000.0


@pytest.fixture
def piu(home: Path, monkeypatch: pytest.MonkeyPatch) -> Piu:
    monkeypatch.setenv("PIU_ISSUER", ISSUER)
    monkeypatch.setenv("PIU_EVEN_URL", "https://even.example.com")
    return Piu(FakeEven(), home, idp=FakeIdp(), now=NOW)


def token_file(piu: Piu) -> Path:
    return piu.config_dir / "token.json"


def cache(piu: Piu) -> dict[str, object]:
    data: dict[str, object] = json.loads(token_file(piu).read_text())
    return data


def test_login_device_flow_caches_the_token_0600(piu: Piu) -> None:
    assert piu.idp is not None
    piu.idp.polls = ["authorization_pending", "authorization_pending"]
    result = piu("login", "--no-browser")
    assert result.exit_code == 0, result.output
    assert "WDJB-MJHT" in result.stderr
    assert f"{ISSUER}/device?user_code=WDJB-MJHT" in result.stderr
    assert "Logged in as alice at https://idp.example.com" in result.stdout
    assert piu.sleeps == [2, 2, 2]  # the server's interval before each of three polls
    assert piu.opened == []
    assert stat.S_IMODE(token_file(piu).stat().st_mode) == 0o600
    assert stat.S_IMODE(piu.config_dir.stat().st_mode) == 0o700
    data = cache(piu)
    assert data["access_token"] == piu.idp.issued[-1]
    assert data["expires_at"] == int(NOW) + 600
    assert data["refresh_token"] == "refresh-token-1"
    assert data["username"] == "alice"
    # What piu sent: a public client asking for a refresh token.
    device_form = piu.idp.form(piu.idp.requests[1])
    assert device_form == {"client_id": "piu", "scope": "openid offline_access"}
    poll_form = piu.idp.form(piu.idp.requests[2])
    assert poll_form["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"
    assert poll_form["device_code"] == "device-code-secret-123"


def test_login_sends_resource_and_explicit_audience(
    piu: Piu, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIU_RESOURCE", "urn:even-piu:audience:even")
    monkeypatch.setenv("PIU_AUDIENCE", "even")
    assert piu("login", "--no-browser").exit_code == 0
    assert piu.idp is not None
    for request in piu.idp.requests[1:]:
        form = piu.idp.form(request)
        assert form["resource"] == "urn:even-piu:audience:even"
        assert form["audience"] == "even"
    assert cache(piu)["resource"] == "urn:even-piu:audience:even"


def test_slow_down_adds_five_seconds_for_good(piu: Piu) -> None:
    assert piu.idp is not None
    piu.idp.polls = ["slow_down", "authorization_pending", "slow_down"]
    assert piu("login", "--no-browser").exit_code == 0
    assert piu.sleeps == [2, 7, 7, 12]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("access_denied", "the login was denied in the browser"),
        ("expired_token", "the login code expired"),
        ("invalid_client", "the issuer refused the login: invalid_client"),
    ],
)
def test_login_failures_are_3_and_cache_nothing(piu: Piu, error: str, message: str) -> None:
    assert piu.idp is not None
    piu.idp.polls = ["authorization_pending", error]
    result = piu("login", "--no-browser")
    assert result.exit_code == 3
    assert message in result.stderr
    assert not token_file(piu).exists()


def test_login_stops_at_the_device_codes_expiry() -> None:
    idp = FakeIdp(polls=["authorization_pending"] * 1000)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    device = DeviceCode("dc-123456789", "A-B", f"{ISSUER}/device", None, 10, 4)
    with (
        OidcClient(
            ISSUER, "piu", transport=idp.transport(), sleep=sleep, clock=lambda: now[0]
        ) as c,
        pytest.raises(errors.LoginFailed, match="expired"),
    ):
        c.poll(f"{ISSUER}/token", device, {})
    assert len(idp.requests) == 2  # at 4 s and 8 s; at 12 s the code is dead


def test_discovery_naming_another_issuer_is_refused(piu: Piu) -> None:
    assert piu.idp is not None
    piu.idp.discovery_issuer = "https://evil.example.com"
    result = piu("login", "--no-browser")
    assert result.exit_code == 1
    assert "names issuer 'https://evil.example.com'" in result.stderr


def test_login_without_issuer_is_2(piu: Piu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIU_ISSUER")
    result = piu("login")
    assert result.exit_code == 2
    assert "piu config set issuer" in result.stderr


def test_idp_unreachable_is_6(piu: Piu, monkeypatch: pytest.MonkeyPatch) -> None:
    piu.idp = None  # the real network: nothing listens on port 9 (discard) of loopback
    monkeypatch.setenv("PIU_ISSUER", "http://127.0.0.1:9")
    result = piu("login", "--no-browser")
    assert result.exit_code == 6
    assert "identity provider unreachable at http://127.0.0.1:9" in result.stderr


def test_browser_opened_only_where_one_can_appear(
    piu: Piu, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert piu("login").exit_code == 0
    assert piu.opened == []  # no DISPLAY, no BROWSER: a server or a CI box
    monkeypatch.setenv("DISPLAY", ":0")
    assert piu("login", "--no-browser").exit_code == 0
    assert piu.opened == []
    monkeypatch.setenv("CI", "true")
    assert piu("login").exit_code == 0
    assert piu.opened == []
    monkeypatch.delenv("CI")
    assert piu("login").exit_code == 0
    import time

    for _ in range(100):  # the browser is started from a thread
        if piu.opened:
            break
        time.sleep(0.01)
    assert piu.opened == [f"{ISSUER}/device?user_code=WDJB-MJHT"]


def test_cached_token_is_the_bearer(piu: Piu) -> None:
    assert piu("login", "--no-browser").exit_code == 0
    assert piu.idp is not None
    assert piu("whoami").exit_code == 0
    sent = piu.fake.requests[-1].headers["Authorization"]
    assert sent == f"Bearer {piu.idp.issued[-1]}"


def test_piu_token_and_token_command_override_the_login(
    piu: Piu, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert piu("login", "--no-browser").exit_code == 0
    monkeypatch.setenv("PIU_TOKEN", TOKEN)
    assert piu("whoami").exit_code == 0
    assert piu.fake.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"
    import sys

    command = f"{sys.executable} -c 'print(\"from-command\")'"
    assert piu("--token-command", command, "whoami").exit_code == 0
    assert piu.fake.requests[-1].headers["Authorization"] == "Bearer from-command"


def test_expired_token_is_refreshed_once_and_saved(piu: Piu) -> None:
    assert piu("login", "--no-browser").exit_code == 0
    assert piu.idp is not None
    piu.now = NOW + 3600
    assert piu("whoami").exit_code == 0, piu("whoami").output
    refresh = piu.idp.form(piu.idp.requests[-1])
    assert refresh["grant_type"] == "refresh_token"
    assert refresh["refresh_token"] == "refresh-token-1"
    assert piu.fake.requests[-1].headers["Authorization"] == f"Bearer {piu.idp.issued[-1]}"
    data = cache(piu)
    assert data["expires_at"] == int(NOW) + 3600 + 600
    assert data["refresh_token"] == "refresh-token-2"  # rotated
    count = len(piu.idp.requests)
    assert piu("whoami").exit_code == 0
    assert len(piu.idp.requests) == count  # still valid: no second refresh


def test_refresh_refused_is_3_with_the_login_hint(piu: Piu) -> None:
    assert piu("login", "--no-browser").exit_code == 0
    assert piu.idp is not None
    piu.idp.refresh_error = "invalid_grant"
    piu.now = NOW + 3600
    result = piu("db-1.prod.example.org", "INC-1 debug")
    assert result.exit_code == 3
    assert "piu: not logged in (token expired): run `piu login`" in result.stderr
    assert piu.fake.requests == []


def test_expired_without_refresh_token_is_3(piu: Piu) -> None:
    assert piu.idp is not None
    piu.idp.with_refresh = False
    assert piu("login", "--no-browser").exit_code == 0
    piu.now = NOW + 601
    result = piu("list-access")
    assert result.exit_code == 3
    assert "not logged in (token expired): run `piu login`" in result.stderr


def test_a_login_at_another_issuer_is_not_used(piu: Piu, monkeypatch: pytest.MonkeyPatch) -> None:
    assert piu("login", "--no-browser").exit_code == 0
    monkeypatch.setenv("PIU_ISSUER", "https://other-idp.example.com")
    result = piu("whoami")
    assert result.exit_code == 3
    assert "the cached login is for https://idp.example.com" in result.stderr


def test_401_with_a_cached_login_says_log_in_again(piu: Piu) -> None:
    from piu_fakes import problem

    assert piu("login", "--no-browser").exit_code == 0
    piu.fake.queue.append(lambda r: problem(401, "invalid_token", "token revoked"))
    result = piu("whoami")
    assert result.exit_code == 3
    assert "run `piu login`" in result.stderr


def test_logout_deletes_the_cache_and_revokes(piu: Piu) -> None:
    assert piu("login", "--no-browser").exit_code == 0
    result = piu("logout")
    assert result.exit_code == 0
    assert "logged out (refresh token revoked)" in result.stdout
    assert not token_file(piu).exists()
    assert piu.idp is not None
    revoke = piu.idp.requests[-1]
    assert revoke.url.path == "/token/revocation"
    assert piu.idp.form(revoke)["token"] == "refresh-token-1"
    assert piu("logout").stdout.strip() == "not logged in"
    assert piu("whoami").exit_code == 3


def test_cache_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "piu" / "token.json"
    save(path, CachedLogin(ISSUER, "piu", "tok.en.x", f"{ISSUER}/token"))
    path.chmod(0o644)
    assert load(path) is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_corrupt_cache_is_not_logged_in(tmp_path: Path) -> None:
    paths = resolve_paths({"HOME": str(tmp_path)})
    paths.config_dir.mkdir(parents=True)
    paths.token_file.write_text("{not json")
    from piu.config import Settings

    with pytest.raises(errors.NotLoggedIn, match="unreadable"):
        cached_token(Settings(), paths, World())
