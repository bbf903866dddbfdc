"""piu's settings: `piu.yaml` under PIU_* environment variables under command-line flags.

Keys (SPEC §9): even_url, bastion, cacert, issuer, client_id. An unknown key in the file is an
error rather than silently ignored, so a typo (`even-url`) is caught at once. A relative
`cacert` in the file is relative to the file. The Even URL must be https unless it points at
loopback: piu sends a bearer token with every request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from piu.errors import ConfigError

KEYS = ("even_url", "bastion", "cacert", "issuer", "client_id")


@dataclass(frozen=True)
class Settings:
    even_url: str | None = None
    bastion: str | None = None
    cacert: str | None = None
    issuer: str | None = None
    client_id: str | None = None

    def require_even_url(self) -> str:
        if not self.even_url:
            raise ConfigError(
                "no Even URL configured",
                hint="set even_url in ~/.config/piu/piu.yaml, PIU_EVEN_URL, or pass --even-url",
            )
        return self.even_url


def env_name(key: str) -> str:
    return "PIU_" + key.upper()


def load_settings(
    config_file: Path, env: Mapping[str, str], flags: Mapping[str, str | None]
) -> Settings:
    """Merge file < env < flags; an empty env value or flag counts as unset."""
    values: dict[str, str | None] = dict.fromkeys(KEYS)
    values.update(_read_file(config_file))
    for key in KEYS:
        values[key] = flags.get(key) or env.get(env_name(key)) or values[key]
    if values["even_url"]:
        values["even_url"] = check_even_url(values["even_url"])
    return Settings(**values)


def _read_file(path: Path) -> dict[str, str | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    import yaml  # only when a file exists: keeps start-up light

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of {', '.join(KEYS)}")
    known = {f.name for f in fields(Settings)}
    result: dict[str, str | None] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown key {key!r}", hint=f"known keys: {', '.join(KEYS)}")
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}: {key} must be a string")
        result[key] = value
    if result.get("cacert"):
        result["cacert"] = str(path.parent / Path(str(result["cacert"])).expanduser())
    return result


def check_even_url(url: str) -> str:
    """Return the URL without a trailing slash, or raise ConfigError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"Even URL {url!r} is not an http(s) URL", hint="e.g. https://even.example.com"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        # The bearer token would cross the network in clear text.
        raise ConfigError(
            f"refusing plain http to {parts.hostname}: piu would send your token unencrypted",
            hint="use an https:// URL (http is only allowed for loopback)",
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
