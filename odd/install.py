"""`odd install`: the two root-owned files odd needs on a host (SPEC §6).

- `PREFIX/sbin/odd`: the whole odd CLI as a zipapp (`odd.zipapp`), what the push forced
  command calls (`restrict,command="/usr/local/sbin/odd grant-ssh-access"`).
- `PREFIX/libexec/odd-principals`: the wrapper sshd runs as its AuthorizedPrincipalsCommand
  (`odd principals`), as `nobody`, who cannot read a venv under /root.

Invariants: written only by root, only into directories sshd will accept (`odd.safepath`:
the directory and each one above it root-owned, not group/other-writable), and atomically: a
temporary file is written, run once to prove it answers (the wrapper as `nobody`), then
renamed over the old file, so a failed install leaves the previous one working. Idempotent:
a file with the same bytes is left alone; a different one is replaced only with `force`.
"""

import os
import pwd
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from odd import __version__
from odd.errors import InstallError, UnsafePath, UsageError
from odd.paths import DEFAULT_PREFIX, DEFAULT_PYTHON
from odd.safepath import (
    check_secure_dir,
    check_secure_file,
    check_usable_by_others,
    nearest_existing,
)
from odd.zipapp import ODD_MAIN, PRINCIPALS_MAIN, build

WRAPPER_NAME = "odd-principals"
ODD_NAME = "odd"
# sshd_config's AuthorizedPrincipalsCommandUser, as printed by `odd sshd-config`.
RUN_AS_USER = "nobody"
SELF_TEST_HOSTNAME = "odd-self-test.invalid"


@dataclass(frozen=True)
class Installed:
    path: Path
    changed: bool  # False: the same file was there already


def wrapper_path(prefix: Path = DEFAULT_PREFIX) -> Path:
    """Where `odd install --prefix PREFIX` puts the wrapper."""
    return prefix / "libexec" / WRAPPER_NAME


def odd_path(prefix: Path = DEFAULT_PREFIX) -> Path:
    """Where `odd install --prefix PREFIX` puts the odd zipapp."""
    return prefix / "sbin" / ODD_NAME


def build_wrapper(python: Path = DEFAULT_PYTHON) -> bytes:
    """The wrapper's bytes: an interpreter line for `python`, then the zipapp."""
    return build(PRINCIPALS_MAIN, python)


def install(
    prefix: Path = DEFAULT_PREFIX,
    *,
    python: Path = DEFAULT_PYTHON,
    run_as: str = RUN_AS_USER,
    force: bool = False,
) -> list[Installed]:
    """Install `sbin/odd` and `libexec/odd-principals` under `prefix` (both checked first)."""
    _preflight(prefix, python)
    odd_file = build(ODD_MAIN, python)
    wrapper = build_wrapper(python)
    targets = [odd_path(prefix), wrapper_path(prefix)]
    for target in targets:
        _prepare_dir(target.parent)
    if not force:
        for target, data in zip(targets, (odd_file, wrapper), strict=True):
            _refuse_other_file(target, data)
    return [
        _install_file(targets[0], odd_file, lambda c: _self_test_odd(c, python)),
        _install_file(targets[1], wrapper, lambda c: _self_test(c, python, run_as)),
    ]


def install_principals_wrapper(
    prefix: Path = DEFAULT_PREFIX,
    *,
    python: Path = DEFAULT_PYTHON,
    run_as: str = RUN_AS_USER,
    force: bool = True,
) -> Path:
    """Write only `PREFIX/libexec/odd-principals` (root-owned, 0755) and return its path."""
    _preflight(prefix, python)
    data = build_wrapper(python)
    target = wrapper_path(prefix)
    _prepare_dir(target.parent)
    if not force:
        _refuse_other_file(target, data)
    _install_file(target, data, lambda c: _self_test(c, python, run_as))
    return target


def _preflight(prefix: Path, python: Path) -> None:
    if os.geteuid() != 0:
        raise InstallError("odd install must run as root: sshd runs only a root-owned command")
    if not prefix.is_absolute():
        raise UsageError(f"prefix {str(prefix)!r} must be an absolute path")
    build_wrapper(python)  # the interpreter line is usable
    _check_interpreter(python)


def _prepare_dir(directory: Path) -> None:
    try:
        # Refuse before creating anything: sshd would refuse to run a command from there.
        check_secure_dir(nearest_existing(directory))
        _make_dirs(directory)
        check_secure_dir(directory)
    except UnsafePath as exc:
        raise InstallError(f"refusing to install into {directory}: {exc}") from exc


def _refuse_other_file(target: Path, data: bytes) -> None:
    if target.is_symlink() or (target.exists() and target.read_bytes() != data):
        raise InstallError(
            f"{target} exists and is not this odd ({__version__}); --force replaces it"
        )


def _install_file(target: Path, data: bytes, check: Callable[[Path], None]) -> Installed:
    if not target.is_symlink() and target.exists() and target.read_bytes() == data:
        try:
            check_secure_file(target)
            if target.stat().st_mode & 0o777 == 0o755:
                return Installed(target, changed=False)
        except UnsafePath:
            pass  # same bytes, wrong owner or mode: write it again
    _write_atomically(target, data, check)
    return Installed(target, changed=True)


def _check_interpreter(python: Path) -> None:
    """The interpreter runs as `nobody` at every certificate login; whoever can change it or
    the directory it sits in decides who logs in, so it gets the wrapper's own rules."""
    try:
        check_secure_dir(python.parent)
        check_secure_file(python)
        check_usable_by_others(python)
    except UnsafePath as exc:
        raise InstallError(f"python {python} cannot run the wrapper: {exc}") from exc


def _make_dirs(directory: Path) -> None:
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o755)
        # mkdir's mode is filtered by the umask; nobody must be able to traverse these.
        os.chmod(path, 0o755)  # noqa: S103


def _write_atomically(target: Path, data: bytes, check: Callable[[Path], None]) -> None:
    """Write `target` via a temporary file in its directory that `check` must accept first."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    candidate = Path(name)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fchmod(stream.fileno(), 0o755)
            os.fsync(stream.fileno())
        check(candidate)
        os.replace(candidate, target)
    except BaseException:
        candidate.unlink(missing_ok=True)
        raise
    directory_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def _self_test_odd(candidate: Path, python: Path) -> None:
    """Run the new odd as the forced command runs it (empty environment) and check it."""
    try:
        result = subprocess.run(
            [str(candidate), "--version"],
            env={},
            cwd="/",
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise InstallError(f"the new odd did not run: {exc}") from exc
    if result.returncode != 0 or result.stdout.decode().strip() != f"odd {__version__}":
        detail = result.stderr.decode(errors="replace").strip() or repr(result.stdout)
        raise InstallError(f"the new odd failed its self-test with {python}: {detail}")


def _self_test(candidate: Path, python: Path, user: str) -> None:
    """Run the new wrapper as sshd will (as `user`, empty environment) and check its answer."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise InstallError(f"user {user!r} does not exist; sshd runs the wrapper as it") from None
    expected = f"{user}@{SELF_TEST_HOSTNAME}\n".encode()
    try:
        result = subprocess.run(
            [str(candidate), "--hostname", SELF_TEST_HOSTNAME, user],
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
            env={},
            cwd="/",
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise InstallError(f"the new wrapper did not run as {user}: {exc}") from exc
    if result.returncode != 0 or result.stdout != expected:
        detail = result.stderr.decode(errors="replace").strip() or repr(result.stdout)
        raise InstallError(
            f"the new wrapper failed its self-test as {user} with {python} "
            f"(exit {result.returncode}): {detail}"
        )
