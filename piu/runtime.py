"""The outside world the commands use, in one object the CLI builds and tests replace.

Environment, HTTP transports (Even, the IdP), sleep, clock, exec, whether stdin/stdout are
terminals, the browser: every command reaches them only through `Runtime`, so tests inject
fakes instead of patching modules. Also holds the global flags. Heavy imports (httpx,
cryptography) happen inside the methods, keeping `piu --help` fast.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from piu.client import EvenClient
    from piu.config import Settings
    from piu.login import World
    from piu.paths import Paths


def _stdin_isatty() -> bool:
    return sys.stdin.isatty()


def _stdout_isatty() -> bool:
    return sys.stdout.isatty()


def _stderr_isatty() -> bool:
    return sys.stderr.isatty()


@dataclass
class Runtime:
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    transport: httpx.BaseTransport | None = None  # Even; None: real network
    idp_transport: httpx.BaseTransport | None = None  # the OIDC issuer; None: real network
    sleep: Callable[[float], None] | None = None  # None: time.sleep
    clock: Callable[[], float] = time.time
    execvp: Callable[[str, list[str]], Any] = os.execvp
    stdin_isatty: Callable[[], bool] = _stdin_isatty
    stdout_isatty: Callable[[], bool] = _stdout_isatty
    stderr_isatty: Callable[[], bool] = _stderr_isatty  # the waiting spinner draws only there
    open_browser: Callable[[str], bool] | None = None  # None: the webbrowser module
    # global flags
    even_url: str | None = None
    cacert: str | None = None
    token_command: str | None = None
    verbose: bool = False

    def paths(self) -> Paths:
        from piu.paths import resolve_paths

        return resolve_paths(self.env)

    def config_file(self) -> Any:
        from pathlib import Path

        return Path(self.env.get("PIU_CONFIG") or self.paths().config_file)

    def settings(self) -> Settings:
        from piu.config import load_settings

        flags = {"even_url": self.even_url, "cacert": self.cacert}
        return load_settings(self.config_file(), self.env, flags)

    def world(self) -> World:
        from piu.login import World

        return World(transport=self.idp_transport, sleep=self.sleep, clock=self.clock)

    def client(self, settings: Settings) -> EvenClient:
        from piu.client import REAUTH_HINT, EvenClient
        from piu.login import cached_token
        from piu.token import resolve_credential

        base_url = settings.require_even_url()
        credential = resolve_credential(
            self.env,
            self.token_command,
            cached=lambda: cached_token(settings, self.paths(), self.world()),
        )
        hint = REAUTH_HINT
        if credential.source != "login":
            hint = f"get a fresh token for {credential.source}, or unset it and run `piu login`"
        return EvenClient(
            base_url,
            credential.token,
            cacert=settings.cacert,
            transport=self.transport,
            sleep=self.sleep,
            reauth_hint=hint,
        )

    def colour(self) -> bool:
        """ANSI colour on stdout: only for a terminal, and never when NO_COLOR is set."""
        if "NO_COLOR" in self.env and self.env["NO_COLOR"] != "":
            return False
        return self.env.get("TERM") != "dumb" and self.stdout_isatty()

    def can_open_browser(self) -> bool:
        """A browser can appear: a desktop session or macOS, and not CI."""
        if self.env.get("CI"):
            return False
        if sys.platform == "darwin":
            return True
        return any(self.env.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"))
