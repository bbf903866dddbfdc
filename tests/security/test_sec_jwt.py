"""Tokens: every forged, misdirected or malformed token is 401, nothing is issued, and tokens
never make Even fetch anything but the configured issuer's JWKS (at most once per cooldown)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.security.conftest import EXTERNAL_ISSUER, EXTERNAL_KID


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(secure, alg: str) -> str:
    claims = {
        "iss": EXTERNAL_ISSUER,
        "aud": "even",
        "preferred_username": "alice",
        "iat": secure.now(),
        "exp": secure.now() + 60,
    }
    head = {"alg": alg, "typ": "at+jwt", "kid": EXTERNAL_KID}
    return f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(claims).encode())}."


def _hs256(secure, secret: bytes) -> str:
    claims = {
        "iss": EXTERNAL_ISSUER,
        "aud": "even",
        "preferred_username": "alice",
        "iat": secure.now(),
        "exp": secure.now() + 60,
    }
    head = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": EXTERNAL_KID}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def _assert_401(secure, token: str) -> None:
    response = secure.post(secure.body(), token=token)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    secure.assert_nothing_issued()


def test_control_a_valid_external_token_is_granted(secure) -> None:
    assert secure.post(secure.body(), token=secure.external_token()).status_code == 201


@pytest.mark.parametrize("alg", ["none", "None", "nOnE", "NONE"])
def test_alg_none(secure, alg) -> None:
    _assert_401(secure, _unsigned(secure, alg))


def test_hs256_keyed_with_idp_public_key_pem(secure) -> None:
    pem = secure.idp.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _assert_401(secure, _hs256(secure, pem))


def test_hs256_keyed_with_idp_public_key_jwk(secure) -> None:
    _assert_401(secure, _hs256(secure, json.dumps(secure.idp.jwk()).encode()))


def test_other_key_carrying_a_real_kid(secure) -> None:
    _assert_401(secure, secure.external_token(key=ec.generate_private_key(ec.SECP256R1())))


@pytest.mark.parametrize(
    "header",
    [
        {"jku": "https://attacker.example/jwks"},
        {"x5u": "https://attacker.example/cert"},
        {"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}},
        {"x5c": ["MIIB"]},
    ],
)
def test_key_carrying_headers_cause_no_fetch(secure, header) -> None:
    _assert_401(secure, secure.external_token(headers=header))
    assert secure.idp.urls == []


@pytest.mark.parametrize("kid", ["../../etc/passwd", "' OR 1=1 --", "kid\x00", "a" * 300, ""])
def test_kid_junk(secure, kid) -> None:
    _assert_401(secure, secure.external_token(headers={"kid": kid}))


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": None},
        {"exp": "soon"},
        {"exp": True},
    ],
)
def test_exp_missing_or_malformed(secure, claims) -> None:
    _assert_401(secure, secure.external_token(**claims))


def test_exp_past(secure) -> None:
    _assert_401(secure, secure.external_token(exp=secure.now() - 61, iat=secure.now() - 400))


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_nbf_or_iat_in_the_future(secure, claim) -> None:
    _assert_401(secure, secure.external_token(**{claim: secure.now() + 120}))


@pytest.mark.parametrize("aud", ["other", ["other"], ["other", "also-not-even"], [], "even "])
def test_wrong_audience(secure, aud) -> None:
    _assert_401(secure, secure.external_token(aud=aud))


@pytest.mark.parametrize(
    "iss",
    [
        "https://evil.idp.even.test",
        EXTERNAL_ISSUER + ".evil.org",
        EXTERNAL_ISSUER + "/",
        "x" + EXTERNAL_ISSUER,
        EXTERNAL_ISSUER.upper(),
    ],
)
def test_issuer_prefix_suffix_trailing_slash(secure, iss) -> None:
    _assert_401(secure, secure.external_token(iss=iss))


def test_crit_header(secure) -> None:
    _assert_401(secure, secure.external_token(headers={"crit": ["exp"]}))


def test_id_token_instead_of_access_token(secure) -> None:
    _assert_401(secure, secure.external_token(headers={"typ": "JWT"}, nonce="n", at_hash="h"))
    _assert_401(secure, secure.external_token(nonce="n"))
    _assert_401(secure, secure.external_token(headers={"typ": "JWT"}))


def test_thousand_random_kids_fetch_at_most_once_per_cooldown(secure) -> None:
    secure.post(secure.body(), token=secure.external_token())  # keys loaded once
    before = secure.idp.jwks_fetches
    for _ in range(1000):
        response = secure.post(
            secure.body(), token=secure.external_token(headers={"kid": str(uuid.uuid4())})
        )
        assert response.status_code == 401
    assert secure.idp.jwks_fetches - before <= 1
