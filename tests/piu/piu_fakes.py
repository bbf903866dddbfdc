"""A fake Even behind httpx.MockTransport, and a runner for the piu CLI against it.

The fake signs real OpenSSH certificates (with a throwaway CA) for the public key piu sends,
so piu's own check that a certificate certifies its key is exercised too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from piu.cli import Runtime, cli

REQUEST_ID = "0b6c7f5e-3c1d-4d2a-9a57-0c2b8f1e6d41"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.secret-token-value.sig"
RECEIPT = {"seq": 7, "hash": "ab" * 32, "signature": "c2ln", "key_id": "cd" * 32}


def sign_certificate(ca: Ed25519PrivateKey, public_line: str, principal: str, serial: int) -> str:
    now = int(time.time())
    cert = (
        serialization.SSHCertificateBuilder()
        .public_key(serialization.load_ssh_public_key(public_line.encode()))  # type: ignore[arg-type]
        .serial(serial)
        .type(serialization.SSHCertificateType.USER)
        .key_id(f"even:{REQUEST_ID}:alice".encode())
        .valid_principals([principal.encode()])
        .valid_after(now - 60)
        .valid_before(now + 3600)
        .add_extension(b"permit-pty", b"")
        .sign(ca)
    )
    return cert.public_bytes().decode()


Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeEven:
    """Answers like Even; `queue` holds canned answers that take precedence, in order."""

    ca: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    requests: list[httpx.Request] = field(default_factory=list)
    queue: list[Handler] = field(default_factory=list)
    list_items: list[dict[str, Any]] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.queue:
            return self.queue.pop(0)(request)
        path, method = request.url.path, request.method
        if method == "POST" and path == "/v1/access-requests":
            return httpx.Response(201, json=self.grant(json.loads(request.content)))
        if method == "GET" and path == "/v1/access-requests":
            return httpx.Response(200, json={"items": self.list_items, "next": None})
        if method == "GET" and path == "/v1/whoami":
            return httpx.Response(200, json=WHOAMI)
        if method == "POST" and path == f"/v1/access-requests/{REQUEST_ID}/revoke":
            return httpx.Response(200, json={"id": REQUEST_ID, "status": "REVOKED"})
        return problem(404, "not_found", "no such resource")

    def grant(self, body: dict[str, Any]) -> dict[str, Any]:
        login, host, bastion = body.get("login", "alice"), body["hostname"], body.get("bastion")
        cert = sign_certificate(self.ca, body["public_key"], f"{login}@{host}", 42)
        bastion_cert = None
        if bastion:
            bastion_cert = sign_certificate(self.ca, body["public_key"], f"alice@{bastion}", 43)
        return {
            "id": REQUEST_ID,
            "status": "GRANTED",
            "username": "alice",
            "login": login,
            "hostname": host,
            "mode": body.get("mode", "certificate"),
            "certificate": cert,
            "serial": 42,
            "key_id": f"even:{REQUEST_ID}:alice",
            "principals": [f"{login}@{host}"],
            "valid_after": "2030-01-01T00:00:00Z",
            "valid_before": "2030-01-01T01:00:00Z",
            "bastion": bastion,
            "bastion_certificate": bastion_cert,
            "bastion_serial": 43 if bastion else None,
            "ssh_command": f"ssh {login}@{host}",
            "receipt": RECEIPT,
        }

    def posted(self) -> dict[str, Any]:
        posts = [r for r in self.requests if r.method == "POST"]
        assert posts, "nothing was posted"
        body: dict[str, Any] = json.loads(posts[-1].content)
        return body


WHOAMI = {
    "username": "alice",
    "groups": ["sre"],
    "roles": [],
    "issuer": "https://idp.example.com",
    "allowed": [
        {
            "rule": "sre-prod",
            "hosts": ["*.prod.example.org"],
            "logins": ["{username}", "deploy"],
            "modes": ["certificate", "push"],
            "max_lifetime_minutes": 60,
            "bastion": None,
        }
    ],
}


def problem(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"type": "about:blank", "title": "error", "status": status, "detail": detail}
    body["code"] = code
    return httpx.Response(
        status, json=body, headers={"Content-Type": "application/problem+json", **(headers or {})}
    )


@dataclass
class Piu:
    """Runs the CLI in-process against the fakes, recording sleeps, exec calls, browsers."""

    fake: FakeEven
    home: Path
    idp: FakeIdp | None = None
    now: float | None = None  # None: the real clock
    tty_in: bool = False
    tty_out: bool = False
    sleeps: list[float] = field(default_factory=list)
    execs: list[tuple[str, list[str]]] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)

    def __call__(self, *args: str, input: str | None = None) -> Result:
        runtime = Runtime(
            transport=self.fake.transport(),
            idp_transport=self.idp.transport() if self.idp else None,
            sleep=self.sleeps.append,
            clock=self.clock,
            execvp=lambda file, argv: self.execs.append((file, argv)),
            stdin_isatty=lambda: self.tty_in,
            stdout_isatty=lambda: self.tty_out,
            open_browser=lambda url: self.opened.append(url) is None,
        )
        return CliRunner().invoke(cli, list(args), obj=runtime, input=input)

    def clock(self) -> float:
        return time.time() if self.now is None else self.now

    @property
    def ssh_dir(self) -> Path:
        return self.home / ".ssh" / "piu"

    @property
    def config_dir(self) -> Path:
        return self.home / "config" / "piu"


# -- a fake OIDC issuer (discovery, device flow, refresh, revocation) ----------------------

ISSUER = "https://idp.example.com"


def b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def fake_jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token; piu never verifies it (Even does), it only reads claims."""
    header = b64url(json.dumps({"alg": "ES256", "typ": "at+jwt"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}.c2lnbmF0dXJl"


@dataclass
class FakeIdp:
    """Answers like an OIDC issuer; `polls` scripts the device-flow token answers in order."""

    issuer: str = ISSUER
    polls: list[str] = field(default_factory=list)  # error codes; when empty: success
    refresh_error: str | None = None
    with_refresh: bool = True
    expires_in: int = 600
    requests: list[httpx.Request] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    discovery_issuer: str | None = None

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def token(self, user: str = "alice") -> str:
        n = len(self.issued)
        token = fake_jwt({"preferred_username": user, "aud": "even", "n": n, "exp": 2_000_000_000})
        self.issued.append(token)
        return token

    def form(self, request: httpx.Request) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(request.content.decode()))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": self.discovery_issuer or self.issuer,
                    "device_authorization_endpoint": f"{self.issuer}/device/auth",
                    "token_endpoint": f"{self.issuer}/token",
                    "revocation_endpoint": f"{self.issuer}/token/revocation",
                },
            )
        if path == "/device/auth":
            return httpx.Response(
                200,
                json={
                    "device_code": "device-code-secret-123",
                    "user_code": "WDJB-MJHT",
                    "verification_uri": f"{self.issuer}/device",
                    "verification_uri_complete": f"{self.issuer}/device?user_code=WDJB-MJHT",
                    "expires_in": 600,
                    "interval": 2,
                },
            )
        if path == "/token/revocation":
            return httpx.Response(200)
        if path == "/token":
            return self.token_answer(self.form(request))
        return httpx.Response(404)

    def token_answer(self, form: dict[str, str]) -> httpx.Response:
        if form["grant_type"] == "refresh_token" and self.refresh_error:
            return httpx.Response(400, json={"error": self.refresh_error})
        if form["grant_type"] != "refresh_token" and self.polls:
            return httpx.Response(400, json={"error": self.polls.pop(0)})
        body: dict[str, Any] = {
            "access_token": self.token(),
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if self.with_refresh:
            body["refresh_token"] = f"refresh-token-{len(self.issued)}"
        return httpx.Response(200, json=body)
