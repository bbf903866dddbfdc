"""Health, readiness, the CA's public keys, the audit public key and `whoami`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from even.api.deps import ComponentsDep, IdentityDep
from even.api.responses import problems
from even.api.schemas import AllowedRule, WhoAmI
from even.store.schema import current_revision, head_revision

router = APIRouter(tags=["meta"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready"}})
def readyz(components: ComponentsDep) -> JSONResponse:
    """Ready when the database answers at this build's alembic head and the CA is loaded;
    also names the sha256 of the policy this worker decides with.

    `serve` never migrates: a database behind (or ahead of) the head keeps this 503 until
    `even db upgrade` (or the matching Even) is in place. A database that does not answer
    (down, locked, full) is 503 too; the pool reconnects by itself once it is back.
    """
    answered, revision = False, None
    try:
        with components.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            answered = True
            revision = current_revision(conn)
    except SQLAlchemyError:
        pass
    checks = {
        "database": answered,
        "schema": answered and revision == head_revision(),
        "ca": components.ca_registry.configured_active is not None,
    }
    ok = all(checks.values())
    return JSONResponse(
        {
            "status": "ready" if ok else "not ready",
            "checks": checks,
            # The policy in force in this worker (it changes on SIGHUP, even.reload).
            "policy": {"sha256": components.access.policy.sha256},
        },
        status_code=200 if ok else 503,
        headers=None if ok else {"Retry-After": "5"},
    )


@router.get("/v1/whoami", response_model=WhoAmI, responses=problems(401, 429, 503))
def whoami(components: ComponentsDep, identity: IdentityDep) -> WhoAmI:
    return WhoAmI(
        username=identity.username,
        groups=list(identity.groups),
        roles=components.access.roles(identity),
        issuer=identity.issuer,
        allowed=[AllowedRule(**a) for a in components.access.allowed(identity)],
    )
