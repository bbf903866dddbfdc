"""The composition root: turns Settings into the objects the API and CLI use.

Nothing here runs at import time; `build_components` is called once per process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.engine import Engine

from audit.signing import AuditSigner
from even.clock import Clock, SystemClock
from even.config import Settings, parse_address
from even.errors import ConfigError
from even.identity.dev_issuer import DevIssuer
from even.identity.jwks import JwksCache, StaticKeys
from even.identity.verifier import TokenVerifier, TrustedIssuer
from even.policy import Policy, load_policy
from even.push.errors import PushConfigError
from even.push.pusher import ParamikoPusher, Pusher
from even.push.runner import PushRunner
from even.ratelimit import RateLimiter
from even.service.access import AccessService
from even.service.admission import PolicyGate
from even.service.approval_jobs import ApprovalJobs
from even.service.approvals import ApprovalService
from even.service.audit_log import AuditLogService, CheckpointPolicy
from even.service.ca_registry import CaRegistry
from even.service.certificate_access import CertificateGrants
from even.service.classic import ClassicAccess
from even.service.idempotency import Idempotency
from even.service.jobs import Jobs
from even.service.push_access import PushAccessService
from even.service.push_lines import PushLines
from even.service.revocation import RevocationService
from even.service.serial_pool import SerialPool
from even.service.user_keys import UserKeyService
from even.store.db import make_engine
from even.store.outbox_hook import attach_outbox
from even.store.writer import GroupCommitWriter

log = logging.getLogger("even")


@dataclass(frozen=True)
class RateLimits:
    per_user: RateLimiter
    failed_auth: RateLimiter


def build_rate_limits(settings: Settings, clock: Clock) -> RateLimits:
    limits = settings.rate_limits
    return RateLimits(
        per_user=RateLimiter(rate=limits.per_user_per_second, burst=limits.burst, clock=clock),
        failed_auth=RateLimiter(
            rate=limits.failed_auth_per_ip_per_second,
            burst=max(1, int(limits.failed_auth_per_ip_per_second * 2)),
            clock=clock,
        ),
    )


@dataclass
class Components:
    settings: Settings
    engine: Engine
    ca_registry: CaRegistry
    signer: AuditSigner
    verifier: TokenVerifier
    dev_issuer: DevIssuer | None
    access: AccessService
    audit_log: AuditLogService
    revocation: RevocationService
    clock: Clock
    rate_limits: RateLimits
    keys: UserKeyService
    push: PushAccessService | None  # None: push mode not configured (no push key)
    jobs: Jobs
    classic: ClassicAccess
    writer: GroupCommitWriter  # the grant path's group commit (closed at shutdown)
    approvals: ApprovalService  # approve, deny, cancel, review; pending and review lists


def load_settings_policy(settings: Settings) -> Policy:
    return load_policy(
        settings.path(settings.policy_file),
        bastions=frozenset(b.name for b in settings.bastions),
        push_user=settings.push.user,
    )


def build_verifier(settings: Settings, clock: Clock) -> tuple[TokenVerifier, DevIssuer | None]:
    issuers = [
        TrustedIssuer(
            settings=issuer,
            keys=JwksCache(
                issuer.issuer,
                clock=clock,
                cooldown=timedelta(seconds=issuer.jwks_refetch_cooldown_seconds),
                max_staleness=timedelta(seconds=issuer.jwks_max_staleness_seconds),
            ),
        )
        for issuer in settings.identity.issuers
    ]
    dev_issuer = None
    if settings.identity.dev_issuer:
        dev_issuer = DevIssuer.from_file(
            settings.path(settings.identity.dev_issuer_key), settings.dev_issuer_url
        )
        issuers.append(
            TrustedIssuer(
                settings=dev_issuer.settings, keys=StaticKeys(dev_issuer.key_set()), dev=True
            )
        )
    if not issuers:
        raise ConfigError("no identity issuer configured (identity.issuers or dev_issuer)")
    verifier = TokenVerifier(issuers, clock=clock, leeway_seconds=settings.identity.leeway_seconds)
    return verifier, dev_issuer


def build_pusher(
    settings: Settings, *, hop_clock: Callable[[], float] = time.monotonic
) -> Pusher | None:
    """The paramiko pusher, or None when there is no push key (push mode off); `hop_clock`
    times kept hop sessions (tests move it to expire them)."""
    push = settings.push
    key_path = settings.path(push.private_key)
    if not key_path.exists():
        log.warning("push mode is off: no push key at %s (`even init` creates one)", key_path)
        return None
    try:
        return ParamikoPusher(
            user=push.user,
            private_key=key_path,
            known_hosts=settings.path(push.known_hosts),
            host_addresses={n: parse_address(a) for n, a in push.host_addresses.items()},
            connect_timeout=push.connect_timeout_seconds,
            hop_idle_seconds=push.hop_idle_seconds,
            clock=hop_clock,
        )
    except PushConfigError as exc:
        raise ConfigError(f"push: {exc}") from exc


def build_push(
    settings: Settings,
    pusher: Pusher | None,
    *,
    engine: Engine,
    gate: PolicyGate,
    keys: UserKeyService,
    signer: AuditSigner,
    clock: Clock,
) -> PushAccessService | None:
    if pusher is None:
        return None
    for bastion in settings.bastions:
        try:
            parse_address(bastion.address)
        except ValueError as exc:
            raise ConfigError(f"bastion {bastion.name}: {exc}") from exc
    runner = PushRunner(pusher, bastion_addresses={b.name: b.address for b in settings.bastions})
    timeout = settings.push.timeout_seconds
    return PushAccessService(
        engine=engine,
        gate=gate,
        keys=keys,
        runner=runner,
        lines=PushLines(engine=engine, runner=runner, timeout_seconds=timeout),
        signer=signer,
        clock=clock,
        push_user=settings.push.user,
        timeout_seconds=timeout,
    )


def build_components(
    settings: Settings, clock: Clock | None = None, *, pusher: Pusher | None = None
) -> Components:
    """`pusher` replaces the paramiko pusher (tests inject failures with it)."""
    clock = clock or SystemClock()
    engine = make_engine(settings.resolved_database_url)
    # Every audit record written through this engine writes its notifications with it.
    attach_outbox(engine, settings)
    ca_registry = CaRegistry(settings=settings, engine=engine, clock=clock)
    try:
        signer = AuditSigner.from_file(settings.path(settings.audit.signing_key))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the audit key: {exc}") from exc
    verifier, dev_issuer = build_verifier(settings, clock)
    gate = PolicyGate(engine=engine, policy=load_settings_policy(settings), clock=clock)
    # Grants share transactions (and fsyncs) through one writer per process.
    writer = GroupCommitWriter(engine)
    certificate = CertificateGrants(
        engine=engine,
        gate=gate,
        ca_registry=ca_registry,
        signer=signer,
        clock=clock,
        writer=writer,
        # Serials reserved in blocks through that writer, so certificates are signed before it.
        serials=SerialPool(writer, ca_registry.signing_ca),
    )
    audit_log = AuditLogService(
        engine=engine,
        signer=signer,
        clock=clock,
        origin=settings.audit_origin,
        policy=CheckpointPolicy(
            every_records=settings.audit.checkpoint_every_records,
            every_seconds=settings.audit.checkpoint_every_seconds,
        ),
    )
    rate_limits = build_rate_limits(settings, clock)
    keys = UserKeyService(engine=engine, clock=clock)
    push = build_push(
        settings,
        pusher or build_pusher(settings),
        engine=engine,
        gate=gate,
        keys=keys,
        signer=signer,
        clock=clock,
    )
    access = AccessService(
        engine=engine,
        gate=gate,
        idempotency=Idempotency(engine=engine, clock=clock),
        certificate=certificate,
        push=push,
    )
    lines = push.lines if push is not None else None
    revocation = RevocationService(
        engine=engine,
        clock=clock,
        roles_for=gate.roles,
        push_revoker=lines.revoke_lines if lines is not None else None,
    )
    return Components(
        settings,
        engine,
        ca_registry,
        signer,
        verifier,
        dev_issuer,
        access,
        audit_log,
        revocation,
        clock,
        rate_limits,
        keys,
        push,
        Jobs(
            engine=engine,
            clock=clock,
            push=lines,
            approvals=ApprovalJobs(engine=engine, clock=clock),
        ),
        ClassicAccess(engine=engine, access=access, bastions=settings.bastions),
        writer,
        ApprovalService(
            engine=engine,
            gate=gate,
            certificate=certificate,
            signer=signer,
            clock=clock,
            push=push,
        ),
    )
