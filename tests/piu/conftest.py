"""Fixtures for piu tests: an isolated HOME/XDG tree, and a logged-in CLI against a fake Even."""

from __future__ import annotations

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
    for name in ("PIU_TOKEN", "PIU_EVEN_URL", "PIU_BASTION", "PIU_CACERT", "PIU_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    yield home


@pytest.fixture
def run(home: Path, monkeypatch: pytest.MonkeyPatch) -> Piu:
    """Logged in (PIU_TOKEN) and configured (PIU_EVEN_URL) against a fresh fake."""
    monkeypatch.setenv("PIU_TOKEN", TOKEN)
    monkeypatch.setenv("PIU_EVEN_URL", "https://even.example.com")
    return Piu(FakeEven(), home)
