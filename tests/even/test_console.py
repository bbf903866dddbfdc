"""The console's parts in process: sessions, CSRF and origin checks, escaping, the chart, the
chain check, and its pages on the API's services (the browser tests cover the real sign-in)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from markupsafe import Markup

from audit.signing import AuditSigner
from even.api.app import create_app
from even.api.console import build_console, chart
from even.api.console.oidc import pkce_challenge
from even.api.console.render import make_environment, visible, when
from even.api.console.sessions import SessionStore
from even.clock import FixedClock
from even.config import ConsoleSettings, IdentitySettings, IssuerSettings, Settings
from even.errors import ConfigError
from even.identity import Identity
from even.service.audit_views import ChainCheck, DayCount
from even.wiring import Components, build_components
from tests.even.conftest import auth

ISSUER = "https://idp.example.test"
ORIGIN = "http://127.0.0.1:8080"  # the test settings' base_url
ALICE = Identity(username="alice", groups=("sre",), issuer=ISSUER, subject="alice")
AUDITOR = Identity(username="carl", groups=("audit",), issuer=ISSUER, subject="carl")


def console_settings(settings: Settings) -> Settings:
    issuer = IssuerSettings(issuer=ISSUER, audience="even", username_claim="preferred_username")
    identity = IdentitySettings(issuers=[issuer], dev_issuer=True)
    console = ConsoleSettings(issuer=ISSUER, client_id="even-console")
    return settings.model_copy(update={"identity": identity, "console": console})


@pytest.fixture
def app_parts(
    settings: Settings, clock: FixedClock
) -> Iterator[tuple[TestClient, Components, SessionStore]]:
    configured = console_settings(settings)
    components = build_components(configured, clock)
    app = create_app(configured, components=components)
    with TestClient(app, base_url=ORIGIN) as client:
        yield client, components, app.state.console.sessions


def signed_in(sessions: SessionStore, clock: FixedClock, who: Identity = ALICE) -> str:
    return sessions.create(who, (clock.now() + timedelta(minutes=10)).timestamp())


def cookie(session_id: str) -> dict[str, str]:
    return {"Cookie": f"__Host-even-session={session_id}"}


# -- pure parts --------------------------------------------------------------------------------


def test_visible_escapes_markup_and_shows_bidi_controls() -> None:
    shown = visible("<b>x</b>\u202eab\x1b[2J\\")
    assert isinstance(shown, Markup)
    assert "&lt;b&gt;x&lt;/b&gt;" in shown
    assert '<span class="esc">\\u202e</span>' in shown
    assert '<span class="esc">\\x1b</span>' in shown
    assert "\u202e" not in shown and "\x1b" not in shown
    assert shown.endswith("\\\\")  # a backslash is doubled, as even-audit show does
    assert visible(None) == "-"
    assert when("2026-01-02T03:04:05.123456Z") == Markup(
        '<time datetime="2026-01-02T03:04:05.123456Z">2026-01-02 03:04:05 UTC</time>'
    )


def test_attribute_values_get_the_escapes_as_text() -> None:
    template = make_environment().from_string(
        '<b aria-label="{{ v | plain }}">{{ v | visible }}</b>'
    )
    shown = template.render(v='x"\u202e<')
    assert shown.startswith('<b aria-label="x&#34;\\u202e&lt;">')
    assert '<span class="esc">\\u202e</span>' in shown


def test_pkce_challenge_is_rfc7636_s256() -> None:
    # RFC 7636 appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_chart_has_a_bar_per_day_scaled_to_a_round_top() -> None:
    days = [DayCount(f"2026-01-{d:02d}", c) for d, c in ((1, 0), (2, 3), (3, 7))]
    built = chart.build(days)
    assert [b.count for b in built.bars] == [0, 3, 7]
    assert built.bars[0].height == 0
    assert built.ticks[-1].value == 10  # 7 → a top of 10
    tallest = built.bars[2]
    assert tallest.y + tallest.height == built.baseline
    assert built.bars[1].height == pytest.approx(tallest.height * 3 / 7, abs=0.2)
    assert built.total == 10


def test_console_issuer_must_be_a_trusted_issuer(settings: Settings, clock: FixedClock) -> None:
    configured = console_settings(settings)
    elsewhere = ConsoleSettings(issuer="https://other.example.test", client_id="c")
    components = build_components(configured, clock)
    with pytest.raises(ConfigError, match=r"identity\.issuers"):
        build_console(configured.model_copy(update={"console": elsewhere}), components)
    with pytest.raises(ValueError, match="https"):
        ConsoleSettings(issuer="http://idp.example.test", client_id="c")


def test_without_console_config_there_is_no_console(client) -> None:
    assert client.get("/console/login").status_code == 404
    assert client.get("/console/static/console.css").status_code == 404


# -- sessions ----------------------------------------------------------------------------------


def test_session_ends_with_the_token_and_at_sign_out(components: Components, clock) -> None:
    sessions = SessionStore(engine=components.engine, clock=clock, max_hours=12)
    session_id = signed_in(sessions, clock)
    found = sessions.lookup(session_id)
    assert found is not None and found.identity.username == "alice"
    assert found.csrf_matches(found.csrf_token) and not found.csrf_matches("nope")
    clock.moment += timedelta(minutes=11)  # past the token's exp
    assert sessions.lookup(session_id) is None
    clock.moment -= timedelta(minutes=11)
    sessions.end(session_id)
    assert sessions.lookup(session_id) is None


def test_session_never_outlives_session_max_hours(components: Components, clock) -> None:
    sessions = SessionStore(engine=components.engine, clock=clock, max_hours=1)
    session_id = sessions.create(ALICE, (clock.now() + timedelta(hours=5)).timestamp())
    clock.moment += timedelta(minutes=61)
    assert sessions.lookup(session_id) is None


def test_sign_in_state_is_single_use_bound_to_its_browser(components: Components, clock) -> None:
    sessions = SessionStore(engine=components.engine, clock=clock, max_hours=12)
    browser = sessions.begin_login("state-1", "nonce", "verifier")
    assert sessions.finish_login("state-1", "another browser") is None
    # Used up by the failed attempt too: a state is never redeemable twice.
    assert sessions.finish_login("state-1", browser) is None
    browser = sessions.begin_login("state-2", "nonce", "verifier")
    pending = sessions.finish_login("state-2", browser)
    assert pending is not None and pending.code_verifier == "verifier"
    browser = sessions.begin_login("state-3", "nonce", "verifier")
    clock.moment += timedelta(minutes=11)
    assert sessions.finish_login("state-3", browser) is None


# -- the chain check ---------------------------------------------------------------------------


def test_chain_check_verifies_up_to_the_checkpoint(components: Components) -> None:
    components.access.record_policy_loaded("test")
    components.audit_log.checkpoint(force=True)
    check = ChainCheck(engine=components.engine, signer=components.signer)
    status = check.status()
    assert status.verified and status.checkpoint is not None and status.log_size >= 1
    components.access.record_policy_loaded("again")
    assert check.status().log_size == status.log_size + 1  # after the checkpoint: not yet covered
    stranger = ChainCheck(
        engine=components.engine, signer=AuditSigner.from_file(_other_key(components))
    )
    refused = stranger.status()
    assert not refused.verified and "unknown key" in (refused.problem or "")


def _other_key(components: Components):  # type: ignore[no-untyped-def]
    from audit.signing import generate_key_pem

    path = components.settings.path("other_audit_key")
    path.write_bytes(generate_key_pem())
    return path


# -- pages -------------------------------------------------------------------------------------


def test_pages_need_a_session(app_parts) -> None:
    client, _, _ = app_parts
    for path in ("/console/requests", "/console/grants", "/console/audit"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    unknown = client.get("/console/requests", headers=cookie("x" * 43), follow_redirects=False)
    assert unknown.status_code == 303


def test_request_form_posts_to_the_access_use_case(app_parts, clock, user_key) -> None:
    client, components, sessions = app_parts
    session_id = signed_in(sessions, clock)
    csrf = sessions.lookup(session_id).csrf_token  # type: ignore[union-attr]
    form = {
        "csrf_token": csrf,
        "hostname": "web-1.prod.even.test",
        "login": "alice",
        "reason": "debug INC-7 <b>now</b>",
        "public_key": user_key,
    }
    answer = client.post("/console/requests", data=form, headers=cookie(session_id))
    assert answer.status_code == 201, answer.text
    assert "ssh-ed25519-cert-v01@openssh.com" in answer.text
    items, _ = components.access.list_requests(ALICE, _filters())
    assert [i.status for i in items] == ["GRANTED"]
    # A policy refusal re-renders the form with the reason, and is audited like the API's.
    refused = client.post(
        "/console/requests",
        data={**form, "hostname": "db.elsewhere.test"},
        headers=cookie(session_id),
    )
    assert refused.status_code == 403 and "no_matching_rule" not in refused.text
    assert 'id="form-error"' in refused.text
    assert components.audit_log.events(_events("access.denied"))


def test_posts_are_refused_without_token_or_from_elsewhere(app_parts, clock) -> None:
    client, _, sessions = app_parts
    session_id = signed_in(sessions, clock)
    csrf = sessions.lookup(session_id).csrf_token  # type: ignore[union-attr]
    url = "/console/logout"
    headers = cookie(session_id)
    assert client.post(url, data={"x": "1"}, headers=headers).status_code == 403
    assert client.post(url, data={"csrf_token": "x"}, headers=headers).status_code == 403
    for extra in (
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:8081"},
    ):
        answer = client.post(url, data={"csrf_token": csrf}, headers={**headers, **extra})
        assert answer.status_code == 403, extra
    repeated = client.post(
        url,
        content=f"csrf_token={csrf}&csrf_token={csrf}",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert repeated.status_code == 400
    as_json = client.post(url, json={"csrf_token": csrf}, headers=headers)
    assert as_json.status_code == 415
    assert sessions.lookup(session_id) is not None  # none of them signed out
    fine = client.post(
        url,
        data={"csrf_token": csrf},
        headers={**headers, "Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"},
    )
    assert fine.status_code == 200 and "Signed out" in fine.text
    assert sessions.lookup(session_id) is None


def test_audit_page_is_for_auditors(app_parts, clock, user_key) -> None:
    client, components, sessions = app_parts
    bearer = auth(components, clock, "alice", ["sre"])
    granted = client.post(
        "/v1/access-requests",
        json={
            "hostname": "web-2.prod.even.test",
            "reason": "debug INC-9 here",
            "public_key": user_key,
        },
        headers=bearer,
    )
    assert granted.status_code == 201
    components.audit_log.checkpoint(force=True)
    alice = client.get("/console/audit", headers=cookie(signed_in(sessions, clock)))
    assert alice.status_code == 403
    auditor = cookie(signed_in(sessions, clock, AUDITOR))
    page = client.get("/console/audit", headers=auditor)
    assert page.status_code == 200
    assert page.text.count('class="bar"') == 30 and "Verified" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    filtered = client.get("/console/audit?type=access.granted&since=2000-01-01", headers=auditor)
    assert filtered.status_code == 200
    assert "<td>access.granted</td>" in filtered.text
    assert "<td>access.requested</td>" not in filtered.text
    assert client.get("/console/audit?type=nope", headers=auditor).status_code == 422
    assert client.get("/console/audit?since=yesterday", headers=auditor).status_code == 422
    export = client.get("/console/audit/export.jsonl", headers=auditor)
    assert export.status_code == 200 and export.text.endswith("\n")
    assert '"type":"audit.exported","username":"carl"' in export.text


def test_admin_sees_and_revokes_every_grant(app_parts, clock, user_key) -> None:
    client, components, sessions = app_parts
    bearer = auth(components, clock, "alice", ["sre"])
    granted = client.post(
        "/v1/access-requests",
        json={
            "hostname": "web-3.prod.even.test",
            "reason": "debug INC-10 here",
            "public_key": user_key,
        },
        headers=bearer,
    ).json()
    bob = Identity(username="bob", groups=(), issuer=ISSUER, subject="bob")
    bob_session = signed_in(sessions, clock, bob)
    assert granted["id"] not in client.get("/console/grants", headers=cookie(bob_session)).text
    bob_csrf = sessions.lookup(bob_session).csrf_token  # type: ignore[union-attr]
    forbidden = client.post(
        f"/console/grants/{granted['id']}/revoke",
        data={"csrf_token": bob_csrf},
        headers=cookie(bob_session),
    )
    assert forbidden.status_code in (403, 404)
    admin = Identity(username="sec", groups=("security",), issuer=ISSUER, subject="sec")
    admin_session = signed_in(sessions, clock, admin)
    page = client.get("/console/grants", headers=cookie(admin_session))
    assert granted["id"] in page.text and "you are an admin" in page.text
    csrf = sessions.lookup(admin_session).csrf_token  # type: ignore[union-attr]
    done = client.post(
        f"/console/grants/{granted['id']}/revoke",
        data={"csrf_token": csrf, "reason": "INC-10 over"},
        headers=cookie(admin_session),
        follow_redirects=False,
    )
    assert done.status_code == 303
    status = client.get(f"/v1/access-requests/{granted['id']}", headers=bearer).json()["status"]
    assert status == "REVOKED"


def _filters():  # type: ignore[no-untyped-def]
    from even.service.models import ListFilters

    return ListFilters()


def _events(kind: str):  # type: ignore[no-untyped-def]
    from even.service.audit_log import EventFilters

    return EventFilters(type=kind)
