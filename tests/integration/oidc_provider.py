"""A real OIDC issuer for integration tests: npm `oidc-provider` 9 run by the machine's Node.

Owns starting and stopping `idp/provider.mjs` and talking to it like a client would. Plain
functions and a handle (no pytest here; conftest wraps them in fixtures).

Invariants:
- The provider listens on 127.0.0.1 only, and every HTTP call here goes to loopback with
  `trust_env=False`, so no proxy variable can route a test request off the machine.
- The node process is ended by its PID (`stop()`: SIGTERM, then SIGKILL), never by name.
- Each user in `users` is a confidential client_credentials client whose client_id is the
  username; its tokens carry `preferred_username` = username and `groups` from the table.
  The public client `piu` does the device flow; its tokens name the account that logged in.
- Access tokens are RFC 9068 JWTs (`typ: at+jwt`) for a resource `urn:even-piu:audience:<aud>`,
  which the provider maps to `aud: <aud>`.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urljoin

import httpx

IDP_DIR = Path(__file__).resolve().parent / "idp"
AUDIENCE_URN = "urn:even-piu:audience:"
DEVICE_CLIENT_ID = "piu"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_USERS: dict[str, list[str]] = {"alice": ["sre"], "bob": [], "auditor1": ["audit"]}


class IdpUnavailable(RuntimeError):
    """Node, npm or the pinned `oidc-provider` package cannot be had on this machine."""


class IdpError(RuntimeError):
    """The provider failed to start, or refused a request a test expected to succeed."""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise IdpUnavailable("Node.js (`node`) is not on PATH; the test IdP needs Node >= 20")
    return node


def _pinned_version() -> str:
    package = json.loads((IDP_DIR / "package.json").read_text())
    return str(package["dependencies"]["oidc-provider"])


def _installed_version() -> str | None:
    installed = IDP_DIR / "node_modules" / "oidc-provider" / "package.json"
    try:
        return str(json.loads(installed.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_node_modules() -> None:
    """Install the pinned `oidc-provider` with `npm ci` unless it is already there."""
    _node()
    if _installed_version() == _pinned_version():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise IdpUnavailable("npm is not on PATH; cannot install oidc-provider for the test IdP")
    # Several pytest processes may get here at once; one installs, the others wait.
    lock_path = Path(tempfile.gettempdir()) / "even-piu-idp-npm-ci.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version() == _pinned_version():
            return
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=IDP_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if result.returncode != 0 or _installed_version() != _pinned_version():
        raise IdpUnavailable(
            f"`npm ci` in {IDP_DIR} failed (exit {result.returncode}): {result.stderr[-2000:]}"
        )


@dataclass(frozen=True)
class DeviceAuthorization:
    """The device authorization response (RFC 8628 §3.2)."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


class _FormParser(HTMLParser):
    """Collects the forms of a page: action, method and named input values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                {
                    "action": attributes.get("action", ""),
                    "method": attributes.get("method", "get").lower(),
                    "fields": {},
                }
            )
        elif tag == "input" and self.forms and "name" in attributes:
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value", "")


def _only_form(response: httpx.Response) -> tuple[str, dict[str, str]]:
    parser = _FormParser()
    parser.feed(response.text)
    if len(parser.forms) != 1:
        raise IdpError(
            f"expected one form at {response.url} (HTTP {response.status_code}), "
            f"found {len(parser.forms)}: {response.text[:500]}"
        )
    form = parser.forms[0]
    return urljoin(str(response.url), form["action"]), dict(form["fields"])


class OidcProvider:
    """A running provider. Use as a context manager or call `stop()` in a `finally`."""

    def __init__(
        self,
        process: subprocess.Popen[str],
        *,
        issuer: str,
        audience: str,
        users: dict[str, list[str]],
        client_secret: str,
        output: collections.deque[str],
        readers: list[threading.Thread],
    ) -> None:
        self.process = process
        self.pid = process.pid
        self.issuer = issuer
        self.audience = audience
        self.users = users
        self.client_secret = client_secret
        self.device_client_id = DEVICE_CLIENT_ID
        self._output = output
        self._readers = readers
        self.http = httpx.Client(trust_env=False, timeout=10.0)
        self.discovery: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def _load_discovery(self) -> None:
        response = self.http.get(f"{self.issuer}/.well-known/openid-configuration")
        response.raise_for_status()
        self.discovery = response.json()

    @property
    def jwks_url(self) -> str:
        return str(self.discovery["jwks_uri"])

    @property
    def token_endpoint(self) -> str:
        return str(self.discovery["token_endpoint"])

    def output(self) -> str:
        """The provider's recent stdout/stderr lines, for failure messages."""
        return "\n".join(self._output)

    def stop(self) -> None:
        """End the node process by PID: SIGTERM, then SIGKILL if it lingers. Idempotent."""
        with contextlib.suppress(Exception):
            self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for reader in self._readers:
            reader.join(timeout=2)

    def __enter__(self) -> OidcProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- tokens ------------------------------------------------------------------------------

    @staticmethod
    def resource_for(audience: str) -> str:
        """The resource indicator the provider maps to `aud: <audience>`."""
        return f"{AUDIENCE_URN}{audience}"

    def token_response(self, user: str, *, audience: str | None = None) -> httpx.Response:
        """The raw client_credentials response for `user` (for tests of refusals)."""
        return self.http.post(
            self.token_endpoint,
            data={
                "grant_type": "client_credentials",
                "client_id": user,
                "client_secret": self.client_secret,
                "resource": self.resource_for(audience or self.audience),
            },
        )

    def token(self, user: str, *, audience: str | None = None) -> str:
        """A JWT access token for `user` (client_credentials as the client named `user`)."""
        response = self.token_response(user, audience=audience)
        if response.status_code != 200:
            raise IdpError(f"token for {user!r} refused: {response.status_code} {response.text}")
        return str(response.json()["access_token"])

    # -- device flow (what `piu login` does, plus the browser side) ---------------------------

    def device_authorize(
        self, *, scope: str = "openid", audience: str | None = None
    ) -> DeviceAuthorization:
        """Start a device authorization as the public client `piu`."""
        response = self.http.post(
            str(self.discovery["device_authorization_endpoint"]),
            data={
                "client_id": self.device_client_id,
                "scope": scope,
                "resource": self.resource_for(audience or self.audience),
            },
        )
        if response.status_code != 200:
            raise IdpError(f"device authorization refused: {response.status_code} {response.text}")
        body = response.json()
        return DeviceAuthorization(
            device_code=body["device_code"],
            user_code=body["user_code"],
            verification_uri=body["verification_uri"],
            verification_uri_complete=body["verification_uri_complete"],
            expires_in=int(body["expires_in"]),
            interval=int(body.get("interval", 5)),
        )

    def device_login(
        self,
        username: str,
        *,
        verification_uri_complete: str | None = None,
        user_code: str | None = None,
        password: str = "any",
    ) -> None:
        """Play the browser: open the verification page, confirm, log in, consent.

        The dev interaction login accepts any login name and any password; the account's
        groups come from the provider's user table ([] for names not in it).
        """
        if verification_uri_complete is None:
            if user_code is None:
                raise ValueError("give verification_uri_complete or user_code")
            verification_uri_complete = str(
                httpx.URL(f"{self.issuer}/device", params={"user_code": user_code})
            )
        with httpx.Client(trust_env=False, timeout=10.0, follow_redirects=True) as browser:
            # 1. The page auto-posts the user code with an xsrf token (form_post page).
            action, fields = _only_form(browser.get(verification_uri_complete))
            # 2. The confirmation page: a form with confirm=yes.
            action, fields = _only_form(browser.post(action, data=fields))
            # 3. Confirming redirects to the login interaction.
            action, fields = _only_form(browser.post(action, data=fields))
            if fields.get("prompt") != "login":
                raise IdpError(f"expected the login form, got fields {sorted(fields)}")
            fields.update(login=username, password=password)
            # 4. Logging in redirects to the consent interaction.
            action, fields = _only_form(browser.post(action, data=fields))
            if fields.get("prompt") != "consent":
                raise IdpError(f"expected the consent form, got fields {sorted(fields)}")
            done = browser.post(action, data=fields)
        if done.status_code != 200 or "Sign-in Success" not in done.text:
            raise IdpError(f"device login did not succeed: {done.status_code} {done.text[:500]}")

    def device_token_response(self, device_code: str) -> httpx.Response:
        """One poll of the token endpoint with the device code."""
        return self.http.post(
            self.token_endpoint,
            data={
                "grant_type": DEVICE_CODE_GRANT,
                "device_code": device_code,
                "client_id": self.device_client_id,
            },
        )


def _drain(stream: IO[str], sink: collections.deque[str], ready: list[str]) -> None:
    # Keep reading so a chatty provider never blocks on a full pipe.
    for raw in stream:
        line = raw.rstrip("\n")
        if not ready and line.startswith("READY "):
            ready.append(line.removeprefix("READY ").strip())
        sink.append(line)


def start_oidc_provider(
    *,
    users: dict[str, list[str]] | None = None,
    audience: str = "even",
    port: int | None = None,
    alg: str = "ES256",
    rsa: bool = False,
    access_token_ttl: int = 600,
    keys: list[dict[str, Any]] | None = None,
    web_clients: dict[str, list[str]] | None = None,
    startup_timeout: float = 10.0,
) -> OidcProvider:
    """Start `provider.mjs` on 127.0.0.1 (a free port unless `port`) and wait for READY.

    `users` maps usernames to groups (default `DEFAULT_USERS`; pass `{**DEFAULT_USERS, ...}` to
    add some). `alg="RS256"` (or `rsa=True`) also gives the provider an RSA key. `keys` are
    private JWKs to sign with instead of fresh ones (e.g. to restart with the same keys).
    `web_clients` maps client ids to redirect URIs: confidential authorization-code clients
    (a web app signing people in through the login form), with the same `client_secret`.
    """
    ensure_node_modules()
    users = dict(DEFAULT_USERS if users is None else users)
    if DEVICE_CLIENT_ID in users:
        raise ValueError(f"{DEVICE_CLIENT_ID!r} is the device-flow client, not a user name")
    client_secret = os.urandom(16).hex()
    config = {
        "port": port or 0,
        "audience": audience,
        "users": users,
        "client_secret": client_secret,
        "device_client_id": DEVICE_CLIENT_ID,
        "access_token_ttl": access_token_ttl,
        "alg": alg,
        "rsa": rsa,
    }
    if keys is not None:
        config["keys"] = keys
    if web_clients:
        config["web_clients"] = [
            {"client_id": cid, "redirect_uris": uris} for cid, uris in web_clients.items()
        ]
    # The config goes in the environment, not argv, so the secret does not show in `ps`.
    env = {k: v for k, v in os.environ.items() if k not in {"PORT", "AUDIENCE"}}
    env.update(IDP_CONFIG=json.dumps(config), NODE_ENV="test")
    process = subprocess.Popen(
        [_node(), "provider.mjs"],
        cwd=IDP_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    output: collections.deque[str] = collections.deque(maxlen=200)
    ready: list[str] = []
    readers = [
        threading.Thread(target=_drain, args=(stream, output, ready), daemon=True)
        for stream in (process.stdout, process.stderr)
    ]
    for reader in readers:
        reader.start()
    provider = OidcProvider(
        process,
        issuer="",
        audience=audience,
        users=users,
        client_secret=client_secret,
        output=output,
        readers=readers,
    )
    try:
        deadline = time.monotonic() + startup_timeout
        while not ready:
            if process.poll() is not None:
                raise IdpError(f"provider exited with {process.returncode}:\n{provider.output()}")
            if time.monotonic() > deadline:
                raise IdpError(f"provider not READY in {startup_timeout} s:\n{provider.output()}")
            time.sleep(0.01)
        provider.issuer = ready[0]
        provider._load_discovery()
    except BaseException:
        provider.stop()
        raise
    return provider
