"""Token validation against an issuer whose discovery and JWKS are served by a fake fetch."""

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from even.clock import FixedClock
from even.config import IssuerSettings
from even.errors import IdentityUnavailable, InvalidToken, InvalidUsername
from even.identity.jwks import JwksCache
from even.identity.verifier import TokenVerifier, TrustedIssuer

ISSUER = "https://idp.even.test"
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
KID = "k1"


def _jwk(key, kid):
    return {
        **jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True),
        "kid": kid,
        "alg": "ES256",
        "use": "sig",
    }


class FakeIdp:
    def __init__(self) -> None:
        self.keys = [_jwk(KEY, KID)]
        self.fetches = 0
        self.down = False

    def __call__(self, url: str) -> dict:
        if self.down:
            raise ValueError("IdP down")
        if url.endswith("/.well-known/openid-configuration"):
            return {"issuer": ISSUER, "jwks_uri": ISSUER + "/jwks"}
        self.fetches += 1
        return {"keys": self.keys}


@pytest.fixture
def clock():
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def idp():
    return FakeIdp()


@pytest.fixture
def verifier(clock, idp):
    settings = IssuerSettings(
        issuer=ISSUER, audience="even", username_claim="preferred_username", algorithms=["ES256"]
    )
    cache = JwksCache(
        ISSUER,
        clock=clock,
        fetch=idp,
        cooldown=timedelta(seconds=60),
        max_staleness=timedelta(hours=2),
    )
    return TokenVerifier([TrustedIssuer(settings, cache)], clock=clock)


def make_token(clock, key=KEY, kid=KID, alg="ES256", headers=None, **overrides):
    now = int(clock.now().timestamp())
    claims = {
        "iss": ISSUER,
        "aud": "even",
        "sub": "u1",
        "preferred_username": "alice",
        "groups": ["sre"],
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    head = {"typ": "at+jwt", "kid": kid, **(headers or {})}
    return jwt.encode(claims, key, algorithm=alg, headers=head)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, claims: dict) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def test_valid_access_token(verifier, clock) -> None:
    identity = verifier.verify(make_token(clock))
    assert (identity.username, identity.groups, identity.issuer) == ("alice", ("sre",), ISSUER)


@pytest.mark.parametrize("alg", ["none", "None", "nOnE"])
def test_alg_none_is_refused(verifier, clock, alg) -> None:
    now = int(clock.now().timestamp())
    token = unsigned(
        {"alg": alg, "typ": "at+jwt", "kid": KID},
        {"iss": ISSUER, "aud": "even", "preferred_username": "alice", "iat": now, "exp": now + 60},
    )
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_hs256_keyed_with_the_public_key_is_refused(verifier, clock) -> None:
    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(clock.now().timestamp())
    claims = {
        "iss": ISSUER,
        "aud": "even",
        "preferred_username": "alice",
        "iat": now,
        "exp": now + 60,
    }
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": KID}).encode())
    body = _b64(json.dumps(claims).encode())
    import hashlib
    import hmac

    sig = _b64(hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    with pytest.raises(InvalidToken, match="algorithm"):
        verifier.verify(f"{header}.{body}.{sig}")


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "other"},
        {"aud": ["other", "more"]},
        {"iss": ISSUER + "/"},
        {"iss": ISSUER + ".evil"},
        {"iss": "https://evil." + ISSUER[8:]},
        {"exp": None},
        {"iat": None},
    ],
)
def test_claim_failures(verifier, clock, claims) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(make_token(clock, **claims))


def test_audience_array_containing_ours_is_accepted(verifier, clock) -> None:
    assert verifier.verify(make_token(clock, aud=["other", "even"])).username == "alice"


def test_time_claims_use_the_injected_clock_with_leeway(verifier, clock) -> None:
    token = make_token(clock)
    clock.moment += timedelta(seconds=300 + 59)
    assert verifier.verify(token).username == "alice"
    clock.moment += timedelta(seconds=2)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_future_nbf_or_iat_is_refused(verifier, clock, claim) -> None:
    future = int(clock.now().timestamp()) + 120
    with pytest.raises(InvalidToken, match="not valid yet"):
        verifier.verify(make_token(clock, **{claim: future}))


@pytest.mark.parametrize(
    "header",
    [
        {"crit": ["exp"]},
        {"jku": "https://evil/jwks"},
        {"x5u": "https://evil/x"},
        {"jwk": {"kty": "EC"}},
        {"x5c": ["AAAA"]},
    ],
)
def test_key_carrying_and_crit_headers_are_refused(verifier, clock, idp, header) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(make_token(clock, headers=header))
    assert idp.fetches == 0  # refused before any key lookup


def test_id_token_and_missing_typ_are_refused(verifier, clock) -> None:
    with pytest.raises(InvalidToken, match="ID token"):
        verifier.verify(make_token(clock, nonce="n"))
    with pytest.raises(InvalidToken, match="ID token"):
        verifier.verify(make_token(clock, at_hash="x"))
    with pytest.raises(InvalidToken, match="typ"):
        verifier.verify(make_token(clock, headers={"typ": "JWT"}))


def test_username_claim_is_required_and_validated(verifier, clock) -> None:
    with pytest.raises(InvalidUsername):
        verifier.verify(make_token(clock, preferred_username=None))
    with pytest.raises(InvalidUsername):
        verifier.verify(make_token(clock, preferred_username="Alice; rm"))


def test_unknown_kids_refetch_at_most_once_per_cooldown(verifier, clock, idp) -> None:
    verifier.verify(make_token(clock))
    assert idp.fetches == 1
    for i in range(1000):
        with pytest.raises(InvalidToken, match="unknown key"):
            verifier.verify(make_token(clock, key=OTHER_KEY, kid=f"random-{i}"))
    assert idp.fetches == 1  # the first fetch was within the cooldown: no refetch at all
    clock.moment += timedelta(seconds=61)
    for i in range(1000):
        with pytest.raises(InvalidToken, match="unknown key"):
            verifier.verify(make_token(clock, key=OTHER_KEY, kid=f"again-{i}"))
    assert idp.fetches == 2  # one refetch in the new cooldown window
    clock.moment += timedelta(seconds=61)
    idp.keys.append(_jwk(OTHER_KEY, "rotated"))  # a real rotation is picked up
    assert verifier.verify(make_token(clock, key=OTHER_KEY, kid="rotated")).username == "alice"
    assert idp.fetches == 3


def test_signature_by_another_key_with_a_real_kid_is_refused(verifier, clock) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(make_token(clock, key=OTHER_KEY, kid=KID))


def test_failed_refetch_keeps_keys_until_max_staleness(verifier, clock, idp) -> None:
    verifier.verify(make_token(clock))
    idp.down = True
    clock.moment += timedelta(minutes=90)
    assert verifier.verify(make_token(clock)).username == "alice"
    clock.moment += timedelta(minutes=31)
    with pytest.raises(IdentityUnavailable):
        verifier.verify(make_token(clock))


def test_garbage_tokens(verifier) -> None:
    for token in ["", "abc", "a.b.c", "a.b", "x" * 20000, "..", "e30.e30.", "\x00.\x00.\x00"]:
        with pytest.raises(InvalidToken):
            verifier.verify(token)


def test_verified_tokens_are_cached_only_until_their_exp(verifier, clock, idp) -> None:
    token = make_token(clock)
    assert verifier.verify(token).username == "alice"
    idp.down = True  # a cached answer needs no key lookup
    assert verifier.verify(token).username == "alice"
    clock.moment += timedelta(seconds=300 + 61)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


def test_cache_is_keyed_by_the_exact_token(verifier, clock) -> None:
    token = make_token(clock)
    verifier.verify(token)
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidToken):
        verifier.verify(tampered)
