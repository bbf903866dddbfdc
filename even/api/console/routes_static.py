"""The console's stylesheet, served by Even itself (no build chain, no CDN)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from even.api.console.render import STATIC

router = APIRouter(prefix="/console/static", include_in_schema=False)
FILES = {"console.css": "text/css; charset=utf-8"}


@router.get("/{name}")
def static_file(name: str) -> Response:
    media_type = FILES.get(name)
    if media_type is None:
        return Response("not found\n", status_code=404, media_type="text/plain")
    return Response((STATIC / name).read_bytes(), media_type=media_type)
