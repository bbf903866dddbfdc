"""In-process fixtures for the server's tests: components on an injected clock, a client."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from even.api.app import create_app
from even.clock import FixedClock
from even.config import Settings
from even.wiring import Components, build_components


@pytest.fixture
def user_key(tmp_path: Path) -> str:
    """A fresh Ed25519 public key line, as a developer's piu would send it."""
    key = tmp_path / "user_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_name("user_key.pub").read_text().strip()


@pytest.fixture
def components(settings: Settings, clock: FixedClock) -> Components:
    return build_components(settings, clock)


@pytest.fixture
def client(settings: Settings, components: Components) -> Iterator[TestClient]:
    with TestClient(create_app(settings, components=components)) as client:
        yield client


def auth(
    components: Components,
    clock: FixedClock,
    user: str = "alice",
    groups: tuple[str, ...] | list[str] = (),
) -> dict[str, str]:
    """A bearer header with a dev-issuer token minted at the injected clock's time."""
    assert components.dev_issuer is not None
    token = components.dev_issuer.mint(user, list(groups), issued_at=int(clock.now().timestamp()))
    return {"Authorization": f"Bearer {token}"}
