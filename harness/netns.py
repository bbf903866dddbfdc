"""A bastion and a target in their own network namespaces, each able to run its own sshd.

    root namespace ──veth── even-bastion-<sfx> ──veth── even-target-<sfx>
     10.79.N.1/24          10.79.N.2 | 10.79.N+1.1         10.79.N+1.2/24

The root namespace (where the tests and `ssh` run) reaches the bastion but not the target; the
bastion reaches the target (so `ssh -J` and direct-tcpip hops work) and does not forward
packets. Each namespace resolves both hostnames through `/etc/netns/<name>/hosts`, which
`ip netns exec` mounts over /etc/hosts for the processes it starts.

Invariants:
- Before any namespace exists (and again once they do), the root namespace routes
  `TEST_NETWORK` (10.79.0.0/16) to `unreachable`: only the bastion's own /24 is more specific,
  so no packet for a test address can leave the machine through the default route.
- Everything is named from the suffix (namespaces `even-bastion-<sfx>`/`even-target-<sfx>`,
  links `evr-`/`evb-`/`evbt-`/`evt-<sfx>`), so `teardown(suffix)` can remove it by name, is
  idempotent, and is what `Topology.teardown()` and the context manager's `finally` call. The
  unreachable route goes too, but only when no other `even-` namespace is left using it.
- Processes are started through the `Topology` (`popen`, `start_sshd`) and ended by PID at
  teardown; leftovers of a crashed run are found by namespace (`ip netns pids`), never by name.
- Root and iproute2 only: otherwise `NetnsUnavailable` says why, and the caller decides between
  skip (locally) and fail (CI=true).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from harness import sshd as sshd_harness
from harness.proctree import _end_processes, _proc_stat, end_process_tree
from harness.sshd import SshdHandle
from odd.install import install_principals_wrapper
from odd.sshd_config import SshdPaths, render_sshd_config

TEST_NETWORK = ipaddress.ip_network("10.79.0.0/16")
NAMESPACE_PREFIX = "even-"
NETNS_ETC = Path("/etc/netns")
SSH_PORT = 22
COMMAND_TIMEOUT = 30.0
_SUFFIX_RE = re.compile(r"[a-z0-9]{1,8}")


class NetnsUnavailable(RuntimeError):
    """This machine cannot create network namespaces for tests; the message says why."""


class NetnsError(RuntimeError):
    """Namespaces are available but the topology could not be built or used."""


@dataclass(frozen=True)
class Node:
    """One side of the topology: its namespace, hostname and the address others reach it at."""

    namespace: str
    hostname: str
    address: str


@dataclass(frozen=True)
class Names:
    """Every name a topology with this suffix uses; all of teardown works from these.

    Links: `root_link` <-> `bastion_outer_link`, `bastion_inner_link` <-> `target_link`; Linux
    limits interface names to 15 characters, hence the short prefixes and suffixes.
    """

    suffix: str
    bastion: str
    target: str
    root_link: str
    bastion_outer_link: str
    bastion_inner_link: str
    target_link: str

    @classmethod
    def of(cls, suffix: str) -> Names:
        if _SUFFIX_RE.fullmatch(suffix) is None:
            raise NetnsError(f"suffix {suffix!r}: 1-8 lowercase letters or digits")
        namespace = f"{NAMESPACE_PREFIX}{{}}-{suffix}"
        return cls(
            suffix, namespace.format("bastion"), namespace.format("target"),
            f"evr-{suffix}", f"evb-{suffix}", f"evbt-{suffix}", f"evt-{suffix}",
        )  # fmt: skip


@dataclass
class Topology:
    """A built bastion + target; `teardown()` it (or use it as a context manager)."""

    names: Names
    bastion: Node
    target: Node
    root_address: str  # the root namespace's address, as the bastion sees connections come
    bastion_inner_address: str  # the bastion's address, as the target sees connections come
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    _sshds: list[SshdHandle] = field(default_factory=list, repr=False)
    _torn_down: bool = field(default=False, repr=False)

    @property
    def suffix(self) -> str:
        return self.names.suffix

    def popen(self, node: Node, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start `argv` inside `node`'s namespace; it is ended by PID at teardown."""
        process = subprocess.Popen(netns_argv(node.namespace, argv), **kwargs)
        self._processes.append(process)
        return process

    def run(
        self, node: Node, argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside `node`'s namespace to completion."""
        return subprocess.run(
            netns_argv(node.namespace, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_sshd(
        self,
        node: Node,
        workdir: Path,
        *,
        ca_file: Path,
        push_user: str | None = None,
        bastion_for: Sequence[str] = (),
        extra_config: Sequence[str] = (),
    ) -> NamespacedSshd:
        """Start sshd on `node`'s address, port 22; it is stopped at teardown. `bastion_for`
        makes it a bastion for those hosts (`odd sshd-config --bastion-for`)."""
        handle = start_sshd_in(
            node.namespace,
            workdir,
            address=node.address,
            hostname=node.hostname,
            ca_file=ca_file,
            push_user=push_user,
            bastion_for=bastion_for,
            extra_config=extra_config,
        )
        self._sshds.append(handle)
        return handle

    def teardown(self) -> None:
        """End our processes by PID, then remove everything by name. Idempotent."""
        if self._torn_down:
            return
        self._torn_down = True
        try:
            for handle in self._sshds:
                handle.stop()
            for process in self._processes:
                end_process_tree(process, timeout=5.0)
        finally:
            teardown(self.suffix)

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.teardown()


@dataclass
class NamespacedSshd(SshdHandle):
    """An sshd started by `start_sshd_in`: `port` is 22, on `address` inside `namespace`."""

    namespace: str = ""
    address: str = ""
    push_keys_file: Path = Path()  # the push user's AuthorizedKeysFile (Match block)


def require_netns() -> None:
    """Raise `NetnsUnavailable` unless this process can build namespaces."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root")
    if shutil.which("ip") is None:
        raise NetnsUnavailable("`ip` is missing (apt-get install iproute2)")


def netns_argv(namespace: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside `namespace` (`ip netns exec` execs it, same PID)."""
    return ["ip", "netns", "exec", namespace, *argv]


@contextlib.contextmanager
def topology(
    suffix: str | None = None,
    *,
    bastion_hostname: str = "bastion.even.test",
    target_hostname: str = "target.even.test",
) -> Iterator[Topology]:
    """Build a bastion + target topology and tear it down afterwards, even on failure."""
    built = create_topology(
        suffix, bastion_hostname=bastion_hostname, target_hostname=target_hostname
    )
    try:
        yield built
    finally:
        built.teardown()


def create_topology(
    suffix: str | None = None,
    *,
    bastion_hostname: str = "bastion.even.test",
    target_hostname: str = "target.even.test",
) -> Topology:
    """Build the namespaces, links, addresses and hosts files; see the module docstring."""
    require_netns()
    names = Names.of(suffix or os.urandom(3).hex())
    last_error: NetnsError | None = None
    # Another test session may pick the same /24 at the same moment: retry with another one.
    for _attempt in range(3):
        outer, inner = _free_subnets()
        built = Topology(
            names=names,
            bastion=Node(names.bastion, bastion_hostname, str(outer[2])),
            target=Node(names.target, target_hostname, str(inner[2])),
            root_address=str(outer[1]),
            bastion_inner_address=str(inner[1]),
        )
        try:
            _build(built, outer.prefixlen)
        except NetnsError as exc:
            teardown(names.suffix)
            last_error = exc
            continue
        except BaseException:
            teardown(names.suffix)
            raise
        return built
    raise NetnsError(f"could not build the topology: {last_error}")


def teardown(suffix: str) -> None:
    """Remove the topology named by `suffix`: processes left in it, namespaces, links, hosts
    files, and the unreachable route once no other test namespace uses it. Idempotent."""
    names = Names.of(suffix)
    for namespace in (names.target, names.bastion):
        _end_namespace_processes(namespace)
        _ip("netns", "del", namespace, check=False)
        shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)
    _ip("link", "del", names.root_link, check=False)  # gone with the bastion, unless half-built
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only if empty: other namespaces may have their own files
    if not any(name.startswith(NAMESPACE_PREFIX) for name in _namespaces()):
        _ip("route", "del", "unreachable", str(TEST_NETWORK), check=False)


def ensure_unreachable_route() -> None:
    """Route TEST_NETWORK to `unreachable` in the root namespace (idempotent)."""
    result = _ip("route", "replace", "unreachable", str(TEST_NETWORK), check=False)
    if result.returncode != 0:
        raise NetnsUnavailable(f"cannot add the unreachable route: {result.stderr.strip()}")


def start_sshd_in(
    namespace: str,
    workdir: Path,
    *,
    address: str,
    hostname: str,
    ca_file: Path,
    push_user: str | None = None,
    bastion_for: Sequence[str] = (),
    extra_config: Sequence[str] = (),
) -> NamespacedSshd:
    """Start sshd inside `namespace`, listening on `address` port 22; return once it listens.

    Configured like `harness.sshd.start_sshd` (from `odd sshd-config`, the real principals
    wrapper, an empty KRL), plus, with `push_user`, odd's push `Match` block whose
    AuthorizedKeysFile is `workdir/push_keys`. `AuthorizedKeysFile` is
    `workdir/authorized_keys/%u`. `extra_config` lines come before odd's (sshd keeps the first
    value of most keywords, so they override it; after odd's they would land in the Match block).
    """
    require_netns()
    sshd_harness._require_sshd()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    krl = sshd_harness._ensure_krl(workdir / "revoked.krl")
    host_key = sshd_harness._host_key(workdir)
    keys_dir = workdir / "authorized_keys"
    keys_dir.mkdir(mode=0o755, exist_ok=True)
    push_keys = workdir / "push_keys"
    wrapper_dir = sshd_harness._secure_tempdir()
    try:
        command = install_principals_wrapper(wrapper_dir, python=sshd_harness.SYSTEM_PYTHON)
        paths = SshdPaths(
            ca_file=ca_file.resolve(),
            krl_file=krl,
            principals_command=command,
            authorized_keys_file=keys_dir / "%u",
            push_keys_file=push_keys,
        )
        odd_lines = render_sshd_config(
            hostname, paths, push_user=push_user, bastion_for=bastion_for
        )
        config = _write_config(workdir, address, host_key, [*extra_config, odd_lines])
        process = _launch_listening(namespace, config, workdir / "sshd.log", address)
    except BaseException:
        shutil.rmtree(wrapper_dir, ignore_errors=True)
        raise
    return NamespacedSshd(
        process=process,
        port=SSH_PORT,
        hostname=hostname,
        workdir=workdir,
        config_path=config,
        log_path=workdir / "sshd.log",
        host_key_pub=sshd_harness._public_key(host_key.with_name(host_key.name + ".pub")),
        principals_command=command,
        wrapper_dir=wrapper_dir,
        authorized_keys_dir=keys_dir,
        krl_file=krl,
        namespace=namespace,
        address=address,
        push_keys_file=push_keys,
    )


def _build(built: Topology, prefix: int) -> None:
    names, bastion, target = built.names, built.bastion, built.target
    ensure_unreachable_route()  # first, so nothing below can ever leak out
    _hosts_file(bastion.namespace, [bastion, target])
    _hosts_file(target.namespace, [bastion, target])
    _ip("netns", "add", bastion.namespace)
    _ip("netns", "add", target.namespace)
    _ip("link", "add", names.root_link, "type", "veth",
        "peer", "name", names.bastion_outer_link, "netns", bastion.namespace)  # fmt: skip
    _ip("-n", bastion.namespace, "link", "add", names.bastion_inner_link, "type", "veth",
        "peer", "name", names.target_link, "netns", target.namespace)  # fmt: skip
    for namespace, link, address in [
        (None, names.root_link, built.root_address),
        (bastion.namespace, names.bastion_outer_link, bastion.address),
        (bastion.namespace, names.bastion_inner_link, built.bastion_inner_address),
        (target.namespace, names.target_link, target.address),
    ]:
        scope = ["-n", namespace] if namespace else []
        _ip(*scope, "addr", "add", f"{address}/{prefix}", "dev", link)
        _ip(*scope, "link", "set", link, "up")
    for namespace in (bastion.namespace, target.namespace):
        _ip("-n", namespace, "link", "set", "lo", "up")
    ensure_unreachable_route()  # again: a concurrent teardown may have removed it meanwhile
    # Linux accepts the same /24 on two links; had a concurrent session picked ours, routing
    # to the bastion would be ambiguous, so give the subnet up and let the caller retry.
    outer = ipaddress.ip_interface(f"{built.root_address}/{prefix}").network
    for line in _ip("-o", "-4", "addr", "show", check=False).stdout.splitlines():
        fields = line.split()
        device, address = fields[1].split("@")[0], fields[3]  # veths show as NAME@ifN
        if device != names.root_link and ipaddress.ip_interface(address).network == outer:
            raise NetnsError(f"{outer} is also used by {device}")


def _free_subnets() -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """A random pair of adjacent /24s of TEST_NETWORK that no root-namespace address uses."""
    shown = _ip("-o", "-4", "addr", "show", check=False).stdout
    used = {int(m.group(1)) for m in re.finditer(r"inet 10\.79\.(\d+)\.\d+/", shown)}
    free = [k for k in range(1, 127) if 2 * k not in used and 2 * k + 1 not in used]
    if not free:
        raise NetnsError("no free /24 pair left in 10.79.0.0/16")
    k = random.choice(free)  # noqa: S311 (not a secret; spreads concurrent sessions apart)
    return (
        ipaddress.IPv4Network(f"10.79.{2 * k}.0/24"),
        ipaddress.IPv4Network(f"10.79.{2 * k + 1}.0/24"),
    )


def _hosts_file(namespace: str, nodes: Sequence[Node]) -> None:
    directory = NETNS_ETC / namespace
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["127.0.0.1 localhost", *(f"{node.address} {node.hostname}" for node in nodes)]
    (directory / "hosts").write_text("\n".join(lines) + "\n", encoding="ascii")


def _namespaces() -> list[str]:
    shown = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in shown.splitlines() if line.strip()]


def _end_namespace_processes(namespace: str) -> None:
    """End, by PID, what a crashed run left in one of our namespaces."""
    result = _ip("netns", "pids", namespace, check=False)
    found = []
    for pid in result.stdout.split():
        info = _proc_stat(int(pid))
        if info is not None:
            found.append((int(pid), info[2]))
    if found:
        _end_processes(found, 2.0)


def _write_config(workdir: Path, address: str, host_key: Path, rest: Sequence[str]) -> Path:
    own = [
        "# Throwaway test daemon in a network namespace (harness/netns.py)",
        f"Port {SSH_PORT}",
        f"ListenAddress {address}",
        f"HostKey {host_key}",
        f"PidFile {workdir / 'sshd.pid'}",
        "UsePAM no",
        # The test keys live in temporary directories sshd's StrictModes would reject.
        "StrictModes no",
    ]
    if sshd_harness.sshd_version() >= (9, 8):
        own.append("PerSourcePenalties no")
    config = workdir / "sshd_config"
    text = "\n".join([*own, *(part.rstrip("\n") for part in rest)]) + "\n"
    config.write_text(text, encoding="utf-8")
    result = sshd_harness._run([str(sshd_harness.SSHD), "-t", "-f", str(config)], check=False)
    if result.returncode != 0:
        raise NetnsError(f"sshd -t rejects {config}: {result.stderr.strip()}")
    return config


def _launch_listening(
    namespace: str, config: Path, log_path: Path, address: str
) -> subprocess.Popen[bytes]:
    log_path.unlink(missing_ok=True)
    # Absolute paths: sshd re-executes itself, and a relative -E breaks in the child.
    process = subprocess.Popen(
        netns_argv(
            namespace, [str(sshd_harness.SSHD), "-D", "-f", str(config), "-E", str(log_path)]
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    listening = f"Server listening on {address} port {SSH_PORT}."
    deadline = time.monotonic() + sshd_harness.START_TIMEOUT
    while time.monotonic() < deadline:
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if listening in log:
            return process
        if process.poll() is not None:
            raise NetnsError(f"sshd in {namespace} exited with {process.returncode}:\n{log}")
        time.sleep(0.02)
    end_process_tree(process)
    raise NetnsError(f"sshd in {namespace} did not listen on {address} within 5 s")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result
