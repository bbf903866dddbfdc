"""Subscriptions for end-to-end notification tests: written into a real even.yaml."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

SECRET_NAME = "webhook_secret"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def subscribe(config: Path, subscriptions: list[dict[str, Any]], secret: str) -> None:
    """Add `notifications:` (and the signing secret file) to the config at `config`."""
    (config.parent / SECRET_NAME).write_text(secret + "\n", encoding="ascii")
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    document["notifications"] = [
        {"secret_file": SECRET_NAME, **s} if s.get("format") != "slack" else s
        for s in subscriptions
    ]
    config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
