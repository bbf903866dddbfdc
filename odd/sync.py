"""`odd sync`: keep the CA keys and the KRL that sshd reads in step with Even (SPEC §6).

GETs `<even-url>/v1/ca` (text/plain, one OpenSSH public key per line, for TrustedUserCAKeys) and
`<even-url>/v1/krl` (application/octet-stream, an OpenSSH KRL, for RevokedKeys) and installs
each into its file. sshd re-reads both at every authentication, so a write takes effect at the
next login. Standard library only.

Invariants:
- A file is replaced only by a body that parses completely (every CA line a public key of an
  allowed type; the KRL's magic, version and every section well-formed, as OpenSSH would read
  it), never by an empty one, and atomically (temporary file in the same directory, fsync,
  rename, mode 0644): sshd never sees a half-written file.
- A KRL whose generation is lower than the installed one's is refused (a replay of an old KRL
  would un-revoke certificates); delete the file to accept it deliberately.
- When Even is down or answers anything else (5xx, redirect, wrong type, garbage), the last good
  files stay; the run fails with a message per file. An absent KRL is created empty first, since
  sshd refuses every key while its RevokedKeys file is missing.
- Plain http only to a loopback address; redirects are never followed (they could downgrade to
  http or leave Even); `--cacert` replaces the system trust store.

ETags: each GET sends If-None-Match with the ETag Even gave for the bytes now installed (remembered
while `--interval` runs) and `"<sha256 hex of the installed file>"`, so Even can answer 304 even
to a fresh `--once` run if its ETags are the quoted SHA-256 of the body.

`odd sync --systemd-example` prints a service + timer that runs `--once` every minute.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import os
import re
import signal
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from odd import __version__
from odd.errors import BadResponse, EvenUnavailable, SyncError, UsageError
from odd.krl_file import KrlSummary, check_krl, empty_krl
from odd.paths import CA_FILE, KRL_FILE
from odd.sshkey import InvalidKey, PublicKey, parse_public_key

HTTP_TIMEOUT = 10.0
MIN_INTERVAL, MAX_INTERVAL = 1.0, 86_400.0
MAX_CA_BYTES = 64 * 1024  # dozens of keys; more is not a CA list
MAX_KRL_BYTES = 16 * 1024 * 1024  # ~2 million listed serials
FILE_MODE = 0o644
_ETAG_RE = re.compile(r'(?:W/)?"[\x21\x23-\x7e]{0,200}"')


@dataclass
class SyncSettings:
    even_url: str
    ca_file: Path = CA_FILE
    krl_file: Path = KRL_FILE
    cacert: Path | None = None
    timeout: float = HTTP_TIMEOUT


class Syncer:
    """Fetches and installs both files; `log` receives one line per change."""

    def __init__(
        self,
        settings: SyncSettings,
        *,
        log: Callable[[str], None],
        now: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.log, self.now = settings, log, now
        self.base_url = check_even_url(settings.even_url)
        self._opener = _opener(self.base_url, settings.cacert)
        self._etags: dict[str, tuple[str, str]] = {}  # path → (ETag, sha256 of its body)

    def sync_once(self) -> None:
        """One round: create a missing KRL, then update each file; raise if either was kept."""
        krl_file = self.settings.krl_file
        if not krl_file.exists():
            write_atomically(krl_file, empty_krl(int(self.now())))
            self.log(f"created {krl_file}: empty KRL, generation 0 (sshd needs the file)")
        problems = []
        for path, target, install in (
            ("/v1/ca", self.settings.ca_file, self._install_ca),
            ("/v1/krl", krl_file, self._install_krl),
        ):
            try:
                install(path, target)
            except (SyncError, OSError) as exc:
                kept = f"kept {target}" if target.exists() else f"{target} not written"
                problems.append(f"{self.base_url}{path}: {_describe(exc)}; {kept}")
        if problems:
            raise SyncError("; ".join(problems))

    def _install_ca(self, path: str, target: Path) -> None:
        current = _read(target)
        fetched = self._fetch(path, "text/plain", MAX_CA_BYTES, current)
        if fetched is None:
            return
        body, etag = fetched
        keys = parse_ca_keys(body)
        if body != current:
            write_atomically(target, body)
            old = {key.blob: key for key in _quiet_parse_ca(current)}
            new = {key.blob: key for key in keys}
            added = [f"+{new[b].key_type} {new[b].fingerprint}" for b in new if b not in old]
            removed = [f"-{old[b].key_type} {old[b].fingerprint}" for b in old if b not in new]
            changes = ", ".join(added + removed) or "same keys, order or comments changed"
            verb = "created" if current is None else "updated"
            self.log(f"{verb} {target}: {len(new)} CA key(s) ({changes})")
        self._remember(path, etag, body)

    def _install_krl(self, path: str, target: Path) -> None:
        current = _read(target)
        fetched = self._fetch(path, "application/octet-stream", MAX_KRL_BYTES, current)
        if fetched is None:
            return
        body, etag = fetched
        summary = check_krl(body)
        if body != current:
            old = _quiet_check_krl(current)
            if old is not None and summary.generation < old.generation:
                raise BadResponse(
                    f"KRL generation {summary.generation} is older than the installed "
                    f"{old.generation} (delete {target} to accept an older KRL)"
                )
            write_atomically(target, body)
            before = f"generation {old.generation}, {old.serials}" if old else "unreadable, ?"
            self.log(
                f"updated {target}: {before} -> generation {summary.generation}, "
                f"{summary.serials} revoked serial(s)"
            )
        self._remember(path, etag, body)

    def _fetch(
        self, path: str, media_type: str, limit: int, current: bytes | None
    ) -> tuple[bytes, str | None] | None:
        """(body, ETag) of a 200 answer, or None for 304; refuses everything else."""
        tags = self._tags_for(path, current)
        # S310: the scheme is https, or http to loopback, checked by check_even_url.
        request = urllib.request.Request(  # noqa: S310
            self.base_url + path,
            headers={"Accept": media_type, "User-Agent": f"odd/{__version__}"},
        )
        if tags:
            request.add_header("If-None-Match", ", ".join(tags))
        try:
            with self._opener.open(request, timeout=self.settings.timeout) as response:
                status = response.status
                content_type = response.headers.get("Content-Type", "")
                etag = response.headers.get("ETag")
                body = response.read(limit + 1)
        except urllib.error.HTTPError as exc:
            with contextlib.closing(exc):
                _refuse_unless_not_modified(exc, tags)
            return None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise BadResponse(f"TLS certificate not trusted ({reason.verify_message})") from exc
            raise EvenUnavailable(f"cannot reach Even ({reason})") from exc
        if status != 200:
            raise BadResponse(f"unexpected HTTP {status}")
        got = content_type.split(";")[0].strip().lower()
        if got != media_type:
            raise BadResponse(f"Content-Type is {got or 'missing'!r}, not {media_type}")
        if not body:
            raise BadResponse("empty body")
        if len(body) > limit:
            raise BadResponse(f"body larger than {limit} bytes")
        return body, etag

    def _tags_for(self, path: str, current: bytes | None) -> list[str]:
        if current is None:
            return []
        digest = _sha256(current)
        tags = [f'"{digest}"']
        remembered = self._etags.get(path)
        if remembered is not None and remembered[1] == digest and remembered[0] not in tags:
            tags.insert(0, remembered[0])
        return tags

    def _remember(self, path: str, etag: str | None, body: bytes) -> None:
        # Called once `body` is what the file holds: only then may its ETag be sent back. An
        # ETag is echoed into a request header, so only RFC 9110's syntax is kept.
        if etag and _ETAG_RE.fullmatch(etag):
            self._etags[path] = (etag, _sha256(body))
        else:
            self._etags.pop(path, None)


def _clean(text: str, limit: int = 200) -> str:
    """Server-chosen text made safe for a log line: printable ASCII only, bounded."""
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text[:limit])


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, SyncError):
        return f"cannot write: {exc.strerror or exc}"
    return str(exc)


def _refuse_unless_not_modified(exc: urllib.error.HTTPError, tags: list[str]) -> None:
    """Return for a 304 to a conditional request; raise the right error for any other status."""
    if exc.code == 304 and tags:
        return
    if exc.code == 304:
        raise BadResponse("304 Not Modified to a request without If-None-Match")
    if 300 <= exc.code < 400:
        where = exc.headers.get("Location", "?") if exc.headers else "?"
        raise BadResponse(f"redirect ({exc.code}) to {_clean(where)} refused")
    if exc.code >= 500:
        raise EvenUnavailable(f"Even answered HTTP {exc.code}")
    raise BadResponse(f"Even answered HTTP {exc.code} {_clean(str(exc.reason))}")


def parse_ca_keys(body: bytes) -> list[PublicKey]:
    """Every line of `body` as a public key (`TYPE BASE64 [comment]`); raise `BadResponse`."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise BadResponse("CA keys: not ASCII text") from None
    if not text.endswith("\n"):
        raise BadResponse("CA keys: no final newline (truncated?)")
    keys = []
    # Split on "\n" only: str.splitlines() would also split on \x1c, \x85 and friends.
    for number, line in enumerate(text[:-1].split("\n"), start=1):
        fields = line.split(" ")
        comment = " ".join(fields[2:])
        if len(fields) < 2 or any(not c.isprintable() for c in comment):
            raise BadResponse(f"CA keys: line {number} is not `TYPE BASE64 [comment]`")
        try:
            keys.append(parse_public_key(fields[0], fields[1]))
        except InvalidKey as exc:
            raise BadResponse(f"CA keys: line {number}: {exc}") from None
    return keys


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` by `data`: temp file in the same directory, fsync, rename, mode 0644."""
    if not data:
        raise SyncError(f"refusing to write an empty {path}")
    directory = path.parent
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), FILE_MODE)  # mkstemp makes 0600; sshd reads as root
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    # The rename itself must survive a crash, or sshd could find the old file (or none).
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_even_url(url: str) -> str:
    """The base URL without a trailing slash; https, or http to a loopback address only."""
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UsageError(f"--even-url {url!r}: invalid port") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"--even-url {url!r}: need https://HOST[:PORT][/PATH]")
    if parts.username is not None or parts.query or parts.fragment:
        raise UsageError(f"--even-url {url!r}: no user info, query or fragment")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise UsageError("--even-url: whitespace or control characters")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UsageError(f"--even-url {url!r}: must use https (plain http only to loopback)")
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the 3xx code


def _opener(base_url: str, cacert: Path | None) -> urllib.request.OpenerDirector:
    if cacert is not None and not base_url.startswith("https:"):
        raise UsageError("--cacert applies only to an https --even-url")
    try:
        context = ssl.create_default_context(cafile=str(cacert) if cacert else None)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--cacert {cacert}: cannot load CA certificates: {exc}") from exc
    host = urllib.parse.urlsplit(base_url).hostname or ""
    # Loopback never goes through a proxy from the environment; other hosts honour it.
    proxies = urllib.request.ProxyHandler({} if _is_loopback(host) else None)
    return urllib.request.build_opener(
        proxies, urllib.request.HTTPSHandler(context=context), _NoRedirects()
    )


def check_interval(seconds: float) -> float:
    """`--interval` within bounds: not a busy loop against Even, not effectively never."""
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise UsageError(f"--interval must be between {MIN_INTERVAL:g} and {MAX_INTERVAL:g} s")
    return seconds


def run_loop(syncer: Syncer, interval: float, stop: threading.Event) -> None:
    """Sync every `interval` seconds until `stop` is set; failures are logged, not fatal."""
    while not stop.is_set():
        try:
            syncer.sync_once()
        except (SyncError, OSError) as exc:
            syncer.log(f"error: {exc}")
        stop.wait(interval)  # wakes at once on SIGTERM


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set `stop` on SIGTERM/SIGINT while inside; restore the previous handlers after."""

    def handler(_signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _quiet_parse_ca(body: bytes | None) -> list[PublicKey]:
    try:
        return parse_ca_keys(body) if body is not None else []
    except BadResponse:
        return []


def _quiet_check_krl(body: bytes | None) -> KrlSummary | None:
    # An unreadable installed KRL has no generation to protect; sshd refuses all keys with it.
    try:
        return check_krl(body) if body is not None else None
    except BadResponse:
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SYSTEMD_EXAMPLE = """\
# /etc/systemd/system/odd-sync.service
[Unit]
Description=Fetch Even's CA keys and KRL for sshd (odd sync)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/odd sync --once --even-url https://even.example.org
# It writes only the two files sshd reads.
ProtectSystem=strict
ReadWritePaths=/etc/ssh
PrivateTmp=yes
NoNewPrivileges=yes

# /etc/systemd/system/odd-sync.timer  (enable with: systemctl enable --now odd-sync.timer)
[Unit]
Description=Run odd sync every minute

[Timer]
OnBootSec=10s
OnUnitActiveSec=60s
# Spread many hosts' requests to Even.
RandomizedDelaySec=15s

[Install]
WantedBy=timers.target
"""
