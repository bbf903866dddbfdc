"""The development issuer (SPEC §2): a local signing key for the demo and tests.

Even serves its discovery document and JWKS under `/dev-issuer/` and validates its tokens
exactly like any other issuer's. Tokens are minted only by the `even dev-token` CLI, never over
HTTP, and `even serve` refuses the dev issuer on a non-loopback address.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from even.config import IssuerSettings
from even.errors import ConfigError

DEV_AUDIENCE = "even"
DEV_KID = "even-dev-1"


def generate_dev_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class DevIssuer:
    def __init__(self, private_key: ec.EllipticCurvePrivateKey, issuer_url: str) -> None:
        self._key = private_key
        self.issuer_url = issuer_url
        self.settings = IssuerSettings(
            issuer=issuer_url,
            audience=DEV_AUDIENCE,
            username_claim="preferred_username",
            groups_claim="groups",
            algorithms=["ES256"],
        )

    @classmethod
    def from_file(cls, path: Path, issuer_url: str) -> DevIssuer:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the dev issuer key {path}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{path}: the dev issuer key must be an EC P-256 key")
        return cls(key, issuer_url)

    def jwk(self) -> dict[str, Any]:
        public = jwt.algorithms.ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {**public, "kid": DEV_KID, "use": "sig", "alg": "ES256"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}

    def key_set(self) -> dict[str, jwt.PyJWK]:
        return {DEV_KID: jwt.PyJWK.from_json(json.dumps(self.jwk()))}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer_url,
            "jwks_uri": self.issuer_url + "/jwks",
            "id_token_signing_alg_values_supported": ["ES256"],
            "response_types_supported": [],
            "subject_types_supported": ["public"],
        }

    def mint(
        self,
        username: str,
        groups: list[str],
        *,
        lifetime_seconds: int = 3600,
        issued_at: int | None = None,
    ) -> str:
        now = int(time.time()) if issued_at is None else issued_at
        claims = {
            "iss": self.issuer_url,
            "aud": DEV_AUDIENCE,
            "sub": f"dev:{username}",
            "preferred_username": username,
            "groups": groups,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_seconds,
            "jti": str(uuid.uuid4()),
        }
        headers = {"typ": "at+jwt", "kid": DEV_KID}
        return jwt.encode(claims, self._key, algorithm="ES256", headers=headers)
