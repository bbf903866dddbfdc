"""Where piu keeps its files: configuration, login token, state (receipts, grants) and SSH keys.

Everything derives from HOME and the XDG base-directory variables of the environment passed
in, so users and tests move it all by setting them. Relative XDG values are ignored, as the
XDG Base Directory specification requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    config_dir: Path  # $XDG_CONFIG_HOME/piu
    state_dir: Path  # $XDG_STATE_HOME/piu
    ssh_dir: Path  # ~/.ssh/piu: the key pair and the certificates

    @property
    def config_file(self) -> Path:
        return self.config_dir / "piu.yaml"

    @property
    def token_file(self) -> Path:
        """The `piu login` cache (SPEC §9: 0600, in the XDG config dir)."""
        return self.config_dir / "token.json"

    @property
    def receipts_file(self) -> Path:
        return self.state_dir / "receipts.jsonl"

    @property
    def grants_file(self) -> Path:
        """Index of certificate grants, so `piu ssh` can reuse one that is still valid."""
        return self.state_dir / "grants.json"

    @property
    def identity_file(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def public_key_file(self) -> Path:
        return self.ssh_dir / "id_ed25519.pub"


def resolve_paths(env: Mapping[str, str]) -> Paths:
    home = Path(env.get("HOME") or Path.home())
    config_home = _xdg(env, "XDG_CONFIG_HOME", home / ".config")
    state_home = _xdg(env, "XDG_STATE_HOME", home / ".local" / "state")
    return Paths(
        config_dir=config_home / "piu",
        state_dir=state_home / "piu",
        ssh_dir=home / ".ssh" / "piu",
    )


def _xdg(env: Mapping[str, str], name: str, default: Path) -> Path:
    value = env.get(name, "")
    return Path(value) if value and Path(value).is_absolute() else default
