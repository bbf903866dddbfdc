"""Issue 4 end to end: push mode through a real bastion to a real target, each in its own
network namespace with its own sshd and the real `odd grant-ssh-access` forced command.

Even runs in the root namespace, which reaches the bastion but not the target: every push to
the target goes through a direct-tcpip hop over Even's (paramiko) bastion connection, every
user login through `ssh -J` (or piu's equivalent ProxyCommand). Two Evens share the hosts:
`even serve` for piu and the classic API, and one in process for clock and failure
injection; each has its own database and push key, both keys are authorised on the hosts.

The user's ssh here is told the lab's names and host keys by an `ssh` wrapper that adds
`-F lab.cfg` (OpenSSH reads ~/.ssh/config from the passwd entry, not $HOME, so a test cannot
point it elsewhere), standing for a developer's own ~/.ssh/config.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from audit import store as audit_store
from even.api.app import create_app
from even.clock import FixedClock
from even.config import Settings, load_settings
from even.errors import PushFailed
from even.identity import Identity
from even.identity.dev_issuer import DevIssuer
from even.push.errors import HostUnreachable
from even.push.pusher import CommandResult, Destination, ParamikoPusher, Pusher
from even.service.models import AccessRequestInput, ListFilters
from even.store.db import make_engine
from even.store.schema import upgrade
from even.wiring import Components, build_components
from harness import sshd as sshd_harness
from harness.even_server import EvenServer, start_even
from harness.netns import NamespacedSshd, NetnsUnavailable, Topology, create_topology
from harness.odd_host import install_odd, with_config, write_odd_conf
from harness.ports import free_port
from harness.sshd import SshdUnavailable, ensure_login_user
from odd.sshd_config import push_key_options
from tests.conftest import make_even_dir, make_live_even_dir, requires_real_component

pytestmark = [pytest.mark.integration, pytest.mark.netns, pytest.mark.sshd]

USER = "piutest"  # the requester, and the login on both hosts
GHOST = "evenghost"  # a login the policy allows but no host has: odd refuses it
PUSH_USER = "root"  # SPEC §5's root set-up: PermitRootLogin forced-commands-only
BASTION = "bastion.even.test"
TARGET = "target.even.test"
REASON = "lab work INC-4"
POLICY = f"""
defaults: {{max_lifetime_minutes: 60, reason: {{min_length: 5}}}}
rules:
  - name: push-lab
    subjects: {{users: [{USER}]}}
    hosts: ["{TARGET}"]
    logins: ["{{username}}", {GHOST}]
    modes: [push]
    bastion: {BASTION}
    source_addresses: [10.79.0.0/16]
"""


class OffsetClock:
    """The real clock shifted by `offset` (what Even believes the time is)."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class Crash(BaseException):
    """Stands for Even dying: nothing after it runs, no outcome is recorded."""


@dataclass
class CrashAfter:
    """The real pusher, but Even "dies" right after the target accepted a grant."""

    inner: Pusher

    def run(self, destination: Destination, command: str, *, timeout: float) -> CommandResult:
        result = self.inner.run(destination, command, timeout=timeout)
        if destination.name == TARGET and command.startswith("grant "):
            raise Crash
        return result

    def close(self) -> None:
        self.inner.close()


@dataclass
class Lab:
    topo: Topology
    bastion: NamespacedSshd
    target: NamespacedSshd
    tmp: Path
    served: EvenServer  # `even serve` for piu and the classic API
    served_config: Path
    local_settings: Settings  # the in-process Even's
    ssh_bin: Path  # the directory with the `ssh` wrapper
    user_key: Path  # registered with `piu keys add`
    token: str

    def env(self) -> dict[str, str]:
        home = self.tmp / "home"
        return {
            **os.environ,
            "PATH": f"{self.ssh_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "cfg"),
            "XDG_STATE_HOME": str(home / "state"),
            "PIU_EVEN_URL": self.served.url,
            "PIU_TOKEN": self.token,
            "SSH_AUTH_SOCK": "",
        }

    def piu(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "piu", *args],
            capture_output=True, text=True, env=self.env(), timeout=60, check=False,
        )  # fmt: skip

    def ssh(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, capture_output=True, text=True, env=self.env(), timeout=60,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip

    def jump(self, key: Path, *command: str) -> subprocess.CompletedProcess[str]:
        """`ssh -J USER@BASTION USER@TARGET`, the key given for both hops (via the config)."""
        config = _client_config(self.tmp / f"{key.name}.cfg", self.topo, self.tmp, identity=key)
        return self.ssh(
            ["ssh", "-F", str(config), "-J", f"{USER}@{BASTION}", f"{USER}@{TARGET}", *command]
        )

    def managed(self, handle: NamespacedSshd, login: str = USER) -> list[str]:
        path = handle.authorized_keys_dir / login
        if not path.exists():
            return []
        return [line for line in path.read_text().split("\n") if line and line[0] != "#"]

    def lines_of(self, request_id: str) -> dict[str, list[str]]:
        return {
            name: [line for line in self.managed(handle) if f"even:{request_id}" in line]
            for name, handle in ((BASTION, self.bastion), (TARGET, self.target))
        }

    def components(self, clock: Any = None, pusher: Pusher | None = None, **push: Any):
        settings = self.local_settings
        if push:
            settings = settings.model_copy(update={"push": settings.push.model_copy(update=push)})
        return build_components(settings, clock or OffsetClock(), pusher=pusher)


# -- set-up ---------------------------------------------------------------------------------


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return path


def _client_config(path: Path, topo: Topology, tmp: Path, *, identity: Path | None = None) -> Path:
    """The user's ssh_config: lab names and pinned host keys; hops are spelled out by callers."""
    lines = [
        f"Host {BASTION}",
        f"    HostName {topo.bastion.address}",
        f"    HostKeyAlias {BASTION}",
        "Host *",
        f"    UserKnownHostsFile {tmp / 'user_known_hosts'}",
        "    GlobalKnownHostsFile /dev/null",
        "    StrictHostKeyChecking yes",
        "    UpdateHostKeys no",
        "    BatchMode yes",
        "    IdentityAgent none",
        "    ConnectTimeout 5",
        "    LogLevel ERROR",
    ]
    if identity is not None:
        lines += [f"    IdentityFile {identity}", "    IdentitiesOnly yes"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _even_config(config: Path, topo: Topology, known_hosts: Path) -> None:
    data = yaml.safe_load(config.read_text())
    data["bastions"] = [{"name": BASTION, "address": f"{BASTION}:22", "hosts": [TARGET]}]
    data["push"].update(
        user=PUSH_USER,
        known_hosts=str(known_hosts),
        timeout_seconds=20,
        # Even resolves the bastion's name here; the target is only ever named to the bastion.
        host_addresses={BASTION: f"{topo.bastion.address}:22"},
    )
    config.write_text(yaml.safe_dump(data))
    (config.parent / "policy.yaml").write_text(POLICY)


def _unavailable(reason: str) -> None:
    requires_real_component(f"push-mode namespace test: {reason}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if shutil.which("ssh") is None or not sshd_harness.SSHD.exists():
        _unavailable("OpenSSH server/client not installed (run `make system-deps`)")
    tmp = tmp_path_factory.mktemp("push")
    try:
        ensure_login_user(USER)
        topo = create_topology()
    except (SshdUnavailable, NetnsUnavailable) as exc:
        _unavailable(str(exc))
    hosts_dir: Path | None = None
    served: EvenServer | None = None
    try:
        hosts_dir = sshd_harness._secure_tempdir()  # sshd's files: root-owned, 0755 up
        ca_file = _keygen(tmp / "ca").with_suffix(".pub")  # certificates are not used here
        handles = {
            node.hostname: topo.start_sshd(
                node,
                hosts_dir / node.hostname,
                ca_file=ca_file,
                push_user=PUSH_USER,
                bastion_for=behind,  # the bastion: `odd sshd-config --push --bastion-for`
            )
            for node, behind in ((topo.bastion, [TARGET]), (topo.target, []))
        }
        bastion, target = handles[BASTION], handles[TARGET]
        known_hosts = tmp / "even_known_hosts"  # Even's pins: the names it uses
        known_hosts.write_text(
            f"{BASTION} {bastion.host_key_pub}\n{TARGET} {target.host_key_pub}\n"
        )
        (tmp / "user_known_hosts").write_text(known_hosts.read_text())
        port = free_port()
        served_config = make_live_even_dir(tmp / "served", port)
        local_config = make_even_dir(tmp / "local")
        for config in (served_config, local_config):
            _even_config(config, topo, known_hosts)
        upgrade(make_engine(load_settings(local_config).resolved_database_url))
        push_keys = [
            (c.parent / "push_key.pub").read_text().split()[:2]
            for c in (served_config, local_config)
        ]
        # The odd zipapp as `odd install` writes it, run by /usr/bin/python3 alone.
        odd = install_odd(hosts_dir / "usr-local")
        for handle, behind in ((bastion, [TARGET]), (target, [])):
            odd_conf = write_odd_conf(
                handle.workdir, push_user=PUSH_USER, keys_dir=handle.authorized_keys_dir
            )
            options = with_config(push_key_options(PUSH_USER, odd, behind), odd_conf)
            handle.push_keys_file.write_text(
                "".join(f"{options} {' '.join(key)} even-push\n" for key in push_keys)
            )
        ssh_bin = tmp / "bin"
        ssh_bin.mkdir()
        wrapper = ssh_bin / "ssh"
        lab_cfg = _client_config(tmp / "lab.cfg", topo, tmp)
        wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {lab_cfg} "$@"\n')
        wrapper.chmod(0o755)
        served = start_even(served_config, log_path=tmp / "even.log", port=port)
        settings = load_settings(served_config)
        issuer = DevIssuer.from_file(
            settings.path(settings.identity.dev_issuer_key), settings.dev_issuer_url
        )
        yield Lab(
            topo=topo,
            bastion=bastion,
            target=target,
            tmp=tmp,
            served=served,
            served_config=served_config,
            local_settings=load_settings(local_config),
            ssh_bin=ssh_bin,
            user_key=_keygen(tmp / "user_key"),
            token=issuer.mint(USER, []),
        )
    finally:
        if served is not None:
            served.stop()
        topo.teardown()
        if hosts_dir is not None:
            shutil.rmtree(hosts_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_hosts(lab: Lab) -> Iterator[None]:
    """Each test starts with no grants: revoke (through odd) whatever the last one left."""
    yield
    pusher = _pusher(lab)
    try:
        for destination, handle in (
            (Destination(BASTION), lab.bastion),
            (Destination(TARGET, 22, via=Destination(BASTION)), lab.target),
        ):
            for line in lab.managed(handle):
                grant_id = line.rsplit(" ", 1)[1].removeprefix("even:")
                command = f"revoke --grant-id {grant_id} --login {USER}"
                assert pusher.run(destination, command, timeout=10).exit_status == 0
            assert lab.managed(handle) == []
    finally:
        pusher.close()


def _pusher(lab: Lab) -> ParamikoPusher:
    """The real pusher with the in-process Even's key and pins."""
    return ParamikoPusher(
        user=PUSH_USER,
        private_key=lab.local_settings.path("push_key"),
        known_hosts=lab.tmp / "even_known_hosts",
        host_addresses={BASTION: (lab.topo.bastion.address, 22)},
    )


def _records(config_or_settings: Path | Settings, request_id: str) -> list[dict[str, Any]]:
    settings = (
        config_or_settings
        if isinstance(config_or_settings, Settings)
        else load_settings(config_or_settings)
    )
    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            return audit_store.records_for_request(conn, request_id)
    finally:
        engine.dispose()


def _fingerprint(public_key: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(public_key)], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[1]


def _printed_argv(output: str) -> list[str]:
    """The ssh command piu printed under "Connect with:"."""
    lines = output.split("\n")
    return shlex.split(lines[lines.index("Connect with:") + 1])


def _wait_refused(lab: Lab, argv: list[str], seconds: float = 12.0) -> None:
    deadline = time.monotonic() + seconds
    while lab.ssh(argv).returncode == 0:
        assert time.monotonic() < deadline, "sshd still accepts the key"
        time.sleep(0.5)


# -- must-show 1 and 2: piu, ssh -J, revoke ---------------------------------------------------


def test_piu_push_grant_logs_in_through_the_bastion_and_revoke_ends_it(lab: Lab) -> None:
    result = lab.piu("request-access", "--mode", "push", TARGET, REASON)
    assert result.returncode == 0, result.stderr
    assert f"(push) via {BASTION}" in result.stdout
    argv = _printed_argv(result.stdout)
    request_id = result.stdout.split()[1].rstrip(":")
    piu_key = lab.tmp / "home" / ".ssh" / "piu" / "id_ed25519"
    assert argv[:3] == ["ssh", "-i", str(piu_key)]
    assert lab.lines_of(request_id) == {
        BASTION: [lab.managed(lab.bastion)[-1]],
        TARGET: [lab.managed(lab.target)[-1]],
    }
    assert (
        f'permitopen="{TARGET}:22",command="/usr/sbin/nologin"'
        in lab.lines_of(request_id)[BASTION][0]
    )
    assert 'from="10.79.0.0/16"' in lab.lines_of(request_id)[TARGET][0]

    # piu's printed command (its ProxyCommand is `ssh -W` through the bastion, the key kept)…
    login = lab.ssh([*argv, "id", "-un"])
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == USER
    # …and plain `ssh -J`: both daemons log the login with piu's key.
    fingerprint = _fingerprint(piu_key.with_suffix(".pub"))
    jumped = lab.jump(piu_key, "hostname", "-I")
    assert jumped.returncode == 0, jumped.stderr
    assert lab.topo.target.address in jumped.stdout.split()
    accepted = (
        rf"Accepted publickey for {USER} from {{}} port \d+ ssh2: ED25519 {re.escape(fingerprint)}"
    )
    lab.bastion.wait_for_log(accepted.format(re.escape(lab.topo.root_address)))
    lab.target.wait_for_log(accepted.format(re.escape(lab.topo.bastion_inner_address)))
    # A shell on the bastion itself ends in nologin.
    shell = lab.ssh(["ssh", "-i", str(piu_key), f"{USER}@{BASTION}", "id"])
    assert shell.returncode != 0 and "uid=" not in shell.stdout

    revoked = lab.piu("revoke", request_id)
    assert revoked.returncode == 0, revoked.stderr
    assert lab.lines_of(request_id) == {BASTION: [], TARGET: []}
    assert lab.ssh([*argv, "true"]).returncode == 255
    types = [r["type"] for r in _records(lab.served_config, request_id)]
    assert types == ["access.requested", "access.push_started", "access.granted", "access.revoked"]


def test_the_original_forms_grant_the_registered_key(lab: Lab) -> None:
    added = lab.piu("keys", "add", str(lab.user_key.with_suffix(".pub")))
    assert added.returncode == 0, added.stderr
    # The classic API: hostname is the bastion, remote_host the host behind it.
    answer = httpx.post(
        lab.served.url + "/access-requests",
        headers={"Authorization": f"Bearer {lab.token}"},
        json={"hostname": BASTION, "remote_host": TARGET, "username": USER,
              "reason": REASON, "lifetime_minutes": 5},
        timeout=60, trust_env=False,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.text == (
        f"Access to host {TARGET} for user {USER} was granted.\n"
        f"ssh -J {USER}@{BASTION} {USER}@{TARGET}\n"
    )
    login = lab.jump(lab.user_key, "id", "-un")
    assert login.returncode == 0, login.stderr
    lab.target.wait_for_log(
        rf"Accepted publickey for {USER} from \S+ port \d+ ssh2: ED25519 "
        + re.escape(_fingerprint(lab.user_key.with_suffix(".pub")))
    )
    listed = httpx.get(
        lab.served.url + "/access-requests",
        headers={"Authorization": f"Bearer {lab.token}"},
        timeout=30, trust_env=False,
    ).json()  # fmt: skip
    assert listed[0]["hostname"] == BASTION and listed[0]["remote_host"] == TARGET
    assert listed[0]["status"] == "GRANTED" and listed[0]["lifetime_minutes"] == 5

    # piu's original form: `piu request-access BASTION REASON --remote HOST`.
    result = lab.piu(
        "request-access", BASTION, REASON, "--remote", TARGET, "--mode", "push", "-o", "json"
    )
    assert result.returncode == 0, result.stderr
    grant = json.loads(result.stdout)
    assert grant["bastion"] == BASTION and grant["certificate"] is None
    assert grant["ssh_command"] == f"ssh -J {USER}@{BASTION} {USER}@{TARGET}"
    piu_key = Path(grant["identity_file"])
    assert lab.jump(piu_key, "true").returncode == 0


def test_sshd_enforces_the_pushed_expiry_and_even_then_expires_the_grant(lab: Lab) -> None:
    # Even's minimum lifetime is a minute: its clock runs 55 s behind, so the expiry it
    # pushes (one minute after "now", rounded down) is about five seconds away for sshd.
    key = _keygen(lab.tmp / "expiry_key")  # no other grant may hold this key
    clock = OffsetClock(timedelta(seconds=-55))
    components = lab.components(clock)
    me = Identity(USER, (), "dev", USER, dev_issuer=True)
    view = components.access.request_access(
        me,
        AccessRequestInput(
            hostname=TARGET,
            reason=REASON,
            mode="push",
            lifetime_minutes=1,
            public_key=key.with_suffix(".pub").read_text().strip(),
        ),
    )
    expiry = datetime.strptime(view.valid_before, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(0) < expiry - datetime.now(UTC) <= timedelta(seconds=6)
    assert f'expiry-time="{expiry:%Y%m%d%H%M%S}Z"' in lab.lines_of(view.id)[TARGET][0]
    config = _client_config(lab.tmp / "expiry.cfg", lab.topo, lab.tmp, identity=key)
    argv = ["ssh", "-F", str(config), "-J", f"{USER}@{BASTION}", f"{USER}@{TARGET}", "true"]
    assert lab.ssh(argv).returncode == 0
    _wait_refused(lab, argv)  # sshd itself, at expiry-time: Even has done nothing yet
    assert lab.lines_of(view.id)[TARGET]  # still there: sshd refused it on its own
    assert components.jobs.expire_once() == []  # Even's clock: not yet
    clock.offset = timedelta(0)
    assert components.jobs.expire_once() == [view.id]
    assert lab.lines_of(view.id) == {BASTION: [], TARGET: []}
    assert components.access.get(me, view.id).status == "EXPIRED"
    assert _records(lab.local_settings, view.id)[-1]["type"] == "access.expired"


# -- must-show 3: the forced command refuses hostile input, through sshd ---------------------


def test_hostile_commands_are_refused_by_odd_through_the_real_hop(lab: Lab) -> None:
    pusher = _pusher(lab)
    try:
        hop = Destination(TARGET, 22, via=Destination(BASTION))
        before = sorted(p.name for p in lab.target.authorized_keys_dir.iterdir())
        for command in (
            f"grant --grant-id x --login {USER};id --expires 20991231000000Z --key ssh-ed25519 A",
            f"grant --grant-id x --login {USER} --expires 20200101000000Z --key ssh-ed25519 A",
            "list $(id)",
        ):
            result = pusher.run(hop, command, timeout=10)
            assert (result.exit_status, result.stdout) == (2, ""), command
            assert "odd: error: " in result.stderr
        assert sorted(p.name for p in lab.target.authorized_keys_dir.iterdir()) == before
        # The push key's hop is limited to the hosts behind the bastion (permitopen).
        by_address = Destination(lab.topo.target.address, 22, via=Destination(BASTION))
        with pytest.raises(HostUnreachable, match="did not open a connection"):
            pusher.run(by_address, "list", timeout=10)
    finally:
        pusher.close()


# -- must-show 4: failures are 502, recorded, and leave nothing behind -----------------------


def _push_via_api(components: Components, public_key: Path, login: str) -> httpx.Response:
    token = components.dev_issuer.mint(USER, [])  # type: ignore[union-attr]
    with TestClient(create_app(components.settings, components=components)) as client:
        return client.post(
            "/v1/access-requests",
            headers={"Authorization": f"Bearer {token}"},
            json={"hostname": TARGET, "reason": REASON, "mode": "push", "login": login,
                  "public_key": public_key.read_text().strip()},
        )  # fmt: skip


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong target key", "does not match the key pinned"),
        ("unpinned target", "no host key pinned for 'target.even.test'"),
        ("bastion unreachable", "cannot connect to"),
        ("forced command fails", f"login '{GHOST}' does not exist"),
    ],
)
def test_a_failed_push_is_502_recorded_and_leaves_the_bastion_clean(
    lab: Lab, case: str, message: str
) -> None:
    bastion_line, target_line = lab.bastion.host_key_pub, lab.target.host_key_pub
    pins = lab.tmp / f"pins-{case.replace(' ', '-')}"
    pins.write_text(f"{BASTION} {bastion_line}\n{TARGET} {target_line}\n")
    overrides: dict[str, Any] = {"known_hosts": str(pins)}
    login = USER
    if case == "wrong target key":
        pins.write_text(f"{BASTION} {bastion_line}\n{TARGET} {bastion_line}\n")
    elif case == "unpinned target":
        pins.write_text(f"{BASTION} {bastion_line}\n")
    elif case == "bastion unreachable":
        overrides["host_addresses"] = {BASTION: f"{lab.topo.bastion.address}:2"}
    else:
        login = GHOST
    before = (lab.managed(lab.bastion), lab.managed(lab.target))
    components = lab.components(**overrides)
    answer = _push_via_api(components, lab.user_key.with_suffix(".pub"), login)
    assert answer.status_code == 502, answer.text
    problem = answer.json()
    assert problem["code"] == "push_failed" and message in problem["detail"], problem
    assert (lab.managed(lab.bastion), lab.managed(lab.target)) == before
    with components.engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT id, status FROM access_requests ORDER BY created DESC, rowid DESC LIMIT 1"
        ).one()
    assert row.status == "FAILED"
    types = [r["type"] for r in _records(lab.local_settings, row.id)]
    assert types == ["access.requested", "access.push_started", "access.failed"]


# -- must-show 5: a push left without outcome is reconciled at the next start ----------------


def test_a_push_interrupted_before_its_outcome_is_reconciled_on_restart(lab: Lab) -> None:
    now = datetime.now(UTC)
    first = lab.components(FixedClock(now))
    first.push._runner._pusher = CrashAfter(first.push._runner._pusher)  # type: ignore[union-attr]
    me = Identity(USER, (), "dev", USER, dev_issuer=True)
    request = AccessRequestInput(
        hostname=TARGET, reason=REASON, mode="push",
        public_key=lab.user_key.with_suffix(".pub").read_text().strip(),
    )  # fmt: skip
    with pytest.raises(Crash):
        first.access.request_access(me, request)
    first.push.close()  # type: ignore[union-attr]
    request_id = first.access.list_requests(me, ListFilters(status="PUSHING"))[0][0].id
    assert all(lab.lines_of(request_id).values())  # both hosts got the key, no outcome
    assert lab.jump(lab.user_key, "true").returncode == 0

    # "Restart": a new Even past the push timeout; its jobs run their first round at start.
    later = FixedClock(now + timedelta(seconds=lab.local_settings.push.timeout_seconds + 1))
    second = lab.components(later)
    with TestClient(create_app(second.settings, components=second)):
        deadline = time.monotonic() + 15
        while second.access.get(me, request_id).status == "PUSHING":
            assert time.monotonic() < deadline, "not reconciled"
            time.sleep(0.1)
    assert second.access.get(me, request_id).status == "FAILED"
    assert lab.lines_of(request_id) == {BASTION: [], TARGET: []}
    last = _records(lab.local_settings, request_id)[-1]
    assert last["type"] == "access.failed"
    assert last["details"]["error"] == "reconciled" and last["details"]["cleanup"] == "clean"


# -- issue 14, finding 2: a failed push never leaves a key Even can no longer remove ---------


@dataclass
class LoseAnswerRefuseFirstCleanup:
    """The real pusher, but the target's answer to the grant is lost (the line is written),
    and each host refuses the first clean-up of that grant asked of it."""

    inner: Pusher
    granted: set[str] = field(default_factory=set)  # grant ids pushed through this pusher
    refused: set[str] = field(default_factory=set)  # hosts that refused once already

    def run(self, destination: Destination, command: str, *, timeout: float) -> CommandResult:
        words = command.split(" ")
        grant_id = words[words.index("--grant-id") + 1] if "--grant-id" in words else ""
        if (
            words[0] == "revoke"
            and grant_id in self.granted
            and destination.name not in self.refused
        ):
            self.refused.add(destination.name)
            raise HostUnreachable(destination.name, "connection refused (first clean-up)")
        result = self.inner.run(destination, command, timeout=timeout)
        if words[0] == "grant":
            self.granted.add(grant_id)
            if destination.name == TARGET:
                raise HostUnreachable(TARGET, "connection reset before the answer")
        return result

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("ended_by", ["reconciler", "revoke"])
def test_a_failed_push_whose_cleanup_failed_is_cleaned_later_and_revocable(
    lab: Lab, ended_by: str
) -> None:
    components = lab.components()
    components.push._runner._pusher = LoseAnswerRefuseFirstCleanup(  # type: ignore[union-attr]
        components.push._runner._pusher  # type: ignore[union-attr]
    )
    try:
        me = Identity(USER, (), "dev", USER, dev_issuer=True)
        request = AccessRequestInput(
            hostname=TARGET, reason=REASON, mode="push",
            public_key=lab.user_key.with_suffix(".pub").read_text().strip(),
        )  # fmt: skip
        # In-process, without the app's lifespan: its jobs loop would clean up on its own.
        with pytest.raises(PushFailed, match="may remain"):
            components.access.request_access(me, request)
        (view,), _ = components.access.list_requests(me, ListFilters(status="FAILED", limit=1))
        assert view.status_reason == "cleanup_incomplete"
        # What the finding was about: a working key that Even had given up on.
        assert all(lab.lines_of(view.id).values())
        assert lab.jump(lab.user_key, "true").returncode == 0
        failed = _records(lab.local_settings, view.id)[-1]
        assert failed["details"]["cleanup"] == "incomplete"
        assert sorted(failed["details"]["leftover_hosts"]) == [BASTION, TARGET]
        if ended_by == "reconciler":
            # Other tests' unfinished clean-ups may be worked too: this one must be among them.
            assert view.id in components.jobs.reconcile_once()
            last = _records(lab.local_settings, view.id)[-1]
            assert (last["type"], last["details"]["error"]) == ("access.failed", "cleanup")
            assert last["details"]["cleanup"] == "clean"
            assert components.access.get(me, view.id).status == "FAILED"
        else:
            assert components.revocation.revoke(me, view.id, "key left behind") == "REVOKED"
            assert _records(lab.local_settings, view.id)[-1]["type"] == "access.revoked"
            assert view.id not in components.jobs.reconcile_once()
        assert lab.lines_of(view.id) == {BASTION: [], TARGET: []}
        assert lab.jump(lab.user_key, "true").returncode != 0  # sshd refuses the key now
    finally:
        components.push.close()  # type: ignore[union-attr]
