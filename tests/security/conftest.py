"""Hostile-input tests: every case asserts the exact status and that nothing was issued.

The app runs in process with two issuers: the dev issuer (static keys) and an "external" issuer
whose discovery/JWKS fetches go through a counting fake, so tests can prove that hostile
tokens cause no outbound fetch (or at most one per cooldown).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import text

from audit import store as audit_store
from even.api.app import create_app
from even.clock import FixedClock
from even.config import IssuerSettings, RateLimitSettings, Settings
from even.identity.jwks import JwksCache
from even.identity.verifier import TokenVerifier, TrustedIssuer
from even.wiring import Components, build_components

EXTERNAL_ISSUER = "https://idp.even.test"
EXTERNAL_KID = "ext-1"


@dataclass
class CountingIdp:
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    urls: list[str] = field(default_factory=list)

    def jwk(self) -> dict[str, Any]:
        public = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {**public, "kid": EXTERNAL_KID, "alg": "ES256", "use": "sig"}

    def __call__(self, url: str) -> dict[str, Any]:
        self.urls.append(url)
        if url.endswith("/.well-known/openid-configuration"):
            return {"issuer": EXTERNAL_ISSUER, "jwks_uri": EXTERNAL_ISSUER + "/jwks"}
        if url == EXTERNAL_ISSUER + "/jwks":
            return {"keys": [self.jwk()]}
        raise AssertionError(f"fetch of a URL Even must never fetch: {url}")

    @property
    def jwks_fetches(self) -> int:
        return sum(1 for url in self.urls if url.endswith("/jwks"))


@dataclass
class Secure:
    client: TestClient
    components: Components
    clock: FixedClock
    idp: CountingIdp
    user_key: str

    def now(self) -> int:
        return int(self.clock.now().timestamp())

    def dev_token(self, user: str = "alice", groups: list[str] | None = None) -> str:
        assert self.components.dev_issuer is not None
        return self.components.dev_issuer.mint(user, groups or [], issued_at=self.now())

    def external_token(
        self, *, key: Any = None, headers: dict | None = None, alg: str = "ES256", **claims: Any
    ) -> str:
        body = {
            "iss": EXTERNAL_ISSUER,
            "aud": "even",
            "sub": "s",
            "preferred_username": "alice",
            "groups": ["sre"],
            "iat": self.now(),
            "exp": self.now() + 300,
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        head = {"typ": "at+jwt", "kid": EXTERNAL_KID, **(headers or {})}
        return jwt.encode(body, key or self.idp.key, algorithm=alg, headers=head)

    def post(self, body: dict[str, Any], token: str | None = None, **kwargs: Any):
        headers = {
            "Authorization": f"Bearer {token or self.dev_token()}",
            **kwargs.pop("headers", {}),
        }
        return self.client.post("/v1/access-requests", json=body, headers=headers, **kwargs)

    def body(self, **overrides: Any) -> dict[str, Any]:
        return {
            "hostname": "db-1.prod.even.test",
            "reason": "debug INC-123 latency",
            "public_key": self.user_key,
            **overrides,
        }

    def assert_nothing_issued(self) -> None:
        with self.components.engine.connect() as conn:
            statuses = conn.execute(text("SELECT status FROM access_requests")).scalars().all()
            records = list(audit_store.iter_records(conn))
        assert "GRANTED" not in statuses and "PUSHING" not in statuses
        issued = {"access.granted", "access.push_started"}
        assert not [r for r in records if r["type"] in issued]


def _keypair(directory: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "k")], check=True
    )
    return (directory / "k.pub").read_text().strip()


def make_secure(settings: Settings, clock: FixedClock, tmp_path: Path) -> Iterator[Secure]:
    idp = CountingIdp()
    components = build_components(settings, clock)
    external = TrustedIssuer(
        IssuerSettings(
            issuer=EXTERNAL_ISSUER,
            audience="even",
            username_claim="preferred_username",
            algorithms=["ES256"],
        ),
        JwksCache(EXTERNAL_ISSUER, clock=clock, fetch=idp, cooldown=timedelta(seconds=60)),
    )
    dev = components.verifier._issuers[settings.dev_issuer_url]
    components.verifier = TokenVerifier([dev, external], clock=clock)
    with TestClient(create_app(settings, components=components)) as client:
        yield Secure(client, components, clock, idp, _keypair(tmp_path))


@pytest.fixture
def secure(settings: Settings, clock: FixedClock, tmp_path: Path) -> Iterator[Secure]:
    """Rate limits out of the way, so each case reaches the check it is about."""
    generous = RateLimitSettings(
        per_user_per_second=10_000, burst=10_000, failed_auth_per_ip_per_second=10_000
    )
    yield from make_secure(settings.model_copy(update={"rate_limits": generous}), clock, tmp_path)
