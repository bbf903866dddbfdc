"""Issue 17 (part 2): approvals and break-glass reviews in a real browser.

The same stack as the other console browser tests (Debian's Chromium through Selenium, the
real `oidc-provider` login form, a real `even serve`), with a rule that needs one approval
from `sre-leads` and allows break-glass. Each person signs in through the provider's form in
turn; what the console did is then checked through the API and the audit log.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.browser import Browser

sys.path.insert(0, str(Path(__file__).resolve().parent))
from console_stack import (
    Stack,
    by,
    open_stack,
    public_key_line,
    request_in_form,
    screenshot,
    sign_in,
    wait_for_text,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.idp, pytest.mark.browser]

USERS = {"alice": ["sre"], "carol": ["sre-leads"], "auditor1": ["audit"]}
APPROVAL_RULE = """
  - name: prod-db
    subjects: {users: [alice]}
    hosts: ["db-*.secure.even.test"]
    logins: ["{username}"]
    approval: {approvers: {groups: [sre-leads]}, count: 1, pending_minutes: 60}
    emergency: {allowed: true, max_lifetime_minutes: 30, review_within_hours: 24}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("console-approvals")
    with open_stack(root, USERS, APPROVAL_RULE) as opened:
        yield opened


@pytest.fixture
def browser() -> Iterator[Browser]:
    driver = Browser(width=1000, height=900)
    try:
        yield driver
    finally:
        driver.stop()


def switch_user(stack: Stack, browser: Browser, user: str) -> None:
    """Sign in as someone else in the same browser. Cookies are per host, not per port, so
    this also ends the identity provider's own session: the next sign-in shows its form."""
    browser.driver.get(stack.url + "/console/login")
    browser.driver.delete_all_cookies()
    sign_in(stack, browser, user)


def audit_records(stack: Stack, kind: str, request_id: str) -> list[dict]:
    with stack.api("auditor1") as api:
        answer = api.get("/v1/audit/events", params={"type": kind, "limit": 500})
    assert answer.status_code == 200, answer.text
    return [r for r in answer.json()["items"] if r["request_id"] == request_id]


def test_carol_approves_alices_request_and_alice_revokes_it(stack: Stack, browser: Browser) -> None:
    driver = browser.driver
    sign_in(stack, browser, "alice")
    request_in_form(browser, "db-1.secure.even.test", "migrate INC-200 schema")
    wait_for_text(browser, "Waiting for approval")
    page = driver.find_element(by("TAG_NAME"), "main").text
    assert "members of sre-leads" in page and "Approvals: 0 of 1" in page
    assert driver.find_elements(by("XPATH"), "//button[.='Cancel this request']")
    request_id = driver.find_element(by("ID"), "request-id").text
    screenshot(stack, browser, "request-pending")
    with stack.api("alice") as api:
        shown = api.get(f"/v1/access-requests/{request_id}").json()
    assert shown["status"] == "PENDING_APPROVAL" and shown["certificate"] is None

    switch_user(stack, browser, "carol")
    driver.find_element(by("LINK_TEXT"), "Approvals").click()
    wait_for_text(browser, "Pending approvals")
    row = driver.find_element(by("XPATH"), f"//tr[.//a[@href='/console/requests/{request_id}']]")
    assert "alice" in row.text and "migrate INC-200 schema" in row.text
    row.find_element(by("NAME"), "comment").send_keys("OK for INC-200")
    screenshot(stack, browser, "approvals")
    row.find_element(by("XPATH"), ".//button[.='Approve']").click()
    wait_until(browser, lambda d: "done=granted" in d.current_url)
    assert "access is now granted" in driver.find_element(by("CSS_SELECTOR"), ".notice").text

    with stack.api("alice") as api:
        granted = api.get(f"/v1/access-requests/{request_id}").json()
    assert granted["status"] == "GRANTED" and granted["certificate"]
    assert [a["username"] for a in granted["approval"]["approvals"]] == ["carol"]
    approved = audit_records(stack, "access.approved", request_id)
    assert len(approved) == 1 and "carol" in (
        approved[0]["username"],
        approved[0]["details"].get("approver"),
    ), approved
    assert approved[0]["details"].get("comment") == "OK for INC-200", approved

    switch_user(stack, browser, "alice")
    driver.get(f"{stack.url}/console/requests/{request_id}")
    page = driver.find_element(by("TAG_NAME"), "main").text
    assert "Approvals: 1 of 1" in page and "carol approved" in page and "OK for INC-200" in page
    screenshot(stack, browser, "request-approved")
    driver.get(stack.url + "/console/grants")
    row = driver.find_element(by("XPATH"), f"//tr[td/a/code[.='{request_id}']]")
    row.find_element(by("NAME"), "reason").send_keys("INC-200 done")
    row.find_element(by("XPATH"), ".//button[.='Revoke']").click()
    wait_until(browser, lambda d: "revoked=" in d.current_url)
    with stack.api("alice") as api:
        assert api.get(f"/v1/access-requests/{request_id}").json()["status"] == "REVOKED"


def test_alice_cancels_her_pending_request(stack: Stack, browser: Browser) -> None:
    with stack.api("alice") as api:
        answer = api.post(
            "/v1/access-requests",
            json={
                "hostname": "db-2.secure.even.test",
                "reason": "INC-201 maybe",
                "public_key": public_key_line(),
            },
        )
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["id"]
    sign_in(stack, browser, "alice")
    browser.driver.get(f"{stack.url}/console/requests/{request_id}")
    browser.driver.find_element(by("XPATH"), "//button[.='Cancel this request']").click()
    wait_for_text(browser, "Cancelled.")
    with stack.api("alice") as api:
        assert api.get(f"/v1/access-requests/{request_id}").json()["status"] == "CANCELLED"
    assert audit_records(stack, "access.cancelled", request_id)


def test_break_glass_is_granted_at_once_and_reviewed_by_carol(
    stack: Stack, browser: Browser
) -> None:
    driver = browser.driver
    sign_in(stack, browser, "alice")
    driver.find_element(by("NAME"), "emergency").click()
    request_in_form(browser, "db-3.secure.even.test", "outage INC-202 now")
    wait_for_text(browser, "BREAK-GLASS")
    certificate = driver.find_element(by("ID"), "certificate").get_attribute("value") or ""
    assert certificate.startswith("ssh-ed25519-cert-v01@openssh.com ")
    request_id = driver.find_element(by("ID"), "request-id").text

    switch_user(stack, browser, "carol")
    driver.find_element(by("LINK_TEXT"), "Reviews").click()
    wait_for_text(browser, "Break-glass reviews")
    row = driver.find_element(by("XPATH"), f"//tr[.//a[@href='/console/requests/{request_id}']]")
    row.find_element(by("CSS_SELECTOR"), "input[value=justified]").click()
    row.find_element(by("NAME"), "comment").send_keys("INC-202 was a real outage")
    screenshot(stack, browser, "reviews")
    row.find_element(by("XPATH"), ".//button[.='Record review']").click()
    wait_until(browser, lambda d: "done=reviewed" in d.current_url)
    reviewed = audit_records(stack, "access.reviewed", request_id)
    assert len(reviewed) == 1, reviewed
    assert reviewed[0]["details"].get("verdict") == "justified", reviewed
