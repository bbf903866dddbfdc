#!/usr/bin/env python3
"""`make demo`: the whole product on one machine, from a clean clone.

Even (SQLite, the dev issuer) on a loopback port, a throwaway OpenSSH sshd configured by
`odd sshd-config` that trusts Even's CA, `piu request-access` for the current user, an ssh
login that runs `id`, then the audit log exported, shown
and verified. State lives in ./.demo/ (wiped
at start); everything started is stopped by PID at the end, on errors and on Ctrl-C.
The last lines show the remote `id` output and the offline verdict on the exported log.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.even_server import EvenServer, even_command, start_even  # noqa: E402
from harness.ports import free_port  # noqa: E402
from harness.sshd import (  # noqa: E402
    SshdHandle,
    SshdUnavailable,
    known_hosts_line,
    ssh_argv,
    start_sshd,
)

DEMO = ROOT / ".demo"
HOSTNAME = "demo-host.even.test"
REASON = "demo of just-in-time access DEMO-1"
POLICY = """\
# Demo policy: the current user may log in as themselves on *.even.test for 15 minutes.
defaults:
  max_lifetime_minutes: 60
  reason: {{min_length: 10, pattern: '\\b[A-Z][A-Z0-9]+-[0-9]+\\b'}}
roles:
  auditor: {{users: [{user}]}}
rules:
  - name: demo
    subjects: {{users: [{user}]}}
    hosts: ["*.even.test"]
    logins: ["{{username}}"]
    max_lifetime_minutes: 15
    extensions: [permit-pty]
"""


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, **kwargs)  # type: ignore[call-overload]


class Demo:
    def __init__(self) -> None:
        self.user = getpass.getuser()
        self.home = DEMO / "home"
        self.even_dir = DEMO / "even"
        self.config = self.even_dir / "even.yaml"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: EvenServer | None = None
        self.sshd: SshdHandle | None = None

    def start_even(self) -> None:
        step(f"even init {self.even_dir.relative_to(ROOT)} --dev-issuer; even db upgrade")
        run([*even_command(), "init", str(self.even_dir), "--dev-issuer", "--base-url", self.url])
        (self.even_dir / "policy.yaml").write_text(POLICY.format(user=self.user), encoding="utf-8")
        run([*even_command(), "db", "upgrade", "--config", str(self.config)])
        step(f"even serve on {self.url}")
        self.server = start_even(self.config, log_path=DEMO / "even.log", port=self.port)

    def start_host(self) -> SshdHandle:
        ca_file = DEMO / "sshd" / "even_user_ca.pub"
        ca_file.parent.mkdir()
        ca_file.write_text(httpx.get(f"{self.url}/v1/ca", trust_env=False).raise_for_status().text)
        print(f"GET /v1/ca -> {ca_file.relative_to(ROOT)}")
        step(f"OpenSSH sshd for host {HOSTNAME}, configured by `odd sshd-config`")
        self.sshd = start_sshd(DEMO / "sshd", hostname=HOSTNAME, ca_file=ca_file)
        print(f"sshd on 127.0.0.1:{self.sshd.port} (log: {self.sshd.log_path.relative_to(ROOT)})")
        return self.sshd

    def request_access(self) -> Path:
        step(f'piu request-access {HOSTNAME} "{REASON}"')
        token = self.token()
        env = {
            **os.environ,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_STATE_HOME": str(self.home / ".local/state"),
            "PIU_EVEN_URL": self.url,
            "PIU_TOKEN": token,
        }
        run([sys.executable, "-m", "piu", "request-access", HOSTNAME, REASON], env=env)
        return sorted((self.home / ".ssh" / "piu").glob(f"{HOSTNAME}-*-cert.pub"))[-1]

    def login(self, sshd: SshdHandle, certificate: Path) -> str:
        step(f"ssh {self.user}@{HOSTNAME} id   (with the certificate)")
        known_hosts = DEMO / "known_hosts"
        known_hosts.write_text(known_hosts_line(sshd, HOSTNAME))
        argv = ssh_argv(
            sshd,
            login=self.user,
            hostname=HOSTNAME,
            identity=self.home / ".ssh" / "piu" / "id_ed25519",
            certificate=certificate,
            known_hosts=known_hosts,
            command="id",
        )
        output = run(argv, capture_output=True, env={**os.environ, "HOME": str(self.home)}).stdout
        accepted = sshd.wait_for_log(r"Accepted publickey for .* ID (\S+) \(serial (\d+)\).*")
        print(f"sshd log: {accepted.group(0)}")
        return output.strip()

    def audit(self) -> str:
        step("even-audit export --url (as an auditor; the export is itself audited), show")
        token_file = DEMO / "auditor.token"
        token_file.write_text(self.token(), encoding="utf-8")
        token_file.chmod(0o600)
        export = DEMO / "audit.jsonl"
        audit_cli = [sys.executable, "-m", "audit.cli"]
        run(
            [
                *audit_cli,
                "export",
                "--url",
                self.url,
                "--token-file",
                str(token_file),
                "-o",
                str(export),
            ]
        )
        run([*audit_cli, "show", str(export)])
        step("even-audit verify (offline, with the audit public key)")
        public_key = DEMO / "audit_key.pub"
        answer = httpx.get(f"{self.url}/v1/audit/public-key", trust_env=False)
        public_key.write_bytes(answer.raise_for_status().content)
        verify = [*audit_cli, "verify", str(export), "--public-key", str(public_key)]
        return run(verify, capture_output=True).stdout.strip()

    def token(self) -> str:
        argv = [*even_command(), "dev-token", "--config", str(self.config), "--user", self.user]
        return run(argv, capture_output=True).stdout.strip()

    def stop(self) -> None:
        if self.sshd is not None:
            self.sshd.stop()
        if self.server is not None:
            self.server.stop()

    def run(self) -> int:
        self.start_even()
        sshd = self.start_host()
        certificate = self.request_access()
        remote_id = self.login(sshd, certificate)
        verdict = self.audit()
        step("result")
        print(f"remote `id` on {HOSTNAME}: {remote_id}")
        print(verdict)
        return 0 if verdict.startswith("VALID:") else 1


def main() -> int:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    (DEMO / "home").mkdir(parents=True)
    demo = Demo()
    try:
        return demo.run()
    except SshdUnavailable as exc:
        print(f"demo: cannot start sshd: {exc}", file=sys.stderr)
    except subprocess.CalledProcessError as exc:
        print(
            f"demo: step failed with exit {exc.returncode}: {' '.join(map(str, exc.cmd))[:200]}",
            file=sys.stderr,
        )
        if exc.stderr:
            print(exc.stderr, file=sys.stderr)
    except KeyboardInterrupt:
        print("demo: interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        demo.stop()
    return 1


if __name__ == "__main__":
    sys.exit(main())
