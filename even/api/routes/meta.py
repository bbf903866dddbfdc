"""Health, readiness, the CA's public keys, the audit public key and `whoami`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from even.api.deps import ComponentsDep, IdentityDep
from even.api.responses import problems
from even.api.schemas import AllowedRule, WhoAmI
from even.store.schema import SCHEMA_VERSION, current_version

router = APIRouter(tags=["meta"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready"}})
def readyz(components: ComponentsDep) -> JSONResponse:
    """Ready when the database answers with the current schema and the CA is loaded."""
    try:
        with components.engine.connect() as conn:
            version = current_version(conn)
    except SQLAlchemyError:
        version = None
    checks = {
        "database": version is not None,
        "schema": version == SCHEMA_VERSION,
        "ca": components.ca.active is not None,
    }
    ok = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "checks": checks},
        status_code=200 if ok else 503,
        headers=None if ok else {"Retry-After": "5"},
    )


@router.get("/v1/ca", response_class=PlainTextResponse)
def ca_keys(components: ComponentsDep) -> Response:
    """One OpenSSH public key per line, ready for sshd's TrustedUserCAKeys."""
    return PlainTextResponse(components.ca.published_lines())


class PemResponse(PlainTextResponse):
    media_type = "application/x-pem-file"


@router.get("/v1/audit/public-key", response_class=PemResponse)
def audit_public_key(components: ComponentsDep) -> Response:
    """The audit key (Ed25519, SubjectPublicKeyInfo PEM) that signs checkpoints and receipts."""
    return PemResponse(components.signer.public_pem().decode("ascii"))


@router.get("/v1/whoami", response_model=WhoAmI, responses=problems(401, 429, 503))
def whoami(components: ComponentsDep, identity: IdentityDep) -> WhoAmI:
    return WhoAmI(
        username=identity.username,
        groups=list(identity.groups),
        roles=components.access.roles(identity),
        issuer=identity.issuer,
        allowed=[AllowedRule(**a) for a in components.access.allowed(identity)],
    )
