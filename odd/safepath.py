"""Ownership and permission checks that mirror what sshd demands of its helper commands.

sshd runs an AuthorizedPrincipalsCommand only if the real path of the file and every directory
above it, up to `/`, are owned by root and writable by neither group nor others (OpenSSH
`safe_path()`); otherwise it logs "Unsafe AuthorizedPrincipalsCommand" and every certificate
login fails. `odd install` applies the same rule before writing, so the mistake is reported at
install time. The command then runs as `nobody`, so its interpreter must also be reachable and
executable by other users. Checks raise `UnsafePath`; they never change anything.
"""

import os
import stat
from pathlib import Path

from odd.errors import UnsafePath


def check_secure_dir(path: Path) -> None:
    """Raise unless `path` and all directories above it are root-owned, not group/world-writable."""
    real = Path(os.path.realpath(path))
    st = _stat(real)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{real} is not a directory")
    for directory in (real, *real.parents):
        _check_root_only(directory, _stat(directory))


def check_secure_file(path: Path) -> None:
    """Raise unless `path` is a regular file that `check_secure_dir` rules would accept."""
    real = Path(os.path.realpath(path))
    st = _stat(real)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{real} is not a regular file")
    _check_root_only(real, st)
    check_secure_dir(real.parent)


def check_usable_by_others(path: Path) -> None:
    """Raise unless users other than the owner (e.g. `nobody`) can reach and execute `path`."""
    real = Path(os.path.realpath(path))
    if not _stat(real).st_mode & stat.S_IXOTH:
        raise UnsafePath(f"{real} is not executable by other users")
    for directory in real.parents:
        if not _stat(directory).st_mode & stat.S_IXOTH:
            raise UnsafePath(f"directory {directory} is not searchable by other users")


def nearest_existing(path: Path) -> Path:
    """Return `path` or its closest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_root_only(path: Path, st: os.stat_result) -> None:
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePath(
            f"{path} must be owned by root and not writable by group or others "
            f"(owner uid {st.st_uid}, mode {stat.filemode(st.st_mode)})"
        )


def _stat(path: Path) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise UnsafePath(f"{path}: {exc.strerror}") from exc
