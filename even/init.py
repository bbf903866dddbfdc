"""`even init DIR`: keys and a sample configuration, written once with safe permissions.

Private keys are created 0600 with O_EXCL, so an existing key is never overwritten. The push
key (push mode, SPEC §5) is Ed25519 in OpenSSH format with its `.pub` beside it, for the
bastions' and hosts' `/etc/ssh/even_push_keys`; `known_hosts` starts empty, so Even trusts no
host until the operator pins it (`ssh-keyscan -t ed25519 HOST >> known_hosts`, checked).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from audit.signing import generate_key_pem
from even.ca import generate_ca_key_bytes
from even.errors import ConfigError
from even.identity.dev_issuer import generate_dev_key_pem

SAMPLE_POLICY = """\
# Even access policy (SPEC §3). Default deny: only what a rule allows is granted.
defaults:
  max_lifetime_minutes: 60
  reason: {min_length: 10, pattern: '\\b[A-Z][A-Z0-9]+-[0-9]+\\b'}   # e.g. a ticket id
roles:
  auditor: {groups: [audit]}
  admin: {groups: [security]}
rules:
  - name: sre-prod
    subjects: {groups: [sre]}
    hosts: ["*.prod.example.org"]
    logins: ["{username}"]
    modes: [certificate]
    max_lifetime_minutes: 60
    extensions: [permit-pty]
"""


def _write_secret(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(f"{path} exists; refusing to overwrite a key") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_push_key(path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    _write_secret(path, private)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    path.with_name(path.name + ".pub").write_bytes(public + b" even-push\n")


def init_directory(
    directory: Path,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    dev_issuer: bool = False,
    base_url: str = "http://127.0.0.1:8080",
) -> Path:
    if (issuer is None) != (audience is None):
        raise ConfigError("--issuer and --audience go together")
    if issuer is None and not dev_issuer:
        raise ConfigError("name an identity provider (--issuer URL --audience AUD) or --dev-issuer")
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "even.yaml"
    if config_path.exists():
        raise ConfigError(f"{config_path} exists; refusing to overwrite it")
    _write_secret(directory / "user_ca", generate_ca_key_bytes())
    _write_secret(directory / "audit_key", generate_key_pem())
    _write_push_key(directory / "push_key")
    known_hosts = directory / "known_hosts"
    if not known_hosts.exists():
        known_hosts.write_text(
            "# Host keys Even pins for push mode, OpenSSH known_hosts format, keyed by the\n"
            "# exact name Even uses: each bastion's address host and each target hostname.\n",
            encoding="utf-8",
        )
    if dev_issuer:
        _write_secret(directory / "dev_issuer_key", generate_dev_key_pem())
    issuers = []
    if issuer is not None:
        issuers.append(
            {
                "issuer": issuer,
                "audience": audience,
                "username_claim": "preferred_username",
                "groups_claim": "groups",
                "token_typ": "at+jwt",
            }
        )
    config = {
        "base_url": base_url,
        "database_url": "sqlite:///even.db",
        "policy_file": "policy.yaml",
        "identity": {"issuers": issuers, "dev_issuer": dev_issuer},
        "ca": {"keys": ["user_ca"]},
        "audit": {
            "signing_key": "audit_key",
            "origin": None,
            "checkpoint_every_records": 1000,
            "checkpoint_every_seconds": 60,
        },
        "bastions": [],
        "push": {
            "user": "granting-service",
            "private_key": "push_key",
            "known_hosts": "known_hosts",
            "timeout_seconds": 30,
        },
        "rate_limits": {
            "per_user_per_second": 20,
            "burst": 40,
            "failed_auth_per_ip_per_second": 10,
        },
        "trusted_proxies": [],
    }
    config_path.write_text(
        "# Even configuration (SPEC §10). Relative paths resolve against this directory.\n"
        + yaml.safe_dump(config, sort_keys=False),
        encoding="utf-8",
    )
    policy_path = directory / "policy.yaml"
    if not policy_path.exists():
        policy_path.write_text(SAMPLE_POLICY, encoding="utf-8")
    return config_path
