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
    """Answers like Even; `queue` holds canned answers that take precedence, in order.

    Approvals (SPEC §11): with `approvals_needed` > 0 a request is answered 202 and kept
    pending; `caller` is who the token belongs to for approve/deny/cancel/review (the
    requester is alice), checked in the contract's order. `on_poll` maps the n-th
    GET /v1/access-requests/{id} (1-based) to what happens just before it is answered:
    ("approve", user), ("deny", user), ("cancel", "alice") or ("expire", "").
    """

    ca: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    requests: list[httpx.Request] = field(default_factory=list)
    queue: list[Handler] = field(default_factory=list)
    list_items: list[dict[str, Any]] = field(default_factory=list)
    approvals_needed: int = 0
    approvers: tuple[str, ...] = ("carol", "dave")
    approver_groups: tuple[str, ...] = ("sre-leads",)
    emergency_allowed: bool = False
    caller: str = "alice"
    on_poll: dict[int, tuple[str, str]] = field(default_factory=dict)
    polls: int = 0
    pending: dict[str, Any] | None = None  # the one request this fake keeps: body, state

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.queue:
            return self.queue.pop(0)(request)
        path, method = request.url.path, request.method
        if method == "POST" and path == "/v1/access-requests":
            return self.post_request(json.loads(request.content))
        if path.startswith(f"/v1/access-requests/{REQUEST_ID}") or path == "/v1/approvals":
            answer = self.approval_route(method, path, request)
            if answer is not None:
                return answer
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

    # -- approvals ---------------------------------------------------------------------------

    def post_request(self, body: dict[str, Any]) -> httpx.Response:
        if body.get("emergency"):
            if not self.emergency_allowed:
                return problem(403, "emergency_not_allowed", "rule sre-prod has no break-glass")
            return httpx.Response(201, json={**self.grant(body), "emergency": True})
        if self.approvals_needed <= 0:
            return httpx.Response(201, json=self.grant(body))
        self.pending = {"body": body, "status": "PENDING_APPROVAL", "approvals": []}
        self.pending["status_reason"] = None
        return httpx.Response(202, json=self.view())

    def view(self) -> dict[str, Any]:
        assert self.pending is not None
        state = self.pending
        if state["status"] == "GRANTED":
            answer = self.grant(state["body"])
        else:
            answer = {**self.grant(state["body"]), "status": state["status"]}
            for key in ("certificate", "bastion_certificate", "serial", "bastion_serial"):
                answer[key] = None
            answer.update(receipt=None, ssh_command=None, valid_after=None, valid_before=None)
        answer["status_reason"] = state["status_reason"]
        answer["reason"] = state["body"]["reason"]
        answer["approval"] = {
            "needed": self.approvals_needed,
            "approvals": [
                {"username": u, "time": "2030-01-01T00:00:00Z", "comment": c}
                for u, c in state["approvals"]
            ],
            "approver_groups": list(self.approver_groups),
            "expires_at": "2030-01-01T14:32:00Z",
        }
        return answer

    def act(self, verb: str, user: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """What Even does for `user` calling POST …/{verb}: the contract's checks, in order."""
        if self.pending is None:
            return problem(404, "not_found", "no such request")
        state, body = self.pending, body or {}
        if verb == "cancel":
            if user != "alice":
                return problem(403, "not_requester", "only the requester may cancel")
        elif user == "alice":
            return problem(403, "self_approval", "you cannot approve your own request")
        elif user not in self.approvers:
            return problem(403, "not_an_approver", "you are not an approver for this request")
        if verb == "review":
            return httpx.Response(200, json={**self.view(), "verdict": body.get("verdict")})
        if state["status"] != "PENDING_APPROVAL":
            return problem(409, "not_pending", f"the request is {state['status']}")
        if verb == "approve":
            if user in [u for u, _ in state["approvals"]]:
                return problem(409, "already_approved", "you have already approved it")
            state["approvals"].append((user, body.get("comment")))
            if len(state["approvals"]) >= self.approvals_needed:
                state["status"] = "GRANTED"
        elif verb == "deny":
            state["status"], state["status_reason"] = (
                "DENIED",
                f"denied by {user}: {body['comment']}",
            )
        elif verb == "cancel":
            state["status"] = "CANCELLED"
        return httpx.Response(200, json=self.view())

    def approval_route(
        self, method: str, path: str, request: httpx.Request
    ) -> httpx.Response | None:
        if method == "GET" and path == "/v1/approvals":
            pending = self.pending and self.pending["status"] == "PENDING_APPROVAL"
            return httpx.Response(
                200, json={"items": [self.view()] if pending else [], "next": None}
            )
        if method == "GET" and path == f"/v1/access-requests/{REQUEST_ID}" and self.pending:
            self.polls += 1
            event = self.on_poll.get(self.polls)
            if event is not None and event[0] == "expire":
                self.pending["status"] = "EXPIRED"  # the server's expiry job ran
            elif event is not None:
                self.act(event[0], event[1], {"comment": "scripted"})
            return httpx.Response(200, json=self.view())
        verb = path.rsplit("/", 1)[-1]
        if method == "POST" and verb in {"approve", "deny", "cancel", "review"}:
            body = json.loads(request.content) if request.content else None
            return self.act(verb, self.caller, body)
        return None

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
    tty_err: bool = False
    sleeps: list[float] = field(default_factory=list)
    execs: list[tuple[str, list[str]]] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    interrupt_after_sleeps: int | None = None  # Ctrl-C during the n-th sleep

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if (
            self.interrupt_after_sleeps is not None
            and len(self.sleeps) >= self.interrupt_after_sleeps
        ):
            raise KeyboardInterrupt

    def __call__(self, *args: str, input: str | None = None) -> Result:
        runtime = Runtime(
            transport=self.fake.transport(),
            idp_transport=self.idp.transport() if self.idp else None,
            sleep=self.sleep,
            clock=self.clock,
            execvp=lambda file, argv: self.execs.append((file, argv)),
            stdin_isatty=lambda: self.tty_in,
            stdout_isatty=lambda: self.tty_out,
            stderr_isatty=lambda: self.tty_err,
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
