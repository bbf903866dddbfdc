"""Shared fixtures: a ready Even configuration directory with the dev issuer and a test policy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from even.clock import FixedClock
from even.config import Settings, load_settings
from even.init import init_directory
from even.store.db import make_engine
from even.store.schema import upgrade
from harness.postgres import PostgresCluster, PostgresUnavailable, start_postgres

TEST_POLICY = r"""
defaults:
  max_lifetime_minutes: 60
  reason: {min_length: 10, pattern: '\b[A-Z][A-Z0-9]+-[0-9]+\b'}
roles:
  auditor: {groups: [audit]}
  admin: {groups: [security]}
rules:
  - name: sre-prod
    subjects: {groups: [sre], users: [alice]}
    hosts: ["*.prod.even.test"]
    logins: ["{username}", deploy]
    max_lifetime_minutes: 60
    extensions: [permit-pty]
  - name: lab
    subjects: {users: [piutest, alice]}
    hosts: ["*.lab.even.test"]
    logins: ["{username}"]
    max_lifetime_minutes: 30
    reason: {min_length: 5}
"""


def requires_real_component(reason: str) -> None:
    """Skip locally when a real component is missing; fail in CI (it must not pass by skipping)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"required component unavailable in CI: {reason}")
    pytest.skip(reason)


# TEST_POLICY with rules that need approvers (SPEC §11), ahead of the others.
APPROVAL_RULES = r"""
  - name: prod-db
    subjects: {groups: [sre], users: [alice, piutest]}
    hosts: ["db-*.approve.even.test"]
    logins: ["{username}"]
    modes: [certificate, push]
    max_lifetime_minutes: 60
    reason: {min_length: 5}
    approval:
      approvers: {groups: [sre-leads], users: [carol]}
      count: 1
      pending_minutes: 60
    emergency: {allowed: true, max_lifetime_minutes: 30, review_within_hours: 24}
  - name: vault
    subjects: {users: [alice]}
    hosts: ["vault-*.approve.even.test"]
    logins: ["{username}"]
    reason: {min_length: 5}
    approval:
      approvers: {users: [carol, dave]}
      count: 2
      pending_minutes: 30
"""
APPROVAL_POLICY = TEST_POLICY.replace("rules:\n", "rules:" + APPROVAL_RULES, 1)


def make_even_dir(directory: Path, policy: str = TEST_POLICY) -> Path:
    config = init_directory(directory, dev_issuer=True)
    (directory / "policy.yaml").write_text(policy, encoding="utf-8")
    return config


def make_live_even_dir(directory: Path, port: int, *, generous_limits: bool = False) -> Path:
    """An Even config for a server on 127.0.0.1:`port`, schema created; optionally without
    practical rate limits (for load and fuzzing, where a burst is the point)."""
    config = make_even_dir(directory)
    text = config.read_text().replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")
    if generous_limits:
        for old, new in (
            ("per_user_per_second: 20", "per_user_per_second: 100000"),
            ("burst: 40", "burst: 100000"),
            ("failed_auth_per_ip_per_second: 10", "failed_auth_per_ip_per_second: 100000"),
        ):
            assert old in text, old
            text = text.replace(old, new)
    config.write_text(text)
    upgrade(make_engine(load_settings(config).resolved_database_url))
    return config


@pytest.fixture
def even_config(tmp_path: Path) -> Path:
    config = make_even_dir(tmp_path / "even")
    settings = load_settings(config)
    upgrade(make_engine(settings.resolved_database_url))
    return config


@pytest.fixture
def settings(even_config: Path) -> Settings:
    return load_settings(even_config)


@pytest.fixture
def clock() -> Iterator[FixedClock]:
    yield FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the module's tests (`initdb` on a free port)."""
    try:
        cluster = start_postgres()
    except PostgresUnavailable as exc:
        requires_real_component(str(exc))
    try:
        yield cluster
    finally:
        cluster.close()
