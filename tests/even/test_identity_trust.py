"""Issuer trust hardening: key URLs parsed as URLs, groups under the issuer's prefix, and a
token cache that forgets a token once its key leaves the JWKS or goes stale."""

import logging
from datetime import timedelta

import pytest
from pydantic import ValidationError

from even.config import IssuerSettings
from even.errors import IdentityUnavailable, InvalidToken
from even.identity.jwks import JwksCache
from even.identity.verifier import TokenVerifier, TrustedIssuer
from even.issuer_urls import InsecureUrl, check_key_url
from tests.even.test_identity import ISSUER, KEY, OTHER_KEY, FakeIdp, _jwk, clock, idp, make_token

__all__ = ["clock", "idp"]  # fixtures shared with test_identity

HOSTILE = [
    "http://idp.example.com",
    "http://localhost.attacker.net",
    "http://localhost@evil.example",
    "http://127.0.0.1@evil.example/",
    "http://127.0.0.1.evil.example",
    "http://[::1].evil.example",
    "http://evil.example#@localhost",
    "http://evil.example\\@localhost",
    "ftp://127.0.0.1/keys",
    "file:///etc/keys",
    "https://user:pw@idp.example.com",
    "http:///nohost",
    "https://idp.example.com:notaport",
    "",
    "http://local host",
]
ACCEPTED = [
    "https://idp.example.com",
    "https://idp.example.com:8443/realms/x",
    "http://localhost:9000",
    "http://LOCALHOST/x",
    "http://127.0.0.1:8080/dev-issuer",
    "http://127.3.4.5",
    "http://[::1]:9000/",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_key_urls_are_refused(url) -> None:
    with pytest.raises(InsecureUrl):
        check_key_url(url, what="jwks_uri")


@pytest.mark.parametrize("url", ACCEPTED)
def test_https_and_loopback_http_are_accepted(url) -> None:
    assert check_key_url(url, what="issuer") == url


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_issuers_are_refused_at_config_load(url) -> None:
    with pytest.raises(ValidationError, match="issuer"):
        IssuerSettings(issuer=url, audience="even", username_claim="preferred_username")


def test_the_message_says_what_is_wrong() -> None:
    with pytest.raises(ValidationError) as info:
        IssuerSettings(issuer="http://localhost.attacker.net", audience="e", username_claim="sub")
    assert "plain http is allowed only for localhost or a loopback IP" in str(info.value)
    assert "localhost.attacker.net" in str(info.value)


class Discovery(FakeIdp):
    """An IdP whose discovery document names a jwks_uri chosen by the test."""

    def __init__(self, jwks_uri: str) -> None:
        super().__init__()
        self.jwks_uri = jwks_uri
        self.urls: list[str] = []

    def __call__(self, url: str) -> dict:
        self.urls.append(url)
        if url.endswith("/.well-known/openid-configuration"):
            return {"issuer": ISSUER, "jwks_uri": self.jwks_uri}
        return super().__call__(url)


def _verifier(clock, fetch, *, prefix: str = "", staleness=timedelta(hours=2)):
    settings = IssuerSettings(
        issuer=ISSUER,
        audience="even",
        username_claim="preferred_username",
        username_prefix=prefix,
        algorithms=["ES256"],
    )
    cache = JwksCache(
        ISSUER, clock=clock, fetch=fetch, cooldown=timedelta(seconds=60), max_staleness=staleness
    )
    return TokenVerifier([TrustedIssuer(settings, cache)], clock=clock), cache


@pytest.mark.parametrize(
    "jwks_uri", ["http://idp.even.test/jwks", "http://localhost.attacker.net/jwks"]
)
def test_discovery_naming_an_http_jwks_uri_elsewhere_is_503_and_logged(
    clock, jwks_uri, caplog
) -> None:
    idp = Discovery(jwks_uri)
    verifier, _ = _verifier(clock, idp)
    with (
        caplog.at_level(logging.ERROR, logger="even.identity.jwks"),
        pytest.raises(IdentityUnavailable),
    ):
        verifier.verify(make_token(clock))
    assert idp.urls == [ISSUER + "/.well-known/openid-configuration"]  # keys never fetched
    assert "refusing the signing keys" in caplog.text and "must be https" in caplog.text


def test_discovery_naming_loopback_http_jwks_uri_is_accepted(clock) -> None:
    verifier, _ = _verifier(clock, Discovery("http://127.0.0.1:9/jwks"))
    assert verifier.verify(make_token(clock)).username == "alice"


def test_groups_carry_the_issuer_prefix(clock, idp) -> None:
    verifier, _ = _verifier(clock, idp, prefix="partner_")
    identity = verifier.verify(make_token(clock, groups=["security", "sre"]))
    assert identity.username == "partner_alice"
    assert identity.groups == ("partner_security", "partner_sre")


def test_a_cached_token_is_refused_once_its_key_leaves_the_jwks(clock, idp) -> None:
    verifier, _ = _verifier(clock, idp)
    token = make_token(clock)
    assert verifier.verify(token).username == "alice"
    assert verifier.cached(token) is not None
    # The IdP rotates: KEY leaves the JWKS. A token under the new key makes Even refetch.
    idp.keys = [_jwk(OTHER_KEY, "k2")]
    clock.moment += timedelta(seconds=61)
    assert verifier.verify(make_token(clock, key=OTHER_KEY, kid="k2")).username == "alice"
    assert idp.fetches == 2
    assert verifier.cached(token) is None
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(token)


def test_a_cached_token_is_refetched_after_an_hour_and_refused(clock, idp) -> None:
    verifier, _ = _verifier(clock, idp)
    token = make_token(clock, exp=int(clock.now().timestamp()) + 7200)
    verifier.verify(token)
    idp.keys = []
    clock.moment += timedelta(minutes=61)  # a refresh is due: the cache no longer answers
    assert verifier.cached(token) is None
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert idp.fetches == 2


def test_a_cached_token_is_not_answered_past_max_staleness(clock, idp) -> None:
    verifier, _ = _verifier(clock, idp, staleness=timedelta(minutes=90))
    token = make_token(clock, exp=int(clock.now().timestamp()) + 4 * 3600)
    verifier.verify(token)
    idp.down = True
    clock.moment += timedelta(minutes=61)
    assert verifier.verify(token).username == "alice"  # refetch failed, keys still fresh
    clock.moment += timedelta(minutes=30)
    assert verifier.cached(token) is None
    with pytest.raises(IdentityUnavailable):
        verifier.verify(token)


def test_an_unchanged_key_keeps_cached_tokens_across_a_refetch(clock, idp) -> None:
    verifier, _ = _verifier(clock, idp)
    token = make_token(clock)
    verifier.verify(token)
    idp.keys = [_jwk(KEY, "k1"), _jwk(OTHER_KEY, "k2")]
    clock.moment += timedelta(seconds=61)
    verifier.verify(make_token(clock, key=OTHER_KEY, kid="k2"))  # refetch
    assert verifier.cached(token) is not None


def test_a_kid_reused_for_another_key_drops_cached_tokens(clock, idp) -> None:
    verifier, _ = _verifier(clock, idp)
    token = make_token(clock)
    verifier.verify(token)
    idp.keys = [_jwk(OTHER_KEY, "k1"), _jwk(OTHER_KEY, "k2")]
    clock.moment += timedelta(seconds=61)
    verifier.verify(make_token(clock, key=OTHER_KEY, kid="k2"))  # refetch
    assert verifier.cached(token) is None
    with pytest.raises(InvalidToken):
        verifier.verify(token)
