"""Issue 17 (part 1): the web console in a real browser.

Debian's Chromium, driven by chromedriver through Selenium, signs in through the real
`oidc-provider` login form (authorization code + PKCE), against a real `even serve`. The
console's answers are then checked through the API, as a user or auditor would.

Screenshots of every page land in a temporary directory (printed), and also in
$EVEN_CONSOLE_SCREENSHOTS when that is set (how docs/console/ is refreshed).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from harness.browser import Browser

sys.path.insert(0, str(Path(__file__).resolve().parent))
from console_stack import (
    SESSION_COOKIE,
    Stack,
    by,
    console_http,
    csrf_token,
    my_request_ids,
    open_stack,
    public_key_line,
    request_in_form,
    screenshot,
    session_cookie,
    sign_in,
    wait_for_text,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.idp, pytest.mark.browser]

USERS = {"alice": ["sre"], "bob": [], "auditor1": ["audit"], "sec1": ["security"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with open_stack(tmp_path_factory.mktemp("console"), USERS) as opened:
        yield opened


@pytest.fixture
def browser() -> Iterator[Browser]:
    driver = Browser(width=1000, height=900)
    try:
        yield driver
    finally:
        driver.stop()


# -- the scenarios -----------------------------------------------------------------------------


def test_alice_requests_sees_and_revokes_her_grant(stack: Stack, browser: Browser) -> None:
    from selenium.webdriver.support import expected_conditions as ec

    sign_in(stack, browser, "alice", shoot=True)
    driver = browser.driver
    # The form offers what the policy allows alice (the same data as /v1/whoami `allowed`).
    allowed = driver.find_element(by("CSS_SELECTOR"), "table.allowed").text
    assert "sre-prod" in allowed and "*.prod.even.test" in allowed
    request_in_form(browser, "web-1.prod.even.test", "debug INC-123 from the console")
    wait_until(browser, ec.presence_of_element_located((by("ID"), "certificate")))
    certificate = driver.find_element(by("ID"), "certificate").get_attribute("value") or ""
    assert certificate.startswith("ssh-ed25519-cert-v01@openssh.com ")
    screenshot(stack, browser, "request-granted")
    request_id = driver.find_element(by("ID"), "request-id").text

    with stack.api("alice") as api:
        shown = api.get(f"/v1/access-requests/{request_id}").json()
    assert shown["status"] == "GRANTED" and shown["certificate"] == certificate
    assert shown["reason"] == "debug INC-123 from the console"

    driver.get(stack.url + "/console/requests")
    assert request_id in driver.find_element(by("CSS_SELECTOR"), "table.list").text
    screenshot(stack, browser, "my-requests")

    driver.get(stack.url + "/console/grants")
    row = driver.find_element(by("XPATH"), f"//tr[td/a/code[.='{request_id}']]")
    screenshot(stack, browser, "active-grants")
    row.find_element(by("NAME"), "reason").send_keys("done with INC-123")
    row.find_element(by("XPATH"), ".//button[.='Revoke']").click()
    wait_until(browser, ec.url_contains("revoked="))
    assert f"Revoked {request_id}" in driver.find_element(by("CSS_SELECTOR"), ".notice").text

    with stack.api("alice") as api:
        after = api.get(f"/v1/access-requests/{request_id}").json()
    assert after["status"] == "REVOKED"
    with stack.api("auditor1") as api:
        records = api.get("/v1/audit/events", params={"type": "access.revoked"}).json()
    revoked = [r for r in records["items"] if r["request_id"] == request_id]
    assert len(revoked) == 1 and revoked[0]["username"] == "alice"


def test_posts_need_the_csrf_token_and_the_same_origin(stack: Stack, browser: Browser) -> None:
    sign_in(stack, browser, "alice")
    cookie = session_cookie(browser)
    token = csrf_token(browser)
    before = my_request_ids(stack, "alice")
    form = {"hostname": "web-2.prod.even.test", "reason": "INC-124 csrf", "login": "alice"}
    form["public_key"] = public_key_line()
    with console_http(stack, cookie) as http:
        missing = http.post("/console/requests", data=form)
        wrong = http.post("/console/requests", data={**form, "csrf_token": "x" * 43})
        # The right token, but the browser says the post came from another site.
        cross_site = http.post(
            "/console/requests",
            data={**form, "csrf_token": token},
            headers={"Sec-Fetch-Site": "cross-site", "Origin": "http://127.0.0.1:1"},
        )
        null_origin = http.post(
            "/console/requests", data={**form, "csrf_token": token}, headers={"Origin": "null"}
        )
    for answer in (missing, wrong, cross_site, null_origin):
        assert answer.status_code == 403, answer.text
        assert "text/html" in answer.headers["content-type"]
    assert my_request_ids(stack, "alice") == before, "a refused post changed something"

    # The same form, posted by a page of another origin in the same browser.
    evil = _serve_page(_cross_site_form(stack.url, token, form))
    try:
        browser.driver.get(evil.url)
        browser.driver.find_element(by("ID"), "go").click()
        wait_for_text(browser, "cross-site form posts are refused")
    finally:
        evil.stop()
    assert my_request_ids(stack, "alice") == before


def test_revoke_without_csrf_changes_nothing(stack: Stack, browser: Browser) -> None:
    sign_in(stack, browser, "alice")
    with stack.api("alice") as api:
        granted = api.post(
            "/v1/access-requests",
            json={
                "hostname": "web-3.prod.even.test",
                "reason": "INC-125 keep",
                "public_key": public_key_line(),
            },
        ).json()
    with console_http(stack, session_cookie(browser)) as http:
        answer = http.post(f"/console/grants/{granted['id']}/revoke", data={"reason": "x"})
    assert answer.status_code == 403
    with stack.api("alice") as api:
        assert api.get(f"/v1/access-requests/{granted['id']}").json()["status"] == "GRANTED"


def test_cookie_flags_and_security_headers(stack: Stack, browser: Browser) -> None:
    sign_in(stack, browser, "alice")
    cookie = session_cookie(browser)
    assert cookie["name"].startswith("__Host-")
    assert cookie["secure"] is True and cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert cookie["domain"] in ("127.0.0.1", ".127.0.0.1") and "expiry" in cookie
    with console_http(stack, cookie) as http:
        for path in ("/console/login", "/console/requests", "/console/grants"):
            answer = http.get(path)
            policy = answer.headers["content-security-policy"]
            assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
            assert "unsafe-inline" not in policy
            assert "<script" not in answer.text.lower() and " style=" not in answer.text
            assert answer.headers["x-frame-options"] == "DENY"


def test_a_hostile_reason_renders_escaped_and_inert(stack: Stack, browser: Browser) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    reason = "<script>alert(1)</script> INC-126 \u202egnp.exe"
    with stack.api("alice") as api:
        answer = api.post(
            "/v1/access-requests",
            json={
                "hostname": "web-4.prod.even.test",
                "reason": reason,
                "public_key": public_key_line(),
            },
        )
    assert answer.status_code == 201, answer.text
    sign_in(stack, browser, "alice")
    driver = browser.driver
    for path in ("/console/requests", "/console/grants"):
        driver.get(stack.url + path)
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text
        cells = [c.text for c in driver.find_elements(by("CSS_SELECTOR"), "td.reason")]
        assert "<script>alert(1)</script> INC-126 \\u202egnp.exe" in cells, cells
        assert "\u202e" not in driver.page_source
        assert "<script>alert(1)</script>" not in driver.page_source
    screenshot(stack, browser, "escaped-reason")


def test_auditor_sees_chart_and_exports_a_verifiable_log(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    with stack.api("alice") as api:
        api.post(
            "/v1/access-requests",
            json={
                "hostname": "db-9.prod.even.test",
                "reason": "INC-127 chart",
                "public_key": public_key_line(),
            },
        )
    sign_in(stack, browser, "auditor1")
    driver = browser.driver
    driver.get(stack.url + "/console/audit")
    assert driver.find_element(by("CSS_SELECTOR"), "h1").text == "Audit log"
    bars = driver.find_elements(by("CSS_SELECTOR"), "figure.chart svg rect.bar")
    assert len(bars) == 30
    assert any(float(bar.get_attribute("height") or 0) > 0 for bar in bars)
    status = driver.find_element(by("CSS_SELECTOR"), "#chain-heading ~ p[role=status]").text
    assert status.startswith("Verified"), status

    # Filters narrow the events (a GET form: works without JavaScript).
    driver.get(stack.url + "/console/audit?type=access.granted&username=alice")
    types = {
        c.text for c in driver.find_elements(by("CSS_SELECTOR"), "table.events td:nth-child(3)")
    }
    assert types == {"access.granted"}

    link = driver.find_element(by("PARTIAL_LINK_TEXT"), "Export the whole log")
    export = tmp_path / "audit.jsonl"
    with console_http(stack, session_cookie(browser)) as http:
        answer = http.get(str(link.get_attribute("href")))
    assert answer.status_code == 200
    export.write_bytes(answer.content)
    public_key = tmp_path / "audit.pem"
    public_key.write_text(httpx.get(stack.url + "/v1/audit/public-key", trust_env=False).text)
    verified = subprocess.run(
        [sys.executable, "-m", "audit.cli", "verify", str(export), "--public-key", str(public_key)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("VALID: ")
    # The export checkpointed the head: the page now verifies the chain up to it.
    driver.get(stack.url + "/console/audit")
    status = driver.find_element(by("CSS_SELECTOR"), "#chain-heading ~ p[role=status]").text
    exported = int(verified.stdout.split()[1])  # "VALID: N records, …"
    covered = re.match(r"Verified: records 1–(\d+) ", status)
    assert covered is not None and int(covered.group(1)) >= exported, status
    screenshot(stack, browser, "audit")
    # The export is audited as the API's is: by the auditor who signed in.
    with stack.api("auditor1") as api:
        records = api.get("/v1/audit/events", params={"type": "audit.exported"}).json()
    assert any(r["username"] == "auditor1" for r in records["items"])


def test_alice_gets_403_on_the_audit_pages(stack: Stack, browser: Browser) -> None:
    sign_in(stack, browser, "alice")
    driver = browser.driver
    assert not driver.find_elements(by("LINK_TEXT"), "Audit")
    driver.get(stack.url + "/console/audit")
    assert driver.find_element(by("CSS_SELECTOR"), "h1").text == "Not allowed"
    screenshot(stack, browser, "forbidden")
    with console_http(stack, session_cookie(browser)) as http:
        assert http.get("/console/audit").status_code == 403
        assert http.get("/console/audit/export.jsonl").status_code == 403


def test_after_sign_out_the_old_cookie_is_refused(stack: Stack, browser: Browser) -> None:
    sign_in(stack, browser, "alice")
    cookie = session_cookie(browser)
    token = csrf_token(browser)
    with console_http(stack, cookie) as http:
        assert http.get("/console/requests").status_code == 200
    browser.driver.find_element(by("XPATH"), "//button[.='Sign out']").click()
    wait_for_text(browser, "Signed out")
    screenshot(stack, browser, "signed-out")
    assert browser.driver.get_cookie(SESSION_COOKIE) is None
    before = my_request_ids(stack, "alice")
    with console_http(stack, cookie) as http:
        page = http.get("/console/requests")
        post = http.post(
            "/console/requests",
            data={"csrf_token": token, "hostname": "web-5.prod.even.test", "reason": "INC-128"},
        )
    assert page.status_code == 303 and page.headers["location"] == "/console/login"
    assert post.status_code == 303
    assert my_request_ids(stack, "alice") == before


def test_callback_refuses_answers_this_browser_did_not_start(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, trust_env=False, timeout=20) as http:
        started = http.get("/console/login/start")
        assert started.status_code == 303
        location = httpx.URL(started.headers["location"])
        assert location.params["code_challenge_method"] == "S256"
        assert location.params["redirect_uri"] == stack.url + "/console/callback"
        state = location.params["state"]
        assert {"nonce", "code_challenge"} <= set(location.params)
        set_cookie = started.headers["set-cookie"]
        assert set_cookie.startswith("__Host-even-signin=")
        for flag in ("HttpOnly", "Path=/", "SameSite=lax", "Secure"):
            assert flag in set_cookie, set_cookie
        # Another browser (no sign-in cookie) brings the state back: refused, and used up.
        foreign = http.get(
            "/console/callback", params={"state": state, "code": "x"}, headers={"Cookie": ""}
        )
        assert foreign.status_code == 401
        assert "__Host-even-session" not in foreign.headers.get("set-cookie", "")
        denied = http.get("/console/callback", params={"error": "access_denied", "state": state})
        assert denied.status_code == 401


# -- a page of another origin ------------------------------------------------------------------


@dataclass
class _Page:
    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _serve_page(html: str) -> _Page:
    body = html.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return _Page(server, thread)


def _cross_site_form(even_url: str, token: str, form: dict[str, str]) -> str:
    from html import escape

    fields = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
        for k, v in {**form, "csrf_token": token}.items()
    )
    return (
        f'<!doctype html><form method="post" action="{even_url}/console/requests">'
        f'{fields}<button id="go" type="submit">win a prize</button></form>'
    )
