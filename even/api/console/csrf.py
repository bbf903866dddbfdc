"""Form posts to the console: strict form parsing and the cross-site request checks.

Every POST must pass, in this order:
1. the browser's own word, where it gives one: `Sec-Fetch-Site` must be `same-origin`, and
   `Origin` must be Even's own origin (its `base_url`); `Origin: null` is refused;
2. the synchronizer token: the form's `csrf_token` must equal the session's (stored with
   the session, compared in constant time).
Clients that send neither header (not a browser) are held to the token alone, which they can
only have read from a page of their own session.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request

from even.api.console.sessions import ConsoleSession

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 32


class Refused(Exception):
    """A console request answered with an error page (status, short reason)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body as a dict; 415 for another type, 400 for repeats or bad bytes."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise Refused(415, "forms are posted as application/x-www-form-urlencoded")
    body = await request.body()
    try:
        text = body.decode("ascii")  # urlencoded bodies are ASCII; the escapes carry UTF-8
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, "the form could not be read") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise Refused(400, f"the form field {name!r} was sent twice")
        if "\x00" in value:
            raise Refused(422, "NUL is not allowed in a form field")
        form[name] = value
    return form


def check_same_origin(request: Request, own_origin: str) -> None:
    """Refuse a request the browser says came from another site (step 1 above)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        raise Refused(403, "cross-site form posts are refused")
    origin = request.headers.get("origin")
    if origin is not None and origin != own_origin:
        raise Refused(403, "this form was posted from another origin")


async def checked_form(
    request: Request, session: ConsoleSession, own_origin: str
) -> dict[str, str]:
    """The posted form, once the origin checks and then the CSRF token have passed."""
    check_same_origin(request, own_origin)
    form = await read_form(request)
    if not session.csrf_matches(form.get("csrf_token")):
        raise Refused(403, "the form's CSRF token is missing or wrong; reload the page")
    return form
