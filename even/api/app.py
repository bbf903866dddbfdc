"""`create_app(settings)`: the FastAPI application, built from values, nothing at import time.

`app_from_environment` is the no-argument factory uvicorn imports when `even serve --workers N`
runs several processes; it reads the config path from EVEN_CONFIG_FILE.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from even.affinity import pin_if_asked
from even.api.console import install_console
from even.api.grant_lane import GrantLane
from even.api.middleware import HardeningMiddleware
from even.api.observe import ObserveMiddleware
from even.api.problems import install_handlers
from even.api.routes import (
    access,
    approvals,
    audit,
    classic,
    dev_issuer,
    keys,
    meta,
    notifications,
    trust,
)
from even.api.routes import metrics as metrics_route
from even.api.tuning import settle_heap, tune_interpreter
from even.clock import Clock
from even.config import Settings, load_settings
from even.errors import StoreUnavailable
from even.metrics import Metrics
from even.reload import install_sighup
from even.service.notify_deliverer import delivery_counts, start_deliverer
from even.wiring import Components, build_components

CONFIG_ENV = "EVEN_CONFIG_FILE"
log = logging.getLogger("even.api")
CHECKPOINT_POLL_SECONDS = 1.0
JOBS_INTERVAL_SECONDS = 5.0


def create_app(
    settings: Settings, *, clock: Clock | None = None, components: Components | None = None
) -> FastAPI:
    components = components or build_components(settings, clock)
    metrics = Metrics(components)
    _register_gauges(metrics, components)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The policy in force is part of the record: audit its hash at every start.
        try:
            await run_in_threadpool(components.ca_registry.ensure_seeded)
            await run_in_threadpool(components.access.record_policy_loaded, settings.policy_file)
        except StoreUnavailable:
            # Not ready (e.g. schema not created yet); /readyz says so and the first grant retries.
            log.error("could not record policy.loaded; is the schema current (`even db upgrade`)?")
        # SIGHUP re-reads policy.yaml (even.reload); `even serve --workers` forwards it here.
        uninstall_sighup = install_sighup(
            components, lambda result: metrics.policy_reloads.labels(result.outcome).inc()
        )
        checkpoints = asyncio.create_task(_checkpoint_loop(components))
        jobs = asyncio.create_task(_jobs_loop(components))
        # Webhooks (even.service.notify_deliverer): its own thread and engine, one deliverer at a
        # time across replicas and workers (a job lock per round). None without subscriptions.
        deliverer = start_deliverer(settings, components.clock)
        yield
        uninstall_sighup()
        checkpoints.cancel()
        jobs.cancel()
        if deliverer is not None:
            # What it has not posted stays pending in the outbox for the next start.
            await run_in_threadpool(deliverer.stop)
        if components.push is not None:
            components.push.close()  # the kept bastion connections and hop sessions
        components.writer.close()
        try:
            # A checkpoint at shutdown: the last records are covered before we go.
            await run_in_threadpool(components.audit_log.checkpoint, force=True)
        except StoreUnavailable:
            log.error("could not write the shutdown checkpoint")
        components.engine.dispose()

    app = FastAPI(
        title="Even",
        version="0.1.0",
        summary="Audited just-in-time SSH access",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url=None,
        # Even exports no OpenTelemetry data; off, FastAPI also skips asking the global
        # providers (an environment lookup) on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.components = components
    app.state.metrics = metrics
    if settings.grant_lane:
        # Added first, so it runs inside HardeningMiddleware (body limit, security headers).
        app.add_middleware(GrantLane, components=components)
    # Body limit, security headers; control characters in the path or query never reach a
    # route (nor a database).
    app.add_middleware(HardeningMiddleware)
    # Outermost: it sees every answer (the lane's and the 413s too) for logs and metrics.
    app.add_middleware(ObserveMiddleware, metrics=metrics, templates=lambda: app.openapi()["paths"])
    install_handlers(app)
    app.include_router(meta.router)
    app.include_router(metrics_route.router)
    app.include_router(access.router)
    app.include_router(approvals.router)
    app.include_router(audit.router)
    app.include_router(trust.router)
    app.include_router(keys.router)
    app.include_router(classic.router)
    app.include_router(notifications.router)
    app.include_router(dev_issuer.router)
    install_console(app, settings, components)  # only when `console:` is configured
    return app


def _register_gauges(metrics: Metrics, components: Components) -> None:
    """State read at every scrape: undelivered notifications, pending approvals."""
    metrics.register_gauge(
        "even_notification_deliveries",
        "Notifications in the outbox not delivered, by status (pending, failed).",
        ["status"],
        partial(_delivery_samples, components),
    )
    approval_jobs = components.jobs.approvals
    if approval_jobs is not None:
        count_pending = approval_jobs.pending_count
        metrics.register_gauge(
            "even_pending_approvals",
            "Access requests waiting for approvers (PENDING_APPROVAL).",
            [],
            lambda: [({}, float(count_pending()))],
        )


def _delivery_samples(components: Components) -> list[tuple[dict[str, str], float]]:
    # `delivered` grows with the history: only what alerting needs is counted.
    counts = delivery_counts(components.engine, ("pending", "failed"))
    return [({"status": status}, float(count)) for status, count in counts.items()]


async def _checkpoint_loop(components: Components) -> None:
    """Sign a checkpoint whenever one is due (every N records or T seconds)."""
    while True:
        await asyncio.sleep(CHECKPOINT_POLL_SECONDS)
        try:
            await run_in_threadpool(components.audit_log.checkpoint)
        except StoreUnavailable:
            log.warning("checkpoint skipped: the audit store is unavailable")


async def _jobs_loop(components: Components) -> None:
    """Expiry and push reconciliation (even.service.jobs); the first round right at start,
    so pushes a previous process left without an outcome are resolved first."""
    while True:
        try:
            await run_in_threadpool(components.jobs.run_once)
        except StoreUnavailable:
            log.warning("jobs skipped: the store is unavailable")
        except Exception:
            log.exception("jobs round failed; retrying next round")
        await asyncio.sleep(JOBS_INTERVAL_SECONDS)


def app_from_environment() -> FastAPI:
    """`even serve --workers N`'s factory (one per worker process): the serve edge."""
    # Until the lifespan installs the reload handler, a SIGHUP must not end this worker.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    tune_interpreter()
    pin_if_asked()
    app = create_app(load_settings(os.environ[CONFIG_ENV]))
    settle_heap()
    return app
