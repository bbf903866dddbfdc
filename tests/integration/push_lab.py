"""A push lab: a bastion and a target with real sshd and odd, and Even in process.

`push_lab()` builds it (harness.netns: a bastion and a target, each with its own sshd and the
real `odd grant-ssh-access`, the zipapp `odd install` writes, run by /usr/bin/python3), starts
Even in process (TestClient, the real paramiko pusher with `hop_clock` as its hop pool's clock,
SQLite) and yields a `PushLab`; on the way out it closes Even's connections, ends every process
of the topology by PID and removes its files. Used by bench/push_latency.py, bench/push_phases.py
and tests/integration/test_push_hops_netns.py. Root, iproute2 and OpenSSH required
(`NetnsUnavailable`/`SshdUnavailable` say what is missing).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from even.api.app import create_app
from even.config import load_settings
from even.push.pusher import Destination, ParamikoPusher
from even.store.db import make_engine
from even.store.schema import upgrade
from even.wiring import Components, build_components, build_pusher
from harness import sshd as sshd_harness
from harness.netns import NamespacedSshd, Topology, create_topology
from harness.odd_host import install_odd, with_config, write_odd_conf
from harness.sshd import ensure_login_user
from odd.sshd_config import push_key_options
from tests.conftest import make_even_dir

USER, BASTION, TARGET = "piutest", "bastion.even.test", "target.even.test"
POLICY = f"""
defaults: {{max_lifetime_minutes: 60, reason: {{min_length: 5}}}}
rules:
  - name: bench
    subjects: {{users: [{USER}]}}
    hosts: ["{TARGET}"]
    logins: ["{{username}}"]
    modes: [push]
    bastion: {BASTION}
"""


@dataclass
class PushLab:
    topology: Topology
    sshds: dict[str, NamespacedSshd]  # by hostname
    known_hosts: Path  # Even's pins
    components: Components
    client: TestClient
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def pusher(self) -> ParamikoPusher:
        assert self.components.push is not None
        pusher = self.components.push._runner._pusher
        assert isinstance(pusher, ParamikoPusher)
        return pusher

    @property
    def bastion(self) -> Destination:
        return Destination(BASTION)

    @property
    def target(self) -> Destination:
        return Destination(TARGET, 22, via=Destination(BASTION))

    def grant(self) -> str:
        """POST a push grant; its request id (201 asserted)."""
        answer = self.client.post("/v1/access-requests", headers=self.headers, json=self.body)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def revoke(self, request_id: str) -> None:
        revoke = f"/v1/access-requests/{request_id}/revoke"
        assert self.client.post(revoke, headers=self.headers).status_code == 200


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True, capture_output=True)  # fmt: skip
    return path.with_suffix(".pub").read_text().strip()


@contextmanager
def push_lab(hop_clock: Callable[[], float] = time.monotonic) -> Iterator[PushLab]:
    ensure_login_user(USER)
    tmp = Path(tempfile.mkdtemp(prefix="even-push-bench-"))
    hosts_dir = sshd_harness._secure_tempdir()
    topo = create_topology()
    try:
        config = make_even_dir(tmp / "even", POLICY)
        keygen(tmp / "ca")
        handles = {
            n.hostname: topo.start_sshd(
                n, hosts_dir / n.hostname, ca_file=tmp / "ca.pub", push_user="root"
            )
            for n in (topo.bastion, topo.target)
        }
        push_pub = " ".join((config.parent / "push_key.pub").read_text().split()[:2])
        odd = install_odd(hosts_dir / "usr-local")
        for name, behind in ((BASTION, [TARGET]), (TARGET, [])):
            handle = handles[name]
            odd_conf = write_odd_conf(
                handle.workdir, push_user="root", keys_dir=handle.authorized_keys_dir
            )
            options = with_config(push_key_options("root", odd, behind), odd_conf)
            handle.push_keys_file.write_text(f"{options} {push_pub}\n")
        pins = tmp / "known_hosts"
        pins.write_text("".join(f"{n} {h.host_key_pub}\n" for n, h in handles.items()))
        data = yaml.safe_load(config.read_text())
        data["bastions"] = [{"name": BASTION, "address": f"{BASTION}:22"}]
        data["push"].update(user="root", known_hosts=str(pins),
                            host_addresses={BASTION: f"{topo.bastion.address}:22"})  # fmt: skip
        config.write_text(yaml.safe_dump(data))
        settings = load_settings(config)
        upgrade(make_engine(settings.resolved_database_url))
        pusher = build_pusher(settings, hop_clock=hop_clock)
        assert isinstance(pusher, ParamikoPusher)
        components = build_components(settings, pusher=pusher)
        assert components.push is not None and components.dev_issuer is not None
        headers = {"Authorization": f"Bearer {components.dev_issuer.mint(USER, [])}"}
        body = {"hostname": TARGET, "reason": "bench INC-1", "mode": "push",
                "public_key": keygen(tmp / "user")}  # fmt: skip
        with TestClient(create_app(settings, components=components)) as client:
            try:
                yield PushLab(topo, handles, pins, components, client, headers, body)
            finally:
                components.push.close()
    finally:
        topo.teardown()
        shutil.rmtree(hosts_dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
