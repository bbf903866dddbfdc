"""Push mode end to end, host side: a bastion and a target, each in its own network namespace
with its own sshd configured by `odd sshd-config --push` (push user root), and the real
`odd grant-ssh-access` run by sshd as the push key's forced command.

What it shows: a key pushed to the bastion (`--jump-to`) and to the target (through the
bastion, over the push key's own `permitopen` hop) lets the user `ssh -J` to the target and
nothing else: a shell on the bastion ends in nologin, a hop anywhere else is refused, the root
namespace cannot reach the target at all. sshd itself enforces `expiry-time`; `revoke` removes
the line and, with `--end-sessions`, ends the open session; bad commands exit 2 and write
nothing.

Skipped with a reason when not root, without sshd or without `ip`; failed instead when CI=true.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness import sshd as sshd_harness
from harness.netns import (
    NETNS_ETC,
    NamespacedSshd,
    NetnsUnavailable,
    Topology,
    create_topology,
    teardown,
    topology,
)
from harness.odd_host import install_odd, with_config, write_odd_conf
from harness.sshd import SshdUnavailable, ensure_login_user
from odd.sshd_config import push_key_options
from tests.conftest import requires_real_component

pytestmark = [pytest.mark.integration, pytest.mark.netns, pytest.mark.sshd]

LOGIN = "piutest"
PUSH_USER = "root"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class PushLab:
    topo: Topology
    bastion: NamespacedSshd
    target: NamespacedSshd
    tmp: Path
    user_key: Path
    push_config: Path  # ssh_config: as root with the push key
    user_config: Path  # ssh_config: as LOGIN with the user key

    def push(self, host: str, command: str) -> subprocess.CompletedProcess[str]:
        """Run `command` as Even would: the push key, on `host`, through the bastion if needed."""
        return _ssh(self.push_config, host, command)

    def grant(self, host: str, grant_id: str, expires: datetime, extra: str = "") -> None:
        key_type, data = self.user_key.with_suffix(".pub").read_text().split()[:2]
        command = (
            f"grant --grant-id {grant_id} --login {LOGIN} --expires {_expiry(expires)}{extra} "
            f"--key {key_type} {data}"
        )
        result = self.push(host, command)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"granted {grant_id} login={LOGIN} "), result.stdout

    def user(self, host: str, *command: str, **options: str) -> subprocess.CompletedProcess[str]:
        return _ssh(self.user_config, host, *command, options=options)

    def managed(self, handle: NamespacedSshd) -> list[str]:
        path = handle.authorized_keys_dir / LOGIN
        if not path.exists():
            return []
        return [line for line in path.read_text().split("\n") if line and line[0] != "#"]


def _expiry(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%SZ")


def _ssh(
    config: Path, host: str, *command: str, options: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = ["ssh", "-F", str(config)]
    for name, value in (options or {}).items():
        argv += ["-o", f"{name}={value}"]
    argv += [host, "--", *command]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False
    )


def _keygen(*args: str) -> None:
    subprocess.run(["ssh-keygen", "-q", *args], check=True, capture_output=True, timeout=30)


def _client_config(path: Path, lab_tmp: Path, topo: Topology, user: str, key: Path) -> Path:
    """A hermetic ssh_config: names resolved here, host keys pinned, only the given key.

    The target is reached with ProxyJump through the bastion (ssh passes `-F` on to the jump
    ssh, which is why identity and pinning live in the file, not on the command line).
    """
    bastion, target = topo.bastion, topo.target
    path.write_text(
        f"Host {bastion.hostname}\n"
        f"    HostName {bastion.address}\n"
        f"    HostKeyAlias {bastion.hostname}\n"
        f"Host {target.hostname}\n"
        f"    ProxyJump {bastion.hostname}\n"
        "Host *\n"
        f"    User {user}\n"
        f"    IdentityFile {key}\n"
        "    IdentitiesOnly yes\n"
        "    IdentityAgent none\n"
        f"    UserKnownHostsFile {lab_tmp / 'known_hosts'}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    StrictHostKeyChecking yes\n"
        "    UpdateHostKeys no\n"
        "    BatchMode yes\n"
        "    ConnectTimeout 5\n"
        "    LogLevel ERROR\n"
    )
    return path


def _unavailable(reason: str) -> None:
    requires_real_component(f"push-mode namespace test: {reason}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PushLab]:
    if shutil.which("ssh") is None or not sshd_harness.SSHD.exists():
        _unavailable("OpenSSH server/client not installed (run `make system-deps`)")
    tmp = tmp_path_factory.mktemp("odd-push")
    try:
        ensure_login_user(LOGIN)
        topo = create_topology()
    except (SshdUnavailable, NetnsUnavailable) as exc:
        _unavailable(str(exc))
    # The daemons' directories: root-owned and 0755 all the way up, like /etc/ssh, because
    # sshd opens a user's authorized-keys file as that user (pytest's tmp dirs are 0700), and
    # the forced command's path must be absolute.
    hosts_dir: Path | None = None
    try:
        hosts_dir = sshd_harness._secure_tempdir()
        for key in ("ca", "push", "user"):
            _keygen("-t", "ed25519", "-N", "", "-C", "", "-f", str(tmp / key))
        handles = {}
        for node, behind in ((topo.bastion, [topo.target.hostname]), (topo.target, [])):
            # `odd sshd-config --push --bastion-for TARGET` on the bastion: local forwarding only.
            handles[node.hostname] = topo.start_sshd(
                node,
                hosts_dir / node.hostname,
                ca_file=tmp / "ca.pub",
                push_user=PUSH_USER,
                bastion_for=behind,
            )
        bastion, target = handles[topo.bastion.hostname], handles[topo.target.hostname]
        push_pub = (tmp / "push.pub").read_text().split()[:2]
        # The odd zipapp as `odd install` writes it, run by /usr/bin/python3 alone.
        odd = install_odd(hosts_dir / "usr-local")
        for handle, behind in ((bastion, [topo.target.hostname]), (target, [])):
            odd_conf = write_odd_conf(
                handle.workdir, push_user=PUSH_USER, keys_dir=handle.authorized_keys_dir
            )
            options = with_config(push_key_options(PUSH_USER, odd, behind), odd_conf)
            handle.push_keys_file.write_text(f"{options} {' '.join(push_pub)} even-push\n")
        (tmp / "known_hosts").write_text(
            f"{topo.bastion.hostname} {bastion.host_key_pub}\n"
            f"{topo.target.hostname} {target.host_key_pub}\n"
        )
        yield PushLab(
            topo=topo,
            bastion=bastion,
            target=target,
            tmp=tmp,
            user_key=tmp / "user",
            push_config=_client_config(tmp / "push.cfg", tmp, topo, PUSH_USER, tmp / "push"),
            user_config=_client_config(tmp / "user.cfg", tmp, topo, LOGIN, tmp / "user"),
        )
    finally:
        topo.teardown()
        if hosts_dir is not None:
            shutil.rmtree(hosts_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_hosts(lab: PushLab) -> Iterator[None]:
    """Each test starts with no grants: revoke (through odd) whatever the last one left."""
    yield
    for handle in (lab.bastion, lab.target):
        for line in lab.managed(handle):
            grant_id = line.rsplit(" ", 1)[1].removeprefix("even:")
            lab.push(handle.hostname, f"revoke --grant-id {grant_id} --login {LOGIN}")
        assert lab.managed(handle) == []


def test_the_root_namespace_reaches_the_bastion_but_not_the_target(lab: PushLab) -> None:
    with socket.create_connection((lab.topo.bastion.address, 22), timeout=5):
        pass
    with pytest.raises(OSError), socket.create_connection((lab.topo.target.address, 22), 2):
        pass
    probe = f"import socket; socket.create_connection(({lab.topo.target.address!r}, 22), 5)"
    assert lab.topo.run(lab.topo.bastion, [sys.executable, "-c", probe]).returncode == 0


def test_push_then_jump_to_the_target_and_nothing_else(lab: PushLab) -> None:
    bastion, target = lab.topo.bastion.hostname, lab.topo.target.hostname
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    # Nothing granted yet: refused.
    assert lab.user(target, "true").returncode == 255
    lab.grant(bastion, "req-jump", expires, f" --jump-to {target}")
    lab.grant(target, "req-jump", expires, " --from 10.79.0.0/16")
    assert lab.managed(lab.bastion) == [
        f'restrict,port-forwarding,permitopen="{target}:22",command="/usr/sbin/nologin",'
        f'expiry-time="{_expiry(expires)}" {_user_key(lab)} even:req-jump'
    ]
    assert lab.managed(lab.target) == [
        f'restrict,expiry-time="{_expiry(expires)}",from="10.79.0.0/16" {_user_key(lab)} '
        "even:req-jump"
    ]

    result = lab.user(target, "hostname", "-I")
    assert result.returncode == 0, result.stderr
    assert lab.topo.target.address in result.stdout.split()
    # Both daemons logged the login: the bastion from the root namespace, the target from the
    # bastion (the direct-tcpip hop).
    lab.bastion.wait_for_log(
        rf"Accepted publickey for {LOGIN} from {lab.topo.root_address} port \d+ ssh2: ED25519"
    )
    lab.target.wait_for_log(
        rf"Accepted publickey for {LOGIN} from {lab.topo.bastion_inner_address} port \d+ ssh2"
    )

    # A shell (or any command) on the bastion ends in nologin.
    shell = lab.user(bastion, "id")
    assert shell.returncode != 0
    assert "uid=" not in shell.stdout
    # A hop to anywhere but the granted name is refused (permitopen matches the name as sent).
    for destination in (f"{lab.topo.target.address}:22", f"{target}:23", f"{bastion}:22"):
        hop = subprocess.run(
            ["ssh", "-F", str(lab.user_config), "-W", destination, bastion],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        assert hop.returncode != 0, destination

    # No listener on the bastion (-R): the pushed line allows forwarding, the bastion's
    # sshd_config only the local kind.
    remote = subprocess.run(
        ["ssh", "-F", str(lab.user_config), "-o", "ExitOnForwardFailure=yes", "-N",
         "-R", "127.0.0.1:2222:127.0.0.1:22", bastion],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert remote.returncode == 255
    assert "remote port forwarding failed" in remote.stderr, remote.stderr
    probe = "import socket; socket.create_connection(('127.0.0.1', 2222), 2)"
    assert lab.topo.run(lab.topo.bastion, [sys.executable, "-c", probe]).returncode != 0

    listed = lab.push(target, "list")
    assert listed.returncode == 0
    assert listed.stdout.startswith(f"req-jump {LOGIN} {_expiry(expires)} target SHA256:")


def test_revoke_ends_the_session_and_refuses_new_logins(lab: PushLab) -> None:
    bastion, target = lab.topo.bastion.hostname, lab.topo.target.hostname
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    lab.grant(bastion, "req-revoke", expires, f" --jump-to {target}")
    lab.grant(target, "req-revoke", expires)
    # The daemons serve the whole module: earlier tests' sessions are in the log already.
    mark = lab.target.log_mark()
    session = subprocess.Popen(
        ["ssh", "-F", str(lab.user_config), target, "--", "sleep", "60"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        lab.target.wait_for_log(
            rf"Starting session: command for {LOGIN} from", timeout=15, since=mark
        )
        started = time.monotonic()
        result = lab.push(target, f"revoke --grant-id req-revoke --login {LOGIN} --end-sessions")
        assert result.returncode == 0, result.stderr
        assert "lines=1 sessions_ended=1" in result.stdout
        # The session's processes were ended, so the client sees its connection go.
        assert session.wait(timeout=15) != 0
        assert time.monotonic() - started < 15
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    assert not any("even:req-revoke" in line for line in lab.managed(lab.target))
    assert lab.user(target, "true").returncode == 255
    # The bastion line goes the same way (Even revokes every host of a grant).
    assert lab.push(bastion, f"revoke --grant-id req-revoke --login {LOGIN}").returncode == 0
    assert not any("even:req-revoke" in line for line in lab.managed(lab.bastion))


def test_sshd_enforces_the_expiry_and_the_next_write_prunes_it(lab: PushLab) -> None:
    bastion, target = lab.topo.bastion.hostname, lab.topo.target.hostname
    lab.grant(bastion, "req-hop", datetime.now(UTC) + timedelta(minutes=10), f" --jump-to {target}")
    # Long enough for the push and one login through the bastion (each about a second here).
    now = datetime.now(UTC).replace(microsecond=0)
    lab.grant(target, "req-short", now + timedelta(seconds=5))
    assert lab.user(target, "true").returncode == 0
    # sshd refuses the key by itself once expiry-time has passed (seconds precision).
    deadline = time.monotonic() + 10
    while lab.user(target, "true").returncode == 0:
        assert time.monotonic() < deadline, "sshd still accepts an expired key"
        time.sleep(0.5)
    assert "even:req-short" in "\n".join(lab.managed(lab.target))  # sshd refused it; odd prunes
    lab.grant(target, "req-other", datetime.now(UTC) + timedelta(minutes=10))
    assert [line.rsplit(" ", 1)[1] for line in lab.managed(lab.target)] == ["even:req-other"]


@pytest.mark.parametrize(
    "command",
    [
        "grant --grant-id x --login piutest;id --expires 20991231000000Z --key ssh-ed25519 AAAA",
        "grant --grant-id x --login piutest --expires 20991231000000Z --key ssh-ed25519 A B",
        "grant --grant-id x --login piutest --expires 20200101000000Z --key ssh-ed25519 AAAA",
        "grant --grant-id x --login root --expires 20991231000000Z --key ssh-ed25519 AAAA",
        "frobnicate",
        "list\ttrue",
    ],
)
def test_bad_commands_exit_2_through_sshd_and_write_nothing(lab: PushLab, command: str) -> None:
    before = sorted(p.name for p in lab.target.authorized_keys_dir.iterdir())
    result = lab.push(lab.topo.target.hostname, command)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "odd: error: " in result.stderr
    assert sorted(p.name for p in lab.target.authorized_keys_dir.iterdir()) == before
    assert not (lab.target.authorized_keys_dir / "root").exists()


def test_the_push_key_runs_only_the_forced_command(lab: PushLab) -> None:
    # Whatever Even (or a thief of its key) asks for, odd gets it as SSH_ORIGINAL_COMMAND.
    result = _ssh(lab.push_config, lab.topo.target.hostname, "id")
    assert result.returncode == 2
    assert "uid=" not in result.stdout


def _user_key(lab: PushLab) -> str:
    return " ".join(lab.user_key.with_suffix(".pub").read_text().split()[:2])


def test_topology_is_removed_by_name_even_after_a_failure(lab: PushLab) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), topology() as topo:
        sleeper = topo.popen(topo.target, ["sleep", "60"])
        assert topo.names.target in _ip_lines("netns", "list")
        raise Boom
    assert sleeper.poll() is not None  # ended by PID
    namespaces = _ip_lines("netns", "list")
    assert not any(topo.suffix in line for line in namespaces)
    assert not any(topo.names.root_link in line for line in _ip_lines("link", "show"))
    assert not (NETNS_ETC / topo.names.bastion).exists()
    teardown(topo.suffix)  # idempotent
    # The lab's namespaces still exist, so the unreachable route stayed.
    assert "unreachable 10.79.0.0/16" in "\n".join(_ip_lines("route", "show"))


def _ip_lines(*args: str) -> list[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.splitlines()
