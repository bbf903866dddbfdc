"""Files piu writes: owner-only, atomic, never half-written.

Whole files (keys, certificates) are written to a temporary file in the target directory and
then renamed (or hard-linked, to create without overwriting), so ssh never reads a partial
file. Receipts are appended with one write to an O_APPEND file, one JSON object per line.
Directories piu owns are 0700, files 0600. OSError becomes LocalFileError naming the path.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from piu.errors import BadResponse, LocalFileError

# What may go into a certificate file name: a host or bastion name, and a request id.
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def certificate_path(ssh_dir: Path, name: str, request_id: str) -> Path:
    """~/.ssh/piu/<name>-<id>-cert.pub; both parts are checked so neither can leave the dir."""
    if not _NAME_RE.fullmatch(name) or ".." in name or not _ID_RE.fullmatch(request_id):
        raise BadResponse(f"unsafe certificate file name for {name!r} / {request_id!r}")
    return ssh_dir / f"{name}-{request_id}-cert.pub"


def ensure_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # it is piu's own directory: tighten whatever was there
    except OSError as exc:
        raise LocalFileError(f"cannot create directory {path}: {exc.strerror}") from exc


def write_private(path: Path, data: bytes) -> None:
    """Create or replace `path` (0600) atomically."""
    tmp = _temp_copy(path, data)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise LocalFileError(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        _discard(tmp)


def create_private(path: Path, data: bytes) -> bool:
    """Create `path` (0600) atomically unless it exists; False if it did (another piu won)."""
    tmp = _temp_copy(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:
        # Filesystems without hard links: a rename is still atomic, only not exclusive.
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise LocalFileError(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        _discard(tmp)
    return True


def append_line(path: Path, line: str) -> None:
    """Append one line with a single write, so concurrent pius never interleave."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise LocalFileError(f"cannot append to {path}: {exc.strerror}") from exc


def _temp_copy(path: Path, data: bytes) -> Path:
    import tempfile  # here: it pulls in shutil, random, bz2, lzma; reading needs none

    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=".piu-", suffix=".tmp")  # 0600
    except OSError as exc:
        raise LocalFileError(f"cannot write in {path.parent}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        _discard(Path(name))
        raise LocalFileError(f"cannot write {path}: {exc.strerror}") from exc
    return Path(name)


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
