"""Ending a login's open SSH sessions (`revoke --end-sessions`, SPEC §5); Linux /proc only.

After authentication OpenSSH runs, per connection, a root-owned monitor titled
`sshd: LOGIN [priv]` and an unprivileged child owned by the login, titled `sshd: LOGIN` or
`sshd: LOGIN@TTY` (`sshd-session:` instead of `sshd:` from OpenSSH 9.8), which forks the user's
shell or command. A session is found by that child: owned by the login's uid *and* titled for
it. Titles alone are not trusted (a pre-authentication process shows a client-chosen name, and
any user can title a process at will), so a root monitor is taken in only as the parent of
such a child. Only sessions in our own network namespace count: a container (or a test's
namespace) with its own sshd is another host, even though its processes share /proc.

Invariants: only those sessions' process trees are signalled (SIGTERM, then SIGKILL after the
grace period), and a PID is signalled only while it still belongs to the process seen in the
scan (its start time is compared), never anything found by name alone.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import time
from dataclasses import dataclass
from pathlib import Path

GRACE_SECONDS = 2.0
_PREFIXES = ("sshd: ", "sshd-session: ")


@dataclass(frozen=True)
class _Process:
    pid: int
    ppid: int
    uid: int
    start: int  # clock ticks since boot: tells a reused PID apart
    title: str
    netns: str  # "net:[inode]", or "" if unreadable


def end_sessions(login: str, *, grace: float = GRACE_SECONDS, proc: Path = Path("/proc")) -> int:
    """End every SSH session of `login`; return how many sessions were found."""
    try:
        uid = pwd.getpwnam(login).pw_uid
    except KeyError:
        return 0  # no such account, so no sessions
    table = {p.pid: p for p in _scan(proc)}
    try:
        own_netns = os.readlink(proc / "self" / "ns" / "net")
    except OSError:
        return 0  # cannot tell which sessions are this host's: end none
    roots = _session_roots(table, login, uid, own_netns)
    targets = _with_descendants(table, roots)
    _signal_all(targets, proc, grace)
    return len(roots)


def _session_roots(table: dict[int, _Process], login: str, uid: int, netns: str) -> set[int]:
    roots: set[int] = set()
    for process in table.values():
        if process.uid != uid or process.netns != netns:
            continue
        if not _is_session_title(process.title, login):
            continue
        parent = table.get(process.ppid)
        is_monitor = (
            parent is not None
            and parent.uid == 0
            and any(parent.title == f"{prefix}{login} [priv]" for prefix in _PREFIXES)
        )
        # Ending the monitor ends the connection; the child alone would leave it to notice.
        roots.add(process.ppid if is_monitor else process.pid)
    return roots


def _is_session_title(title: str, login: str) -> bool:
    return any(
        title == f"{prefix}{login}" or title.startswith(f"{prefix}{login}@") for prefix in _PREFIXES
    )


def _with_descendants(table: dict[int, _Process], roots: set[int]) -> list[_Process]:
    children: dict[int, list[_Process]] = {}
    for process in table.values():
        children.setdefault(process.ppid, []).append(process)
    found: dict[int, _Process] = {}
    queue = [table[pid] for pid in roots if pid in table]
    while queue:
        process = queue.pop()
        if process.pid not in found:
            found[process.pid] = process
            queue += children.get(process.pid, [])
    return list(found.values())


def _signal_all(processes: list[_Process], proc: Path, grace: float) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
        alive = [p for p in processes if _same_process(p, proc)]
        for process in alive:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(process.pid, sig)
        deadline = time.monotonic() + wait
        while any(_same_process(p, proc) for p in alive) and time.monotonic() < deadline:
            time.sleep(0.02)


def _scan(proc: Path) -> list[_Process]:
    found = []
    for entry in proc.iterdir():
        if entry.name.isdigit() and (process := _read(proc, int(entry.name))) is not None:
            found.append(process)
    return found


def _read(proc: Path, pid: int) -> _Process | None:
    """The process `pid`, or None if it is gone (or a zombie, which has nothing left to end)."""
    base = proc / str(pid)
    try:
        stat_text = (base / "stat").read_text()
        title = (base / "cmdline").read_bytes()
        status = (base / "status").read_text()
    except OSError:
        return None
    # Not the owner of /proc/PID: the kernel shows root there for non-dumpable processes, and
    # sshd makes itself non-dumpable. `Uid:` lists the real, effective, saved and fs uids.
    uids = next((line.split()[1:] for line in status.split("\n") if line.startswith("Uid:")), [])
    # Mixed credentials (a process changing users) match no login.
    uid = int(uids[0]) if len(uids) == 4 and len(set(uids)) == 1 else -1
    # The command name is in parentheses and may contain spaces and ')'.
    fields = stat_text[stat_text.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    # sshd overwrites its argv with the title and pads it with NULs.
    text = title.split(b"\0", 1)[0].decode("utf-8", "replace").rstrip()
    try:
        netns = os.readlink(base / "ns" / "net")
    except OSError:
        netns = ""
    return _Process(
        pid=pid, ppid=int(fields[1]), uid=uid, start=int(fields[19]), title=text, netns=netns
    )


def _same_process(process: _Process, proc: Path) -> bool:
    current = _read(proc, process.pid)
    return current is not None and current.start == process.start
