"""odd on a test host exactly as an operator installs it: `odd install --prefix P`.

The push-mode tests run the zipapp `odd install` writes (`P/sbin/odd`, run by
`/usr/bin/python3 -I`: no venv, no PYTHONPATH) as the push key's forced command. Each test
host has its own odd.conf, named on the forced command line with `--config` (a real host uses
/etc/odd.conf and needs no argument).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SYSTEM_PYTHON = Path("/usr/bin/python3")


def install_odd(prefix: Path) -> Path:
    """Run `odd install --prefix PREFIX` (as root, into a root-owned tree); return sbin/odd
    after checking that it answers `--version` with an empty environment."""
    result = subprocess.run(
        [sys.executable, "-m", "odd", "install", "--prefix", str(prefix)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"odd install failed: {result.stderr.strip()}")
    odd = prefix / "sbin" / "odd"
    version = subprocess.run(
        [str(odd), "--version"], capture_output=True, text=True, env={}, timeout=30, check=True
    )
    assert version.stdout.startswith("odd "), version
    return odd


def with_config(key_options: str, config: Path) -> str:
    """The push key's options with `--config FILE` added to odd's forced command."""
    forced = 'grant-ssh-access"'
    if forced not in key_options:
        raise ValueError(f"no odd forced command in {key_options!r}")
    return key_options.replace(forced, f'grant-ssh-access --config {config}"')


def write_odd_conf(directory: Path, *, push_user: str, keys_dir: Path) -> Path:
    config = directory / "odd.conf"
    config.write_text(f"[odd]\npush_user = {push_user}\nkeys_dir = {keys_dir}\n")
    return config
