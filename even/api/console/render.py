"""Jinja2 rendering for the console: autoescape always on, and user text shown visibly.

Invariants:
- Autoescape is on for every template (not only *.html), so `<script>` in a reason is text.
- `visible` escapes control, bidi and other format characters the way `even-audit show` does
  (audit.show.escape_text), before HTML escaping: an RTL override cannot reorder a page.
- Pages never contain inline script or style; the CSP (even.api.middleware.CONSOLE_HEADERS,
  `default-src 'self'`) would refuse them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from audit.show import escape_text

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


def visible(value: object) -> Markup:
    """User text, HTML-escaped, with controls and bidi/format characters as visible escapes
    (`\\u202e`, as `even-audit show` writes them) marked up so the page can highlight them."""
    if value is None:
        return Markup("-")
    parts: list[str] = []
    for ch in str(value):
        shown = escape_text(ch)
        if ch not in (shown, "\\"):
            parts.append(f'<span class="esc">{escape(shown)}</span>')
        else:
            parts.append(str(escape(shown)))
    return Markup("".join(parts))  # noqa: S704  (every part was escaped above)


def plain(value: object) -> str:
    """`visible` without markup, for attribute values (aria-label, title): the escapes as
    text, then autoescaped like any string, so nothing can leave the attribute."""
    return "-" if value is None else escape_text(str(value))


def when(value: object) -> Markup:
    """An RFC 3339 time as `YYYY-MM-DD HH:MM:SS UTC` in a <time> element (full value kept)."""
    if value is None:
        return Markup("-")
    text = str(value)
    short = text[:10] + " " + text[11:19] + " UTC" if len(text) >= 19 else text
    return Markup('<time datetime="{}">{}</time>').format(text, visible(short))


def as_json(value: object) -> str:
    """Details of an audit record, compact and with non-ASCII escaped (so also visible)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(", ", ": "))


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["visible"] = visible
    env.filters["plain"] = plain
    env.filters["as_json"] = as_json
    env.filters["when"] = when
    return env


class Renderer:
    def __init__(self) -> None:
        self._env = make_environment()

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self._env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status)
