"""`piu login` and `piu logout`.

The user code and the verification URL go to stderr (with a flush, so a wrapper reading the
pipe sees them while piu waits); the result goes to stdout. A browser is opened only when one
can appear (a desktop session or macOS, not CI) and not with --no-browser, and in a
background thread: some browsers block until closed, and polling must go on meanwhile.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING

import click

from piu.render import escape
from piu.runtime import Runtime
from piu.ui import warn

if TYPE_CHECKING:
    from piu.oidc import DeviceCode
    from piu.tokencache import CachedLogin


@click.command()
@click.option("--no-browser", is_flag=True, help="Only print the URL; do not open a browser.")
@click.pass_obj
def login(runtime: Runtime, no_browser: bool) -> None:
    """Log in with your company's identity provider (OIDC device flow).

    Prints a URL and a code; confirm the code there and log in. The token is kept (0600) in
    the piu config directory and refreshed when the issuer allows it.
    """
    from piu.login import device_login

    settings = runtime.settings()

    def show(device: DeviceCode) -> None:
        url = device.verification_uri_complete or device.verification_uri
        err = sys.stderr
        click.echo("To log in, open this page and check that it shows the code", file=err)
        click.echo(f"\n    {escape(device.user_code)}\n", file=err)
        click.echo(f"  {escape(url)}", file=err)
        if device.verification_uri_complete:
            click.echo(
                f"  (or go to {escape(device.verification_uri)} and enter the code)", file=err
            )
        if not no_browser and runtime.can_open_browser():
            _open_in_background(runtime, url)
        click.echo(
            f"\nWaiting for the login ({device.expires_in // 60} min; Ctrl-C cancels)…", file=err
        )
        err.flush()

    cached = device_login(settings, runtime.paths(), runtime.world(), show)
    click.echo(_logged_in_text(cached))
    _check_audience(cached, settings.audience)
    if runtime.env.get("PIU_TOKEN", "").strip() or runtime.token_command:
        warn("PIU_TOKEN or --token-command is set and takes precedence over this login")


@click.command()
@click.pass_obj
def logout(runtime: Runtime) -> None:
    """Forget the cached login (and revoke its refresh token where the issuer allows)."""
    from piu.login import logout as do_logout

    had_login, revoked = do_logout(runtime.paths(), runtime.world())
    if not had_login:
        click.echo("not logged in")
        return
    click.echo("logged out" + (" (refresh token revoked)" if revoked else ""))


def _open_in_background(runtime: Runtime, url: str) -> None:
    opener = runtime.open_browser
    if opener is None:
        import webbrowser

        opener = webbrowser.open
    threading.Thread(target=opener, args=(url,), daemon=True).start()


def _logged_in_text(cached: CachedLogin) -> str:
    who = escape(cached.username) if cached.username else "(name not in the token)"
    text = f"Logged in as {who} at {escape(cached.issuer)}"
    if cached.expires_at is not None:
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cached.expires_at))
        text += f"; token valid until {until}"
    return text + (" (refreshable)" if cached.refresh_token else "")


def _check_audience(cached: CachedLogin, expected: str | None) -> None:
    """Warn when the token is visibly not for Even: Even would answer 401 to every request."""
    from piu.tokencache import jwt_claims

    claims = jwt_claims(cached.access_token)
    if not claims or not expected:
        return  # an opaque token: only Even can tell
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if expected not in audiences:
        warn(
            f"the token's audience is {aud!r}, but Even expects {expected!r}",
            "set `resource` (or `audience`) with `piu config set`, then `piu login` again",
        )


COMMANDS = (login, logout)
