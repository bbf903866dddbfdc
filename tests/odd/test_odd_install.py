"""`odd install`: a self-contained zipapp wrapper, written only where sshd will run it."""

import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
import zipimport
from collections.abc import Iterator
from pathlib import Path

import pytest

import odd
from odd.errors import InstallError, UnsafePath, UsageError
from odd.install import build_wrapper, install, install_principals_wrapper, odd_path, wrapper_path
from odd.safepath import check_secure_dir, check_secure_file, check_usable_by_others
from odd.zipapp import ODD_MAIN, build

SYSTEM_PYTHON = Path("/usr/bin/python3")


def _needs(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI: CI must not pass by skipping."""
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def secure_dir() -> Iterator[Path]:
    """A root-owned 0755 directory under /run, which (unlike /tmp) passes sshd's path check."""
    _needs(os.geteuid() == 0, "installing the wrapper needs root")
    _needs(SYSTEM_PYTHON.exists(), f"{SYSTEM_PYTHON} is missing")
    directory = Path(tempfile.mkdtemp(prefix="odd-test-", dir="/run"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def _run_wrapper(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(path), *args], capture_output=True, text=True, env={}, timeout=30, check=False
    )


@pytest.fixture
def wrapper(tmp_path: Path) -> Path:
    path = tmp_path / "odd-principals"
    path.write_bytes(build_wrapper(Path(sys.executable)))
    path.chmod(0o755)
    return path


def test_wrapper_is_a_zipapp_of_the_whole_package() -> None:
    data = build_wrapper(SYSTEM_PYTHON)
    assert data.startswith(b"#!/usr/bin/python3 -IS\n")
    names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    package = Path(odd.__file__).parent
    sources = {f"odd/{p.name}" for p in package.glob("*.py")} | {"__main__.py"}
    assert sources | {f"{name}c" for name in sources} == names


def test_zipapp_modules_load_from_their_pyc(tmp_path: Path) -> None:
    """zipimport takes the compiled code (no compile at each start) while it matches its
    source, and compiles the source instead when it does not (another Python, an edit)."""
    archive = tmp_path / "odd.pyz"
    archive.write_bytes(build(ODD_MAIN, Path(sys.executable)))
    code = zipimport.zipimporter(f"{archive}/odd/").get_code("odd.cli")
    assert code.co_filename == "odd/cli.py"  # as compiled at build time
    stale = tmp_path / "stale.pyz"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(stale, "w") as copy:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "odd/cli.pyc":
                data = data[:8] + bytes(8) + data[16:]  # a hash no source has
            copy.writestr(info, data)
    code = zipimport.zipimporter(f"{stale}/odd/").get_code("odd.cli")
    assert code.co_filename == f"{stale}/odd/cli.py"  # compiled from the source


def test_wrapper_is_reproducible() -> None:
    assert build_wrapper(SYSTEM_PYTHON) == build_wrapper(SYSTEM_PYTHON)


def test_wrapper_prints_the_principal(wrapper: Path) -> None:
    result = _run_wrapper(wrapper, "--hostname", "host-1.even.test", "piutest")
    assert (result.returncode, result.stdout) == (0, "piutest@host-1.even.test\n")


@pytest.mark.parametrize(
    "args",
    [("--hostname", "host-1.even.test", "Root"), ("--hostname", "localhost", "piutest")],
)
def test_wrapper_denies_with_exit_2(wrapper: Path, args: tuple[str, ...]) -> None:
    result = _run_wrapper(wrapper, *args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("odd: error: ")


def test_wrapper_ignores_pythonpath(wrapper: Path, tmp_path: Path) -> None:
    # -I: a PYTHONPATH with a hostile `odd` package must not be imported.
    evil = tmp_path / "evil" / "odd"
    evil.mkdir(parents=True)
    (evil / "__init__.py").write_text("raise SystemExit('hijacked')\n")
    result = subprocess.run(
        [str(wrapper), "--hostname", "host-1.even.test", "piutest"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(evil.parent)},
        timeout=30,
        check=False,
    )
    assert result.stdout == "piutest@host-1.even.test\n"


@pytest.mark.parametrize("python", ["python3", "/usr/bin/my python"])
def test_bad_python_path(python: str) -> None:
    with pytest.raises(UsageError):
        build_wrapper(Path(python))


def test_refuses_a_world_writable_tree(tmp_path: Path) -> None:
    # tmp_path lives under /tmp (mode 1777): sshd would refuse the wrapper there.
    _needs(os.geteuid() == 0, "install runs only as root")
    with pytest.raises(InstallError, match="must be owned by root and not writable"):
        install_principals_wrapper(tmp_path / "prefix", python=SYSTEM_PYTHON)
    assert not (tmp_path / "prefix").exists()


def test_refuses_when_not_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(InstallError, match="must run as root"):
        install_principals_wrapper(tmp_path, python=SYSTEM_PYTHON)


def test_refuses_relative_prefix() -> None:
    _needs(os.geteuid() == 0, "install runs only as root")
    with pytest.raises(UsageError, match="absolute"):
        install_principals_wrapper(Path("usr/local"), python=SYSTEM_PYTHON)


def test_refuses_an_interpreter_nobody_cannot_trust(secure_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.symlink_to(SYSTEM_PYTHON)
    with pytest.raises(InstallError, match=re.escape(f"python {fake} cannot run the wrapper")):
        install_principals_wrapper(secure_dir, python=fake)
    assert not (secure_dir / "libexec").exists()


def test_installs_root_owned_and_works_as_nobody(secure_dir: Path) -> None:
    prefix = secure_dir / "usr" / "local"
    path = install_principals_wrapper(prefix, python=SYSTEM_PYTHON)
    assert path == wrapper_path(prefix) == prefix / "libexec" / "odd-principals"
    for directory in (prefix.parent, prefix, path.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    info = path.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o755)
    check_secure_file(path)  # what sshd checks
    result = subprocess.run(
        [str(path), "--hostname", "host-1.even.test", "piutest"],
        capture_output=True,
        text=True,
        user="nobody",
        env={},
        cwd="/",
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "piutest@host-1.even.test\n")


def test_reinstall_replaces_atomically(secure_dir: Path) -> None:
    path = install_principals_wrapper(secure_dir, python=SYSTEM_PYTHON)
    first = path.read_bytes()
    assert install_principals_wrapper(secure_dir, python=SYSTEM_PYTHON) == path
    assert path.read_bytes() == first
    assert os.listdir(path.parent) == ["odd-principals"]  # no temporary files left


def test_failed_self_test_keeps_the_old_wrapper(secure_dir: Path) -> None:
    path = install_principals_wrapper(secure_dir, python=SYSTEM_PYTHON)
    path.write_bytes(b"#!/bin/sh\necho old\n")
    with pytest.raises(InstallError, match="does not exist"):
        install_principals_wrapper(secure_dir, python=SYSTEM_PYTHON, run_as="no-such-user-x")
    assert path.read_bytes() == b"#!/bin/sh\necho old\n"
    assert os.listdir(path.parent) == ["odd-principals"]


def test_secure_dir_checks(tmp_path: Path) -> None:
    _needs(os.geteuid() == 0, "root-owned system directories expected")
    check_secure_dir(Path("/usr/bin"))
    check_usable_by_others(SYSTEM_PYTHON)
    with pytest.raises(UnsafePath, match="/tmp must be owned by root"):
        check_secure_dir(tmp_path)
    with pytest.raises(UnsafePath, match="not a directory"):
        check_secure_dir(SYSTEM_PYTHON)
    with pytest.raises(UnsafePath, match="No such file"):
        check_secure_dir(tmp_path / "absent")


def test_group_writable_file_is_unsafe(secure_dir: Path) -> None:
    target = secure_dir / "cmd"
    target.write_text("")
    target.chmod(0o775)
    with pytest.raises(UnsafePath, match="not writable by group"):
        check_secure_file(target)
    target.chmod(0o700)
    check_secure_file(target)
    with pytest.raises(UnsafePath, match="not executable by other users"):
        check_usable_by_others(target)


def test_install_writes_odd_and_the_wrapper_and_is_idempotent(secure_dir: Path) -> None:
    prefix = secure_dir / "usr" / "local"
    first = install(prefix, python=SYSTEM_PYTHON)
    assert [(item.path, item.changed) for item in first] == [
        (odd_path(prefix), True),
        (wrapper_path(prefix), True),
    ]
    for item in first:
        check_secure_file(item.path)  # root-owned, not group/other-writable, safe parents
        assert stat.S_IMODE(item.path.stat().st_mode) == 0o755
    odd_file = odd_path(prefix)
    assert odd_file.read_bytes().startswith(b"#!/usr/bin/python3 -IS\n")
    # Only /usr/bin/python3 and the file itself: no venv, no PYTHONPATH, empty environment.
    version = _run_wrapper(odd_file, "--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"odd {odd.__version__}")
    again = install(prefix, python=SYSTEM_PYTHON)
    assert [item.changed for item in again] == [False, False]
    assert sorted(os.listdir(odd_file.parent)) == ["odd"]


def test_install_refuses_a_different_file_unless_forced(secure_dir: Path) -> None:
    install(secure_dir, python=SYSTEM_PYTHON)
    target = odd_path(secure_dir)
    target.write_bytes(b"#!/bin/sh\necho someone else's\n")
    with pytest.raises(InstallError, match="--force replaces it"):
        install(secure_dir, python=SYSTEM_PYTHON)
    assert target.read_bytes() == b"#!/bin/sh\necho someone else's\n"
    assert [item.changed for item in install(secure_dir, python=SYSTEM_PYTHON, force=True)] == [
        True,
        False,
    ]
    assert target.read_bytes() == build(ODD_MAIN, SYSTEM_PYTHON)


def test_install_refuses_an_unsafe_parent(secure_dir: Path) -> None:
    shared = secure_dir / "shared"
    shared.mkdir()
    shared.chmod(0o775)  # group-writable: whoever is in the group could swap sbin/
    with pytest.raises(InstallError, match="must be owned by root and not writable by group"):
        install(shared / "usr" / "local", python=SYSTEM_PYTHON)
    assert os.listdir(shared) == []  # refused before creating anything


def test_build_zipapp_command(tmp_path: Path) -> None:
    _needs(SYSTEM_PYTHON.exists(), f"{SYSTEM_PYTHON} is missing")
    out = tmp_path / "odd.pyz"
    result = subprocess.run(
        [sys.executable, "-m", "odd", "build-zipapp", "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == build(ODD_MAIN, SYSTEM_PYTHON)
    version = subprocess.run(
        [str(SYSTEM_PYTHON), "-I", str(out), "--version"], capture_output=True, text=True, env={}
    )
    assert version.stdout.strip() == f"odd {odd.__version__}"
