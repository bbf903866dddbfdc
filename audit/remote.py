"""Export over HTTP from a running Even (`GET /v1/audit/export`), streamed to a file.

The token comes from a file or EVEN_AUDIT_TOKEN (a `--token` flag would show in `ps` and
shell history, so it works but warns). The server audits every such export itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

TOKEN_ENV = "EVEN_AUDIT_TOKEN"


class RemoteExportError(Exception):
    pass


def read_token(token_file: Path | None, token: str | None) -> str:
    if token_file is not None:
        try:
            value = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise RemoteExportError(f"cannot read {token_file}: {exc.strerror}") from exc
    else:
        value = (token or os.environ.get(TOKEN_ENV, "")).strip()
    if not value:
        raise RemoteExportError(f"no token: use --token-file FILE or set {TOKEN_ENV}")
    return value


def check_url(url: str) -> str:
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise RemoteExportError("the Even URL must be https (plain http only on loopback)")
    return url.rstrip("/")


@contextmanager
def _client(cacert: Path | None) -> Iterator[httpx.Client]:
    verify: str | bool = str(cacert) if cacert else True
    with httpx.Client(
        timeout=httpx.Timeout(30.0, read=300.0), verify=verify, follow_redirects=False
    ) as client:
        yield client


def export(
    url: str,
    token: str,
    sink: IO[bytes],
    *,
    export_format: str = "jsonl",
    since: str | None = None,
    until: str | None = None,
    cacert: Path | None = None,
    on_chunk: Callable[[bytes], None] | None = None,
) -> int:
    """Stream the export into `sink` (showing each chunk to `on_chunk`, e.g. a progress
    line); returns the number of bytes written."""
    params = {"format": export_format}
    if since:
        params["since"] = since
    if until:
        params["until"] = until
    written = 0
    with _client(cacert) as client:
        try:
            with client.stream(
                "GET",
                f"{check_url(url)}/v1/audit/export",
                params=params,
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise RemoteExportError(_problem(response))
                for chunk in response.iter_bytes():
                    if on_chunk is not None:
                        on_chunk(chunk)
                    sink.write(chunk)
                    written += len(chunk)
        except httpx.HTTPError as exc:
            raise RemoteExportError(f"Even unreachable at {url}: {type(exc).__name__}") from exc
    return written


def fetch_public_key(url: str, cacert: Path | None = None) -> bytes:
    with _client(cacert) as client:
        try:
            response = client.get(f"{check_url(url)}/v1/audit/public-key")
        except httpx.HTTPError as exc:
            raise RemoteExportError(f"Even unreachable at {url}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise RemoteExportError(_problem(response))
    return response.content


def _problem(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", "")
    except ValueError:
        detail = ""
    return f"Even answered {response.status_code}" + (f": {detail}" if detail else "")
