"""Groups are scoped to their issuer: a partner IdP configured with `username_prefix` asserts
`security` for its user, and Even sees `partner_security`, which makes nobody an admin (real
`oidc-provider` on both sides)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from even.api.app import create_app
from even.clock import SystemClock
from even.config import IdentitySettings, IssuerSettings, load_settings
from even.store.db import make_engine
from even.store.schema import upgrade
from even.wiring import build_components
from tests.conftest import make_even_dir, requires_real_component
from tests.integration.oidc_provider import IdpUnavailable, OidcProvider, start_oidc_provider


@pytest.fixture
def partner_idp() -> Iterator[OidcProvider]:
    try:
        provider = start_oidc_provider(users={"mallory": ["security", "audit", "sre"]})
    except IdpUnavailable as exc:
        requires_real_component(str(exc))
    try:
        yield provider
    finally:
        provider.stop()


def _issuer(provider: OidcProvider, prefix: str = "") -> IssuerSettings:
    return IssuerSettings(
        issuer=provider.issuer,
        audience="even",
        username_claim="preferred_username",
        username_prefix=prefix,
        algorithms=["ES256", "RS256"],
    )


def test_partner_security_group_does_not_make_an_admin(
    tmp_path, oidc_provider, partner_idp
) -> None:
    config = make_even_dir(tmp_path / "even")
    base = load_settings(config)
    identity = IdentitySettings(issuers=[_issuer(oidc_provider), _issuer(partner_idp, "partner_")])
    settings = base.model_copy(update={"identity": identity})
    upgrade(make_engine(settings.resolved_database_url))
    components = build_components(settings, SystemClock())
    with TestClient(create_app(settings, components=components)) as client:
        auth = {"Authorization": f"Bearer {partner_idp.token('mallory')}"}
        me = client.get("/v1/whoami", headers=auth)
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "partner_mallory"
        assert me.json()["groups"] == ["partner_audit", "partner_security", "partner_sre"]
        assert me.json()["roles"] == []
        assert me.json()["allowed"] == []  # `sre`'s rule is not partner_sre's
        assert client.get("/v1/audit/events", headers=auth).status_code == 403
        listed = client.get("/v1/access-requests", headers=auth)
        assert listed.status_code == 200 and listed.json()["items"] == []
        # The home issuer's groups are unchanged.
        home = {"Authorization": f"Bearer {oidc_provider.token('alice')}"}
        assert client.get("/v1/whoami", headers=home).json()["groups"] == ["sre"]
