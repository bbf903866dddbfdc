"""A private /dev/log for a test sshd, written to a file the way rsyslog writes auth.log.

sshd without `-E` logs through syslog(3), which sends `<PRI>Mmm dd hh:mm:ss sshd[PID]: MSG`
datagrams to /dev/log. This machine has no syslog daemon, and a test must not create
/dev/log for the whole machine, so the daemon runs in its own mount namespace
(`mount_namespace_argv`) where /dev is an overlay of the real /dev plus one symlink,
`log`, to this receiver's socket; nothing changes outside that namespace.

The receiver is a thread of the test process: it strips the priority and inserts the host
name after the timestamp, as rsyslog's traditional file format does, so the file holds real
sshd syslog lines: `Dec  6 15:24:31 HOST sshd[123]: Accepted publickey for …`. The stamps
are glibc's (local time of the daemon, which is UTC on the test machines).
"""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
import threading
from pathlib import Path

_PRIORITY = re.compile(rb"<\d{1,3}>")
_STAMP_LEN = len(b"Dec  6 15:24:31")


class SyslogReceiver:
    """Receives syslog datagrams on `socket_path`; appends the lines to `log_path`."""

    def __init__(self, log_path: Path, hostname: str) -> None:
        self.log_path = log_path
        self.hostname = hostname.encode("ascii")
        # AF_UNIX paths are limited to 107 bytes: a short private directory, not the workdir.
        self._dir = Path(tempfile.mkdtemp(prefix="evlog-"))
        self._dir.chmod(0o755)
        self.socket_path = self._dir / "log"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.socket_path))
        self.socket_path.chmod(0o666)  # sshd's unprivileged child logs too
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        log_path.write_bytes(b"")
        self._thread = threading.Thread(target=self._run, name="syslog-receiver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self.log_path.open("ab", buffering=0) as out:
            while not self._stop.is_set():
                try:
                    datagram = self._sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                out.write(self.format(datagram))

    def format(self, datagram: bytes) -> bytes:
        """One datagram as an RFC 3164 file line: `STAMP HOST TAG[PID]: MSG`."""
        found = _PRIORITY.match(datagram)
        body = datagram[found.end() :] if found else datagram
        body = body.rstrip(b"\n")
        stamp, rest = body[:_STAMP_LEN], body[_STAMP_LEN + 1 :]
        return stamp + b" " + self.hostname + b" " + rest + b"\n"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def mount_namespace_argv(socket_path: Path, scratch: Path, argv: list[str]) -> list[str]:
    """`argv`, run in a new mount namespace whose /dev/log is `socket_path`.

    `scratch` is an empty directory; inside the namespace a small tmpfs is mounted on it for
    the overlay's upper and work directories. `unshare` and `sh` exec, so the returned
    process's PID is the daemon's (it is ended by PID like any other).
    """
    scratch.mkdir(parents=True, exist_ok=True)
    script = (
        "set -e\n"
        "mount --make-rprivate /\n"
        'mount -t tmpfs -o size=1m,mode=0755 tmpfs "$1"\n'
        'mkdir "$1/up" "$1/work"\n'
        'ln -s "$2" "$1/up/log"\n'
        'mount -t overlay overlay -o "lowerdir=/dev,upperdir=$1/up,workdir=$1/work" /dev\n'
        'shift 2\nexec "$@"\n'
    )
    return [
        "unshare",
        "--mount",
        "/bin/sh",
        "-c",
        script,
        "sh",
        str(scratch),
        str(socket_path),
        *argv,
    ]
