"""Benchmark (not a test): time from a push-mode request to its 201, cold and warm.

Builds the namespace lab (harness.netns: a bastion and a target, each with its own sshd and
the real `odd grant-ssh-access`, the zipapp `odd install` writes, run by /usr/bin/python3),
runs Even in process (TestClient, real paramiko pusher,
SQLite) and times `POST /v1/access-requests {mode: push}` through the bastion to the target:
- cold: Even's kept bastion connection is dropped before each request (TCP + SSH handshake
  and authentication to the bastion, then the hop to the target);
- warm: the bastion connection is kept (only the hop to the target is new).
Each grant is revoked (untimed) before the next, so the managed files stay small. Prints
median and p90; asserts nothing. Root, iproute2 and OpenSSH required.

    .venv/bin/python -m bench.push_latency [--runs 20]    (from the repository root)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from even.api.app import create_app
from even.config import load_settings
from even.push.pusher import Destination
from even.store.db import make_engine
from even.store.schema import upgrade
from even.wiring import build_components
from harness import sshd as sshd_harness
from harness.netns import create_topology
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


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True, capture_output=True)  # fmt: skip
    return path.with_suffix(".pub").read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    ensure_login_user(USER)
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="even-push-bench-"))
    hosts_dir = sshd_harness._secure_tempdir()
    topo = create_topology()
    try:
        config = make_even_dir(tmp / "even", POLICY)
        _keygen(tmp / "ca")
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
        components = build_components(settings)
        assert components.push is not None and components.dev_issuer is not None
        headers = {"Authorization": f"Bearer {components.dev_issuer.mint(USER, [])}"}
        body = {"hostname": TARGET, "reason": "bench INC-1", "mode": "push",
                "public_key": _keygen(tmp / "user")}  # fmt: skip
        figures: dict[str, list[float]] = {"grant, cold": [], "grant, warm": []}
        with TestClient(create_app(settings, components=components)) as client:
            for kind in ("grant, cold", "grant, warm") * 2:  # interleaved halves
                for _ in range(args.runs // 2):
                    if kind == "grant, cold":
                        components.push.close()  # drop the kept bastion connection
                    started = time.perf_counter()
                    answer = client.post("/v1/access-requests", headers=headers, json=body)
                    figures[kind].append(time.perf_counter() - started)
                    assert answer.status_code == 201, answer.text
                    revoke = f"/v1/access-requests/{answer.json()['id']}/revoke"
                    assert client.post(revoke, headers=headers).status_code == 200
        # Where the time goes: `odd list` on the bastion (kept connection), on the target (a
        # new hop each time), and the hop without any command.
        pusher = components.push._runner._pusher
        bastion, hop = Destination(BASTION), Destination(TARGET, 22, via=Destination(BASTION))
        for kind, destination in (("odd list, bastion", bastion), ("odd list, target", hop)):
            values = figures[kind] = []
            for _ in range(args.runs):
                started = time.perf_counter()
                assert pusher.run(destination, "list", timeout=30).exit_status == 0
                values.append(time.perf_counter() - started)
        # The hop alone: a direct-tcpip channel and the target's SSH handshake, no command.
        values = figures["hop, no command"] = []
        for _ in range(args.runs):
            started = time.perf_counter()
            transport, _reused = pusher._transport(bastion, time.monotonic() + 30, fresh=False)
            channel = transport.open_channel("direct-tcpip", (TARGET, 22), ("127.0.0.1", 0))
            pusher._client(hop, channel, time.monotonic() + 30).close()
            values.append(time.perf_counter() - started)
        for kind, values in figures.items():
            values.sort()
            p90 = values[int(0.9 * (len(values) - 1))]
            print(f"{kind:17}: median "
                  f"{statistics.median(values) * 1000:6.1f} ms, p90 {p90 * 1000:6.1f} ms "
                  f"({len(values)} runs)")  # fmt: skip
        print(f"load average (1/5/15 min): {_load(load_before)} before, "
              f"{_load(os.getloadavg())} after, on {os.cpu_count()} CPUs")  # fmt: skip
    finally:
        topo.teardown()
        shutil.rmtree(hosts_dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
