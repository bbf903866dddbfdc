"""Issue 2, must-show 3: Even validates access tokens from a real OIDC provider (npm
`oidc-provider`, JWT access tokens), and refuses forged or misdirected ones with 401 and
`WWW-Authenticate`, fetching the JWKS at most once per cooldown for unknown key ids.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from even.api.app import create_app
from even.clock import FixedClock, SystemClock
from even.config import IdentitySettings, IssuerSettings, RateLimitSettings, load_settings
from even.identity.jwks import JwksCache
from even.store.db import make_engine
from even.store.schema import upgrade
from even.wiring import build_components
from tests.conftest import make_even_dir

pytestmark = [pytest.mark.idp]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict, dict]:
    header, claims, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(claims))),
    )


@pytest.fixture
def even(tmp_path, oidc_provider):
    config = make_even_dir(tmp_path / "even")
    base = load_settings(config)
    issuer = IssuerSettings(
        issuer=oidc_provider.issuer,
        audience="even",
        username_claim="preferred_username",
        algorithms=["ES256", "RS256"],
        jwks_refetch_cooldown_seconds=60,
    )
    # Rate limits out of the way: the cases here are about token checks, not bursts.
    generous = RateLimitSettings(
        per_user_per_second=10_000, burst=10_000, failed_auth_per_ip_per_second=10_000
    )
    settings = base.model_copy(
        update={"identity": IdentitySettings(issuers=[issuer]), "rate_limits": generous}
    )
    upgrade(make_engine(settings.resolved_database_url))
    clock = FixedClock(SystemClock().now())
    components = build_components(settings, clock)
    with TestClient(create_app(settings, components=components)) as client:
        yield client, components, clock


def _whoami(client: TestClient, token: str):
    return client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})


def _assert_401(response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.headers["content-type"] == "application/problem+json"


def test_real_provider_token_is_accepted(even, oidc_provider) -> None:
    client, _, _ = even
    me = _whoami(client, oidc_provider.token("alice"))
    assert me.status_code == 200, me.text
    assert (me.json()["username"], me.json()["groups"]) == ("alice", ["sre"])
    assert me.json()["issuer"] == oidc_provider.issuer


def test_wrong_audience(even, oidc_provider) -> None:
    _assert_401(_whoami(even[0], oidc_provider.token("alice", audience="not-even")))


def test_wrong_issuer(even, other_oidc_provider) -> None:
    _assert_401(_whoami(even[0], other_oidc_provider.token("alice")))


def test_expired_token(even, oidc_provider) -> None:
    client, _, clock = even
    token = oidc_provider.token("alice")
    clock.moment += timedelta(hours=1)  # the fixture's tokens live 10 minutes
    _assert_401(_whoami(client, token))


@pytest.mark.parametrize("alg", ["none", "None", "nOnE"])
def test_alg_none(even, oidc_provider, alg) -> None:
    header, claims = _parts(oidc_provider.token("alice"))
    forged = (
        f"{_b64(json.dumps({**header, 'alg': alg}).encode())}.{_b64(json.dumps(claims).encode())}."
    )
    _assert_401(_whoami(even[0], forged))


def test_hs256_keyed_with_the_providers_public_key(even, oidc_provider) -> None:
    header, claims = _parts(oidc_provider.token("alice"))
    jwks = httpx.get(oidc_provider.jwks_url, trust_env=False).json()
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public_pem = jwt.PyJWK.from_dict(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (public_pem, json.dumps(jwk).encode()):
        head = _b64(json.dumps({**header, "alg": "HS256"}).encode())
        body = _b64(json.dumps(claims).encode())
        sig = _b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
        _assert_401(_whoami(even[0], f"{head}.{body}.{sig}"))


def test_unknown_kid_and_refetch_cooldown(even, oidc_provider) -> None:
    client, components, clock = even
    assert _whoami(client, oidc_provider.token("alice")).status_code == 200
    cache = next(iter(components.verifier._issuers.values())).keys
    assert isinstance(cache, JwksCache)
    before = cache.fetch_count
    _, claims = _parts(oidc_provider.token("alice"))
    rogue = ec.generate_private_key(ec.SECP256R1())
    clock.moment += timedelta(seconds=61)  # past the cooldown of the first fetch
    for i in range(200):
        token = jwt.encode(
            claims, rogue, algorithm="ES256", headers={"typ": "at+jwt", "kid": f"rogue-{i}"}
        )
        _assert_401(_whoami(client, token))
    assert cache.fetch_count - before <= 1


def test_token_from_another_key_with_a_real_kid(even, oidc_provider) -> None:
    header, claims = _parts(oidc_provider.token("alice"))
    rogue = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        claims, rogue, algorithm="ES256", headers={"typ": "at+jwt", "kid": header["kid"]}
    )
    _assert_401(_whoami(even[0], token))


def test_id_token_from_device_flow_is_refused(even, oidc_provider) -> None:
    # The device flow also returns an ID token (aud = the client, no at+jwt typ).
    authorization = oidc_provider.device_authorize()
    oidc_provider.device_login("alice", user_code=authorization.user_code)
    answer = oidc_provider.device_token_response(authorization.device_code).json()
    assert _whoami(even[0], answer["access_token"]).status_code == 200
    _assert_401(_whoami(even[0], answer["id_token"]))
