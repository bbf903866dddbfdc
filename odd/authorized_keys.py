"""The managed authorized-keys files of push mode: what a line says and how files change.

One file per login, `<keys_dir>/<login>`, read by sshd through `AuthorizedKeysFile
<keys_dir>/%u`. Lines odd writes (SPEC §5), always re-encoded from a parsed key:

    target:  restrict,expiry-time="YYYYMMDDHHMMSSZ"[,from="CIDR,…"] TYPE BASE64 even:ID
    bastion: restrict,port-forwarding,permitopen="HOST:22"[,permitopen="…"],
             command="/usr/sbin/nologin",expiry-time="…"[,from="…"] TYPE BASE64 even:ID

(the bastion line is one line). Invariants:
- A line is "managed" only if parsing it and rendering it again gives the same text; anything
  else in a file (an operator's own line) is kept verbatim and never listed or removed.
- Every change happens under an exclusive `flock` on `<keys_dir>/.lock` (read, modify, write),
  so concurrent grants never lose each other's lines, and is written atomically (temporary file
  in the same directory, fsync, rename, fsync of the directory): sshd sees the old file or the
  new one, never a partial one. Files are 0644, the directory 0755, both owned by us (root).
- Expired managed lines are dropped on every write; a file left empty is removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from odd.errors import InvalidLogin, OddError, UsageError
from odd.names import check_hostname, check_login
from odd.sshkey import InvalidKey, PublicKey, parse_public_key

COMMENT_PREFIX = "even:"
NOLOGIN = "/usr/sbin/nologin"
SSH_PORT = 22
HEADER = "# Managed by `odd grant-ssh-access` (Even push mode); changes to even: lines are lost."
LOCK_NAME = ".lock"
LOCK_TIMEOUT = 30.0
MAX_FILE_BYTES = 1024 * 1024
MAX_SOURCES = 32
MAX_JUMP_HOSTS = 16

_GRANT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_EXPIRY_RE = re.compile(r"[0-9]{14}Z")
_OPTION_RE = re.compile(r'[a-z-]+(?:="[^"]*")?')
_EXPIRY_FORMAT = "%Y%m%d%H%M%SZ"


class BadGrantArgument(UsageError):
    """A grant id, expiry, source list or jump host is malformed."""


class KeysDirUnusable(OddError):
    """The managed keys directory or one of its files cannot be used safely (host failure)."""


def check_grant_id(grant_id: str) -> str:
    """Return `grant_id` if it is 1-64 letters, digits and hyphens, not starting with '-'."""
    if _GRANT_ID_RE.fullmatch(grant_id) is None:
        raise BadGrantArgument(
            f"grant id {grant_id[:80]!r} must be 1-64 letters, digits and '-' (not first)"
        )
    return grant_id


def parse_expiry(text: str) -> datetime:
    """Parse `YYYYMMDDHHMMSSZ` (UTC, what sshd's `expiry-time` takes) strictly."""
    # strptime alone would accept one-digit fields; the regex pins the exact shape first.
    if _EXPIRY_RE.fullmatch(text) is None:
        raise BadGrantArgument(f"expiry {text[:80]!r} is not YYYYMMDDHHMMSSZ")
    try:
        return datetime.strptime(text, _EXPIRY_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise BadGrantArgument(f"expiry {text!r} is not a valid date and time") from exc


def format_expiry(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_EXPIRY_FORMAT)


def parse_sources(text: str) -> tuple[str, ...]:
    """Parse `CIDR,…` (host bits must be zero) into normalised, de-duplicated networks."""
    sources: list[str] = []
    for part in text.split(","):
        try:
            network = str(ipaddress.ip_network(part, strict=True))
        except ValueError as exc:
            raise BadGrantArgument(f"source {part[:80]!r} is not a network: {exc}") from exc
        if network not in sources:
            sources.append(network)
    if len(sources) > MAX_SOURCES:
        raise BadGrantArgument(f"at most {MAX_SOURCES} source networks")
    return tuple(sources)


def check_jump_hosts(hosts: tuple[str, ...]) -> tuple[str, ...]:
    """Validate the hosts a bastion line lets the user reach (SPEC §1 hostnames)."""
    if len(hosts) > MAX_JUMP_HOSTS:
        raise BadGrantArgument(f"at most {MAX_JUMP_HOSTS} --jump-to hosts")
    for host in hosts:
        check_hostname(host)
    return hosts


class KeyLine(NamedTuple):
    """One managed line. With `jump_to`, this host is a bastion the user only jumps through."""

    grant_id: str
    key: PublicKey
    expires: datetime
    sources: tuple[str, ...] = ()
    jump_to: tuple[str, ...] = ()

    @property
    def role(self) -> str:
        return "bastion" if self.jump_to else "target"

    def expired(self, now: datetime) -> bool:
        # sshd refuses a key only once the current second is after expiry-time.
        return self.expires < now.replace(microsecond=0)

    def render(self) -> str:
        options = ["restrict"]
        if self.jump_to:
            # `restrict` turns everything off; turn on exactly the hop to the named hosts, and
            # make any session (a shell, a command) end at once.
            options.append("port-forwarding")
            options += [f'permitopen="{host}:{SSH_PORT}"' for host in self.jump_to]
            options.append(f'command="{NOLOGIN}"')
        options.append(f'expiry-time="{format_expiry(self.expires)}"')
        if self.sources:
            options.append(f'from="{",".join(self.sources)}"')
        return f"{','.join(options)} {self.key.openssh} {COMMENT_PREFIX}{self.grant_id}"


def parse_line(text: str) -> KeyLine | None:
    """The managed line `text` stands for, or None if odd did not write it."""
    fields = text.split(" ")
    if len(fields) != 4 or not fields[3].startswith(COMMENT_PREFIX):
        return None
    options_text, key_type, data, comment = fields
    options = _OPTION_RE.findall(options_text)
    if ",".join(options) != options_text:
        return None
    values: dict[str, list[str]] = {}
    for option in options:
        name, _, value = option.partition("=")
        values.setdefault(name, []).append(value.strip('"'))
    try:
        line = KeyLine(
            grant_id=check_grant_id(comment.removeprefix(COMMENT_PREFIX)),
            key=parse_public_key(key_type, data),
            expires=parse_expiry(values.get("expiry-time", [""])[0]),
            sources=parse_sources(values["from"][0]) if "from" in values else (),
            jump_to=check_jump_hosts(
                tuple(v.removesuffix(f":{SSH_PORT}") for v in values.get("permitopen", []))
            ),
        )
    except (InvalidKey, UsageError):
        return None
    return line if line.render() == text else None


class KeysFile(NamedTuple):
    """The parsed content of one login's file: managed lines and lines odd keeps verbatim."""

    managed: list[KeyLine]
    foreign: list[str]


class KeyStore:
    """The managed directory; every change goes through `change()`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, login: str) -> Path:
        return self.directory / login

    def logins(self) -> list[str]:
        """Logins that have a file, sorted; other names (the lock, temporaries) are skipped."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(name for name in names if _is_login(name))

    def read(self, login: str) -> KeysFile:
        try:
            fd = os.open(self.path_for(login), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return KeysFile([], [])
        except OSError as exc:
            raise KeysDirUnusable(f"{self.path_for(login)}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise KeysDirUnusable(f"{self.path_for(login)} is not a regular file")
            data = stream.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise KeysDirUnusable(f"{self.path_for(login)} is larger than {MAX_FILE_BYTES} bytes")
        # surrogateescape: an operator's non-UTF-8 line is written back byte for byte.
        content = KeysFile([], [])
        for text in data.decode("utf-8", "surrogateescape").split("\n"):
            if not text or text == HEADER:
                continue
            line = parse_line(text)
            if line is None:
                content.foreign.append(text)
            else:
                content.managed.append(line)
        return content

    def change(
        self, login: str, edit: Callable[[list[KeyLine]], list[KeyLine]], now: datetime
    ) -> tuple[KeysFile, KeysFile]:
        """Apply `edit` to the managed lines of `login` under the lock; drop expired lines.

        Returns (before, after). The file is rewritten only if something changed.
        """
        with self.locked():
            before = self.read(login)
            managed = [line for line in edit(list(before.managed)) if not line.expired(now)]
            after = KeysFile(managed, before.foreign)
            if after != before:
                self._write(login, after)
            return before, after

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's exclusive lock (created on first use)."""
        self._ensure_directory()
        fd = os.open(
            self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            _flock(fd, self.directory / LOCK_NAME)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _ensure_directory(self) -> None:
        if not self.directory.exists():
            self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
            # mkdir's mode is filtered by the umask; sshd (and users' sshd children) read it.
            os.chmod(self.directory, 0o755)  # noqa: S103
        st = os.lstat(self.directory)
        # Whoever can write here decides who logs in: it must be us (root) alone.
        if not stat.S_ISDIR(st.st_mode):
            raise KeysDirUnusable(f"{self.directory} is not a directory")
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise KeysDirUnusable(
                f"{self.directory} must be owned by uid {os.geteuid()} and writable by no one "
                f"else (owner {st.st_uid}, mode {stat.filemode(st.st_mode)})"
            )

    def _write(self, login: str, content: KeysFile) -> None:
        target = self.path_for(login)
        if not content.managed and not content.foreign:
            target.unlink(missing_ok=True)
            _fsync_directory(self.directory)
            return
        lines = [HEADER, *(line.render() for line in content.managed), *content.foreign]
        data = "".join(f"{line}\n" for line in lines).encode("utf-8", "surrogateescape")
        fd, name = _create_temporary(self.directory, f".{login}.")
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fchmod(stream.fileno(), 0o644)
                os.fsync(stream.fileno())
            os.replace(name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
        _fsync_directory(self.directory)


def _create_temporary(directory: Path, prefix: str) -> tuple[int, str]:
    """A new file `PREFIX<random>.tmp` in `directory`, as tempfile.mkstemp makes one (O_EXCL,
    no symlink followed, 0600); without tempfile, whose imports (shutil, bz2, lzma, random)
    cost odd more start-up than the whole write."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        name = os.path.join(directory, f"{prefix}{os.urandom(8).hex()}.tmp")
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(directory))


def _is_login(name: str) -> bool:
    try:
        check_login(name)
    except InvalidLogin:
        return False
    return True


def _flock(fd: int, path: Path) -> None:
    """Take an exclusive lock, waiting at most LOCK_TIMEOUT (a stuck holder is a host fault)."""
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        if time.monotonic() > deadline:
            raise KeysDirUnusable(f"{path}: still locked after {LOCK_TIMEOUT:.0f} s")
        time.sleep(0.01)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
