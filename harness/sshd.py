"""A throwaway OpenSSH sshd on 127.0.0.1 for end-to-end tests and the demo.

Plain functions and classes; conftest.py turns them into fixtures. The daemon is configured the
way a real host would be, from `odd sshd-config` (odd's own Python function, with paths moved
into `workdir`), and its AuthorizedPrincipalsCommand is the real `odd-principals` wrapper
written by odd's install code.

Invariants:
- It listens on 127.0.0.1 only; `stop()` ends, by PID, the daemon and every process it forked
  (sessions would otherwise outlive it), and removes the wrapper directory.
- It writes only inside `workdir`, `/run/sshd` (sshd's privilege-separation directory) and one
  root-owned temporary directory for the wrapper. That directory cannot live under /tmp: sshd
  checks every directory up to `/` and refuses a command below a group/world-writable one
  (/tmp is 1777), so it is made under the first secure temporary root (normally /run).
- Root only: otherwise, or without /usr/sbin/sshd, `SshdUnavailable` says why, and the caller
  decides between skip (locally) and fail (CI=true).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from harness.ports import free_port
from harness.proctree import end_process_tree
from harness.syslog import SyslogReceiver, mount_namespace_argv
from odd.errors import UnsafePath
from odd.install import install_principals_wrapper
from odd.names import check_host_identity, check_login
from odd.safepath import check_secure_dir
from odd.sshd_config import SshdPaths, render_sshd_config

SSHD = Path("/usr/sbin/sshd")
# The interpreter sshd's `nobody` can run; a venv under /root is unreadable to it.
SYSTEM_PYTHON = Path("/usr/bin/python3")
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
# Candidate parents for the wrapper's directory, used only if they pass sshd's path rule.
SECURE_TEMP_ROOTS = ("/run",)


class SshdUnavailable(RuntimeError):
    """This machine cannot run a throwaway sshd; the message says why."""


class SshdError(RuntimeError):
    """sshd is available but could not be configured or started."""


@dataclass
class SshdHandle:
    """A running sshd started by `start_sshd`; `stop()` it (or use it as a context manager)."""

    process: subprocess.Popen[bytes]
    port: int
    hostname: str
    workdir: Path
    config_path: Path
    log_path: Path
    host_key_pub: str  # "ssh-ed25519 AAAA…", without comment
    principals_command: Path  # the odd-principals wrapper, inside wrapper_dir
    wrapper_dir: Path  # root-owned temporary directory, removed by stop()
    authorized_keys_dir: Path  # AuthorizedKeysFile is <this>/%u
    krl_file: Path
    syslog: SyslogReceiver | None = None  # set when sshd logs through syslog(3)
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        """Everything sshd has logged so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self) -> int:
        """Where the log ends now: pass it to `wait_for_log(since=...)` to skip older lines."""
        return len(self.log_text())

    def wait_for_log(self, pattern: str, timeout: float = 5.0, *, since: int = 0) -> re.Match[str]:
        """Wait until the log from offset `since` on matches `pattern`; return the match.

        A daemon shared by several tests has logged their lines too: a test waiting for
        something *it* caused takes a `log_mark()` first, or an older line answers at once.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log_text()[since:])
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise SshdError(
                    f"sshd log has no {pattern!r} after {timeout} s:\n{self.log_text()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """End sshd and everything it forked, by PID; remove the wrapper directory. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        end_process_tree(self.process, timeout=STOP_TIMEOUT)
        if self.syslog is not None:
            self.syslog.stop()
        shutil.rmtree(self.wrapper_dir, ignore_errors=True)

    def __enter__(self) -> SshdHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def ensure_login_user(name: str) -> None:
    """Create the local account `name` if missing (home, /bin/sh) and make it usable by sshd.

    `useradd` leaves the password locked ('!'), which sshd with `UsePAM no` treats as a locked
    account even for key logins; '*' means "no password" without locking.
    """
    _require_root()
    check_login(name)
    try:
        pwd.getpwnam(name)
    except KeyError:
        result = _run([_tool("useradd"), "--create-home", "--shell", "/bin/sh", name], check=False)
        # 9: the name exists (another test process created it meanwhile).
        if result.returncode not in (0, 9):
            raise SshdError(f"useradd {name} failed: {result.stderr.strip()}") from None
    _run([_tool("usermod"), "-p", "*", name])


def start_sshd(
    workdir: Path,
    *,
    hostname: str,
    ca_file: Path,
    krl_file: Path | None = None,
    port: int | None = None,
    bastion_for: Sequence[str] = (),
    extra_config: Sequence[str] = (),
    syslog: bool = False,
) -> SshdHandle:
    """Start sshd on 127.0.0.1 trusting `ca_file` as host `hostname`; return once it listens.

    `krl_file` defaults to `workdir/revoked.krl`; an empty valid KRL is created if the file is
    missing, since sshd refuses every key when its RevokedKeys file is absent. `port` defaults
    to a free one. `extra_config` lines are appended (so a `Match` block can go there).
    With `syslog`, sshd logs through syslog(3) in its own mount namespace and the log is
    `workdir/auth.log` in rsyslog's format (harness/syslog.py); otherwise `sshd -E`.
    """
    _require_sshd()
    check_host_identity(hostname)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    krl = _ensure_krl((krl_file or workdir / "revoked.krl").resolve())
    host_key = _host_key(workdir)
    keys_dir = workdir / "authorized_keys"
    keys_dir.mkdir(exist_ok=True)
    wrapper_dir = _secure_tempdir()
    receiver = SyslogReceiver(workdir / "auth.log", hostname) if syslog else None
    try:
        command = install_principals_wrapper(wrapper_dir, python=SYSTEM_PYTHON)
        paths = SshdPaths(
            ca_file=ca_file.resolve(),
            krl_file=krl,
            principals_command=command,
            authorized_keys_file=keys_dir / "%u",
        )
        odd_lines = render_sshd_config(hostname, paths, bastion_for=bastion_for)
        process, chosen, config = _launch_listening(
            workdir, port, host_key, odd_lines, extra_config, receiver
        )
    except BaseException:
        shutil.rmtree(wrapper_dir, ignore_errors=True)
        if receiver is not None:
            receiver.stop()
        raise
    return SshdHandle(
        process=process,
        port=chosen,
        hostname=hostname,
        workdir=workdir,
        config_path=config,
        log_path=receiver.log_path if receiver else workdir / "sshd.log",
        host_key_pub=_public_key(host_key.with_name(host_key.name + ".pub")),
        principals_command=command,
        wrapper_dir=wrapper_dir,
        authorized_keys_dir=keys_dir,
        krl_file=krl,
        syslog=receiver,
    )


def known_hosts_line(handle: SshdHandle, hostname: str) -> str:
    """A known_hosts line for the daemon, under `hostname` and under `[127.0.0.1]:PORT`.

    ssh looks host keys up by the address it connects to (`HostName`), paramiko and
    `HostKeyAlias` by the name; one line serves both.
    """
    return f"{hostname},[{LOOPBACK}]:{handle.port} {handle.host_key_pub}\n"


def ssh_argv(
    handle: SshdHandle,
    *,
    login: str,
    hostname: str,
    identity: Path,
    certificate: Path | None,
    known_hosts: Path,
    command: str | Sequence[str],
    options: Sequence[str] = (),
) -> list[str]:
    """The argv of an `ssh` that logs in to the daemon as `login@hostname` and runs `command`.

    Hermetic: no ssh_config, no agent, only the given identity, host key pinned. `command` is
    joined by ssh with spaces and run by the remote shell. `options` are extra `-o` values.
    """
    settings = [
        f"HostName={LOOPBACK}",
        "IdentitiesOnly=yes",
        "IdentityAgent=none",  # only the given identity, whatever agent the caller runs
        *([f"CertificateFile={certificate}"] if certificate is not None else []),
        f"UserKnownHostsFile={known_hosts}",
        "GlobalKnownHostsFile=/dev/null",
        "StrictHostKeyChecking=yes",
        "UpdateHostKeys=no",
        "BatchMode=yes",
        "ConnectTimeout=5",
        *options,
    ]
    # -F none: ignore ~/.ssh/config and /etc/ssh/ssh_config.
    argv = ["ssh", "-F", "none", "-p", str(handle.port), "-i", str(identity)]
    for setting in settings:
        argv += ["-o", setting]
    # `--` so a command starting with '-' is not read as an ssh option.
    argv += [f"{login}@{hostname}", "--"]
    argv += [command] if isinstance(command, str) else list(command)
    return argv


def sshd_version() -> tuple[int, int]:
    """(major, minor) of /usr/sbin/sshd, from `sshd -V`."""
    result = _run([str(SSHD), "-V"], check=False)
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", result.stderr + result.stdout)
    if found is None:
        raise SshdError(f"cannot tell the version of {SSHD}: {result.stderr.strip()}")
    return int(found.group(1)), int(found.group(2))


class _PortTaken(Exception):
    """The chosen port was taken between `free_port()` and sshd's bind."""


def _require_root() -> None:
    if os.geteuid() != 0:
        raise SshdUnavailable("a throwaway sshd and test accounts need root")


def _require_sshd() -> None:
    _require_root()
    if not os.access(SSHD, os.X_OK):
        raise SshdUnavailable(f"{SSHD} is missing (apt-get install openssh-server)")
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise SshdUnavailable(f"{tool} is missing (apt-get install openssh-client)")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        raise SshdUnavailable(f"{SYSTEM_PYTHON} is missing; sshd's principals command needs it")


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise SshdUnavailable(f"{name} is missing (apt-get install passwd)")
    return path


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise SshdError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _secure_tempdir() -> Path:
    """A new root-owned 0755 directory whose every ancestor passes sshd's path check."""
    for root in (tempfile.gettempdir(), *SECURE_TEMP_ROOTS):
        try:
            check_secure_dir(Path(root))
        except UnsafePath:
            continue
        directory = Path(tempfile.mkdtemp(prefix="odd-principals-", dir=root))
        directory.chmod(0o755)  # mkdtemp makes it 0700; nobody must traverse it
        return directory
    raise SshdUnavailable(
        f"no root-owned, non-world-writable temporary root among {SECURE_TEMP_ROOTS}"
    )


def _host_key(workdir: Path) -> Path:
    key = workdir / "ssh_host_ed25519_key"
    if not key.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)])
    return key


def _public_key(path: Path) -> str:
    """The `TYPE BASE64` part of a public key file (its comment dropped)."""
    key_type, blob = path.read_text(encoding="ascii").split()[:2]
    return f"{key_type} {blob}"


def _ensure_krl(path: Path) -> Path:
    if not path.exists():
        _run(["ssh-keygen", "-q", "-k", "-f", str(path), "-z", "1", "/dev/null"])
    return path


def _launch_listening(
    workdir: Path,
    port: int | None,
    host_key: Path,
    odd_lines: str,
    extra: Sequence[str],
    receiver: SyslogReceiver | None = None,
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Start sshd and wait until it listens; retry a picked port another process took."""
    log_path = receiver.log_path if receiver else workdir / "sshd.log"
    for _attempt in range(3 if port is None else 1):
        chosen = port if port is not None else free_port()
        config = _write_config(workdir, chosen, host_key, odd_lines, extra)
        process = _launch(config, log_path, receiver, workdir)
        try:
            _wait_until_listening(process, chosen, log_path)
        except _PortTaken:
            end_process_tree(process, timeout=STOP_TIMEOUT)
            continue
        except BaseException:
            end_process_tree(process, timeout=STOP_TIMEOUT)
            raise
        return process, chosen, config
    raise SshdError(f"port {port} is taken" if port else "no free loopback port in 3 attempts")


def _write_config(
    workdir: Path, port: int, host_key: Path, odd_lines: str, extra: Sequence[str]
) -> Path:
    # sshd keeps the first value it reads for most keywords, so the daemon's own settings come
    # before odd's lines, and `extra` (possibly a Match block) after them.
    own = [
        "# Throwaway test daemon (tests/integration/sshd.py)",
        f"Port {port}",
        f"ListenAddress {LOOPBACK}",
        f"HostKey {host_key}",
        f"PidFile {workdir / 'sshd.pid'}",
        "UsePAM no",
        # The test keys live in temporary directories sshd's StrictModes would reject.
        "StrictModes no",
    ]
    if sshd_version() >= (9, 8):
        # Otherwise a refused login in one test penalises 127.0.0.1 for the next ones.
        own.append("PerSourcePenalties no")
    config = workdir / "sshd_config"
    config.write_text("\n".join([*own, odd_lines.rstrip("\n"), *extra]) + "\n", encoding="utf-8")
    result = _run([str(SSHD), "-t", "-f", str(config)], check=False)
    if result.returncode != 0:
        raise SshdError(f"sshd -t rejects {config}: {result.stderr.strip()}")
    return config


def _launch(
    config: Path, log_path: Path, receiver: SyslogReceiver | None, workdir: Path
) -> subprocess.Popen[bytes]:
    if receiver is not None:
        argv = [str(SSHD), "-D", "-f", str(config)]
        argv = mount_namespace_argv(receiver.socket_path, workdir / "devlog", argv)
    else:
        log_path.unlink(missing_ok=True)  # a fresh log per start: tests read only their run
        # Absolute paths: sshd re-executes itself, and a relative -E breaks in the child.
        argv = [str(SSHD), "-D", "-f", str(config), "-E", str(log_path)]
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    """Return when sshd logs that it listens (after listen(), so connections are accepted)."""
    listening = f"Server listening on {LOOPBACK} port {port}."
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if listening in log:
            return
        if process.poll() is not None:
            if "Address already in use" in log:
                raise _PortTaken
            raise SshdError(f"sshd exited with {process.returncode}:\n{log}")
        time.sleep(0.02)
    raise SshdError(f"sshd did not listen on port {port} within {START_TIMEOUT} s")
