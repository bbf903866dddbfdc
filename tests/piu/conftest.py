"""Fixtures for piu tests: an isolated HOME/XDG tree, and a logged-in CLI against a fake Even."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from piu_fakes import TOKEN, FakeEven, Piu


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    # Nothing of the developer's own setup may leak in: their config, token, agent, display.
    for name in list(os.environ):
        if name.startswith("PIU_"):
            monkeypatch.delenv(name)
    for name in ("SSH_AUTH_SOCK", "DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "NO_COLOR", "CI"):
        monkeypatch.delenv(name, raising=False)
    yield home


@pytest.fixture
def run(home: Path, monkeypatch: pytest.MonkeyPatch) -> Piu:
    """Logged in (PIU_TOKEN) and configured (PIU_EVEN_URL) against a fresh fake."""
    monkeypatch.setenv("PIU_TOKEN", TOKEN)
    monkeypatch.setenv("PIU_EVEN_URL", "https://even.example.com")
    return Piu(FakeEven(), home)
