"""The web console (`/console/`): server-rendered pages on the API's own use cases.

`install_console(app, settings, components)` adds its routes when `console:` is configured;
without it nothing is mounted and `/console/…` answers 404 like any unknown path.

Modules: `oidc` (sign-in client), `sessions` (server-side sessions), `csrf` (form posts),
`render` (Jinja2 + filters), `chart` (SVG geometry), `web` (shared request helpers), and the
routes: `routes_auth`, `routes_pages` (my requests, grants), `routes_detail` (one request,
cancel), `routes_approvals` (pending approvals, break-glass reviews), `routes_audit`,
`routes_static`. `approval_info` reads approval progress and the policy's approval facts.
"""

from __future__ import annotations

from fastapi import FastAPI

from even.api.console import (
    routes_approvals,
    routes_audit,
    routes_auth,
    routes_detail,
    routes_pages,
    routes_static,
)
from even.api.console.oidc import OidcClient
from even.api.console.render import Renderer
from even.api.console.sessions import SessionStore
from even.api.console.web import Console
from even.config import Settings
from even.errors import ConfigError
from even.service.audit_views import ChainCheck
from even.wiring import Components


def build_console(settings: Settings, components: Components) -> Console | None:
    config = settings.console
    if config is None:
        return None
    if config.issuer not in {i.issuer for i in settings.identity.issuers}:
        raise ConfigError(
            "console.issuer must also be one of identity.issuers: the console's access token "
            "is verified like any API token"
        )
    secret = None
    if config.client_secret_file is not None:
        try:
            secret = settings.path(config.client_secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"console.client_secret_file: {exc.strerror}") from exc
        if not secret:
            raise ConfigError("console.client_secret_file is empty")
    return Console(
        settings=settings,
        components=components,
        sessions=SessionStore(
            engine=components.engine, clock=components.clock, max_hours=config.session_max_hours
        ),
        oidc=OidcClient(
            config,
            client_secret=secret,
            redirect_uri=settings.base_url.rstrip("/") + "/console/callback",
            clock=components.clock,
        ),
        renderer=Renderer(),
        chain=ChainCheck(engine=components.engine, signer=components.signer),
        approvals=components.approvals,
    )


def install_console(app: FastAPI, settings: Settings, components: Components) -> None:
    console = build_console(settings, components)
    if console is None:
        return
    app.state.console = console
    modules = (routes_static, routes_auth, routes_detail, routes_pages, routes_approvals)
    for module in (*modules, routes_audit):
        app.include_router(module.router)
