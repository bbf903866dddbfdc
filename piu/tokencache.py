"""The `piu login` token cache: `$XDG_CONFIG_HOME/piu/token.json`, owner-only, atomic.

One JSON object: the issuer and client it came from, the access token with its expiry (epoch
seconds, from `expires_in`, else the JWT's `exp`, else unknown), the refresh token if the
issuer gave one, and the endpoints needed to refresh or revoke without discovery. Written only
through `files.write_private` (0600, temp file + rename), so a reader never sees half a token
and nobody else can read it; a cache found readable by others is tightened on load.

JWT claims are read here without verifying the signature, for display and expiry only: Even
verifies the token, piu never trusts what it reads from it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from piu.errors import LocalFileError, NotLoggedIn
from piu.files import ensure_private_dir, write_private

VERSION = 1
EXPIRY_SKEW = 30.0  # seconds: a token this close to its end is treated as expired


@dataclass(frozen=True)
class CachedLogin:
    issuer: str
    client_id: str
    access_token: str
    token_endpoint: str
    expires_at: int | None = None
    refresh_token: str | None = None
    revocation_endpoint: str | None = None
    resource: str | None = None
    username: str | None = None  # display only (unverified claim)

    def expired(self, now: float, skew: float = EXPIRY_SKEW) -> bool:
        return self.expires_at is not None and now >= self.expires_at - skew


def load(path: Path) -> CachedLogin | None:
    """The cached login, or None if there is none; NotLoggedIn if it is unreadable."""
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            os.chmod(path, 0o600)  # a token others can read is a token others can use
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise NotLoggedIn(
            f"the login cache {path} is unreadable ({exc})", hint="run `piu login`"
        ) from exc
    try:
        if raw.pop("version") != VERSION:
            raise ValueError("unknown version")
        login = CachedLogin(**raw)
        if not all(
            isinstance(v, str) for v in (login.issuer, login.access_token, login.token_endpoint)
        ):
            raise TypeError("missing fields")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise NotLoggedIn(
            f"the login cache {path} is not one piu wrote", hint="run `piu login`"
        ) from exc
    return login


def save(path: Path, login: CachedLogin) -> None:
    ensure_private_dir(path.parent)
    data = {"version": VERSION, **asdict(login)}
    write_private(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def delete(path: Path) -> bool:
    """Remove the cache; False if there was none."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise LocalFileError(f"cannot remove {path}: {exc.strerror}") from exc
    return True


@contextlib.contextmanager
def locked(path: Path) -> Any:
    """Hold an exclusive lock beside the cache, so concurrent pius refresh only once.

    Refresh tokens may rotate: two pius refreshing with the same one would leave one of them
    (or, with reuse detection, both) logged out.
    """
    import fcntl

    ensure_private_dir(path.parent)
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise LocalFileError(f"cannot open {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified; {} for anything that is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
