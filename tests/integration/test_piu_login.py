"""`piu login` against the real npm oidc-provider, then its token at a stand-in Even.

piu runs as a real process (`python -m piu login --no-browser`) with HOME and the XDG dirs in
tmp_path; the test reads the verification URL from piu's stderr while piu polls, plays the
browser with the fixture's `device_login`, and checks what piu cached. A stand-in Even on
127.0.0.1 then records the bearer token piu sends for `whoami` and `request-access`; with the
cache's expiry moved into the past, piu asks for a new login (exit 3) and sends nothing.

Skipped with a reason when Node/npm are missing; failed instead when CI=true.
"""

from __future__ import annotations

import json
import os
import queue
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from oidc_provider import OidcProvider

pytestmark = [pytest.mark.integration, pytest.mark.idp]

USER = "piutest"
HOST = "web-1.lab.even.test"
REQUEST_ID = "01J9ZK6Q0B8W2C3D4E5F6G7H8J"
URL_RE = re.compile(r"^\s*(https?://\S+user_code=\S+)\s*$")


@dataclass
class StandInEven:
    """Answers `GET /v1/whoami` and `POST /v1/access-requests`; records Authorization headers."""

    ca: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    authorizations: list[str] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        even = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                even.authorizations.append(self.headers.get("Authorization", ""))
                if self.path != "/v1/whoami":
                    self._send(404, {"code": "not_found"})
                    return
                self._send(200, {"username": USER, "groups": [], "roles": [], "allowed": []})

            def do_POST(self) -> None:
                even.authorizations.append(self.headers.get("Authorization", ""))
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                self._send(201, even.grant(body))

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def grant(self, body: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        public_key = serialization.load_ssh_public_key(body["public_key"].encode())
        certificate = (
            serialization.SSHCertificateBuilder()
            .public_key(public_key)  # type: ignore[arg-type]
            .serial(1)
            .type(serialization.SSHCertificateType.USER)
            .key_id(f"even:{REQUEST_ID}:{USER}".encode())
            .valid_principals([f"{USER}@{body['hostname']}".encode()])
            .valid_after(now - 60)
            .valid_before(now + 600)
            .sign(self.ca)
            .public_bytes()
            .decode()
        )
        return {
            "id": REQUEST_ID,
            "status": "GRANTED",
            "username": USER,
            "login": USER,
            "hostname": body["hostname"],
            "mode": "certificate",
            "certificate": certificate,
            "serial": 1,
            "valid_before": "2030-01-01T00:00:00Z",
            "bastion": None,
            "bastion_certificate": None,
            "receipt": None,
        }


@pytest.fixture
def even() -> Iterator[StandInEven]:
    server = StandInEven()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def piu_env(tmp_path: Path, idp: OidcProvider, even_url: str = "") -> dict[str, str]:
    """A clean environment: no developer config, agent, display or proxy leaks in."""
    dropped = {"SSH_AUTH_SOCK", "DISPLAY", "WAYLAND_DISPLAY", "BROWSER"}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PIU_") and k not in dropped and "proxy" not in k.lower()
    }
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        PIU_ISSUER=idp.issuer,
        PIU_CLIENT_ID=idp.device_client_id,
        # The fixture maps this resource indicator to `aud: even`, the audience Even expects.
        PIU_RESOURCE=idp.resource_for("even"),
    )
    if even_url:
        env["PIU_EVEN_URL"] = even_url
    return env


def piu(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "piu", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def login(env: dict[str, str], idp: OidcProvider, user: str) -> tuple[str, str]:
    """Run `piu login`, play the browser when it shows the URL; (stdout, stderr) at exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "piu", "login", "--no-browser"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        url = _wait_for_url(lines, seen, deadline=time.monotonic() + 30)
        user_code = url.rsplit("user_code=", 1)[1]
        assert any(line.strip() == user_code for line in seen), seen  # shown on its own line
        idp.device_login(user, verification_uri_complete=url)
        stdout, _ = proc.communicate(timeout=30)  # piu polls every 5 s (the default interval)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    while not lines.empty():
        line = lines.get_nowait()
        if line is not None:
            seen.append(line)
    stderr = "".join(seen)
    assert proc.returncode == 0, f"piu login exited {proc.returncode}: {stderr}"
    return stdout, stderr


def _wait_for_url(lines: queue.Queue[str | None], seen: list[str], deadline: float) -> str:
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        match = URL_RE.match(line)
        if match:
            return match.group(1)
    raise AssertionError(f"piu login printed no verification URL: {''.join(seen)}")


def verified_claims(idp: OidcProvider, token: str) -> dict[str, Any]:
    with httpx.Client(trust_env=False) as http:
        jwks = http.get(idp.jwks_url).json()
    keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(jwks).keys}
    claims: dict[str, Any] = jwt.decode(
        token,
        keys[jwt.get_unverified_header(token)["kid"]].key,
        algorithms=["ES256"],
        audience="even",
        issuer=idp.issuer,
    )
    return claims


def test_login_caches_a_token_even_accepts_until_it_expires(
    tmp_path: Path, oidc_provider: OidcProvider, even: StandInEven
) -> None:
    env = piu_env(tmp_path, oidc_provider, even.url)
    stdout, stderr = login(env, oidc_provider, USER)
    assert f"Logged in as {USER} at {oidc_provider.issuer}" in stdout
    assert "warning" not in stderr  # the audience is the one Even expects

    cache_file = tmp_path / "config" / "piu" / "token.json"
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache_file.parent.stat().st_mode) == 0o700
    cache = json.loads(cache_file.read_text())
    token = cache["access_token"]
    claims = verified_claims(oidc_provider, token)
    assert claims["preferred_username"] == USER
    assert claims["client_id"] == "piu"
    assert cache["expires_at"] == pytest.approx(claims["exp"], abs=5)

    whoami = piu(env, "whoami")
    assert whoami.returncode == 0, whoami.stderr
    assert f"username: {USER}" in whoami.stdout
    granted = piu(env, "request-access", HOST, "INC-1 check the logs", "-o", "json")
    assert granted.returncode == 0, granted.stderr
    assert json.loads(granted.stdout)["id"] == REQUEST_ID
    assert even.authorizations == [f"Bearer {token}"] * 2
    assert token not in whoami.stdout + whoami.stderr + granted.stdout + granted.stderr

    cache["expires_at"] = int(time.time()) - 60
    cache_file.write_text(json.dumps(cache))
    expired = piu(env, "whoami")
    assert expired.returncode == 3
    assert "piu: not logged in (token expired): run `piu login`" in expired.stderr
    assert "Traceback" not in expired.stderr
    assert len(even.authorizations) == 2  # nothing was sent with the stale token

    logout = piu(env, "logout")
    assert logout.returncode == 0
    assert not cache_file.exists()
    assert "not logged in: run `piu login`" in piu(env, "whoami").stderr


def test_login_for_another_user_replaces_the_cache(
    tmp_path: Path, oidc_provider: OidcProvider
) -> None:
    env = piu_env(tmp_path, oidc_provider)
    login(env, oidc_provider, "alice")
    stdout, _ = login(env, oidc_provider, "bob")
    assert "Logged in as bob" in stdout
    cache = json.loads((tmp_path / "config" / "piu" / "token.json").read_text())
    assert verified_claims(oidc_provider, cache["access_token"])["preferred_username"] == "bob"
    shown = piu(env, "config", "show")
    assert "logged in as bob" in shown.stdout
    assert cache["access_token"] not in shown.stdout
