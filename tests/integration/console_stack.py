"""The console's browser-test stack and helpers: a real `oidc-provider` and `even serve`,
Debian's Chromium through Selenium, sign-in through the provider's own login form, and
screenshots (also copied to $EVEN_CONSOLE_SCREENSHOTS when set, to refresh docs/console/).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from harness.browser import Browser, browser_available
from harness.even_server import EvenServer, start_even
from harness.ports import free_port
from tests.conftest import make_live_even_dir, requires_real_component

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oidc_provider import IdpUnavailable, OidcProvider, start_oidc_provider

CONSOLE_CLIENT = "even-console"
SESSION_COOKIE = "__Host-even-session"
WAIT_SECONDS = 20


@dataclass
class Stack:
    idp: OidcProvider
    even: EvenServer
    config: Path
    shots: Path

    @property
    def url(self) -> str:
        return self.even.url

    def api(self, user: str) -> httpx.Client:
        token = self.idp.token(user)
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
            timeout=20,
        )


@contextlib.contextmanager
def open_stack(root: Path, users: dict[str, list[str]], extra_rules: str = "") -> Iterator[Stack]:
    """A real IdP (with the console as a web client) and a real `even serve` trusting it;
    `extra_rules` (YAML list items) are appended to the test policy's rules."""
    reason = browser_available()
    if reason is not None:
        requires_real_component(reason)
    port = free_port()
    callback = f"http://127.0.0.1:{port}/console/callback"
    try:
        idp = start_oidc_provider(users=users, web_clients={CONSOLE_CLIENT: [callback]})
    except IdpUnavailable as exc:
        requires_real_component(str(exc))
    try:
        config = make_live_even_dir(root / "even", port)
        if extra_rules:
            policy = root / "even" / "policy.yaml"
            policy.write_text(policy.read_text() + extra_rules)
        (root / "even" / "console_secret").write_text(idp.client_secret + "\n")
        document = yaml.safe_load(config.read_text())
        document["identity"]["issuers"] = [
            {
                "issuer": idp.issuer,
                "audience": "even",
                "username_claim": "preferred_username",
                "algorithms": ["ES256"],
            }
        ]
        document["console"] = {
            "issuer": idp.issuer,
            "client_id": CONSOLE_CLIENT,
            "client_secret_file": "console_secret",
        }
        config.write_text(yaml.safe_dump(document))
        even = start_even(config, log_path=root / "even.log", port=port)
    except BaseException:
        idp.stop()
        raise
    shots = root / "screenshots"
    shots.mkdir()
    print(f"console screenshots in {shots}")
    try:
        yield Stack(idp, even, config, shots)
    finally:
        even.stop()
        idp.stop()


# -- browser helpers ---------------------------------------------------------------------------


def wait_until(browser: Browser, condition: object) -> object:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # A page being replaced mid-look (a redirect landing) is retried, not a failure.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(browser.driver, WAIT_SECONDS, ignored_exceptions=ignored).until(condition)


def by(kind: str) -> str:
    from selenium.webdriver.common.by import By

    return str(getattr(By, kind))


def sign_in(stack: Stack, browser: Browser, user: str, *, shoot: bool = False) -> None:
    """Through the console's sign-in page and the provider's own login and consent forms."""
    from selenium.webdriver.support import expected_conditions as ec

    driver = browser.driver
    driver.get(stack.url + "/console/login")
    if shoot:
        screenshot(stack, browser, "sign-in")
    driver.find_element(by("LINK_TEXT"), "Sign in").click()
    login = wait_until(browser, ec.presence_of_element_located((by("NAME"), "login")))
    login.send_keys(user)  # type: ignore[attr-defined]
    driver.find_element(by("NAME"), "password").send_keys("any password")
    driver.find_element(by("CSS_SELECTOR"), "button[type=submit]").click()
    wait_until(browser, ec.presence_of_element_located((by("XPATH"), "//button[.='Continue']")))
    driver.find_element(by("XPATH"), "//button[.='Continue']").click()
    wait_until(browser, ec.url_to_be(stack.url + "/console/requests"))
    assert f"Signed in as {user}" in driver.find_element(by("CSS_SELECTOR"), ".who").text


def screenshot(stack: Stack, browser: Browser, name: str) -> Path:
    """The whole page as a PNG, 1000 px wide."""
    driver = browser.driver
    height = driver.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": 1000, "height": min(max(int(height), 400), 2400)}
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {**metrics, "deviceScaleFactor": 1, "mobile": False}
    )
    path = stack.shots / f"{name}.png"
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    extra = os.environ.get("EVEN_CONSOLE_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    return path


def session_cookie(browser: Browser) -> dict:
    cookie = browser.driver.get_cookie(SESSION_COOKIE)
    assert cookie is not None, "no console session cookie"
    return cookie


def console_http(stack: Stack, cookie: dict | None) -> httpx.Client:
    """A plain HTTP client presenting the browser's session cookie (as a stolen or replayed
    cookie would be presented)."""
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie['value']}"} if cookie else {}
    return httpx.Client(base_url=stack.url, headers=headers, trust_env=False, timeout=20)


def csrf_token(browser: Browser) -> str:
    field = browser.driver.find_element(by("CSS_SELECTOR"), "input[name=csrf_token]")
    return str(field.get_attribute("value"))


def public_key_line() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode() + " alice@laptop"


def request_in_form(browser: Browser, hostname: str, reason: str) -> None:
    from selenium.webdriver.support.ui import Select

    driver = browser.driver
    driver.find_element(by("ID"), "hostname").send_keys(hostname)
    Select(driver.find_element(by("ID"), "login")).select_by_value("alice")
    Select(driver.find_element(by("ID"), "mode")).select_by_value("certificate")
    driver.find_element(by("ID"), "reason").send_keys(reason)
    driver.find_element(by("ID"), "public_key").send_keys(public_key_line())
    driver.find_element(by("XPATH"), "//button[.='Request access']").click()


def my_request_ids(stack: Stack, user: str) -> set[str]:
    with stack.api(user) as api:
        answer = api.get("/v1/access-requests", params={"limit": 500})
    assert answer.status_code == 200, answer.text
    return {item["id"] for item in answer.json()["items"]}


def wait_for_text(browser: Browser, text: str) -> None:
    wait_until(browser, lambda d: text in d.find_element(by("TAG_NAME"), "body").text)
