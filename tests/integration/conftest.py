"""Fixtures for tests against real components: the OIDC provider, sshd and an Even process.

A missing component skips locally and fails in CI (see `requires_real_component`).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oidc_provider import IdpUnavailable, OidcProvider, start_oidc_provider

from tests.conftest import requires_real_component


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    try:
        provider = start_oidc_provider(users={"alice": ["sre"], "piutest": [], "bob": []})
    except IdpUnavailable as exc:
        requires_real_component(str(exc))
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="session")
def other_oidc_provider() -> Iterator[OidcProvider]:
    """A second, untrusted issuer whose tokens look just as real."""
    try:
        provider = start_oidc_provider(users={"alice": ["sre"]})
    except IdpUnavailable as exc:
        requires_real_component(str(exc))
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="session")
def real_sshd_available() -> None:
    if os.geteuid() != 0:
        requires_real_component("a real sshd test needs root (it starts sshd and adds a user)")
    if not Path("/usr/sbin/sshd").exists() or shutil.which("ssh") is None:
        requires_real_component("OpenSSH server/client not installed (run `make system-deps`)")
