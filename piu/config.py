"""piu's settings: `piu.yaml` under PIU_* environment variables under command-line flags.

Keys: even_url, bastion, cacert, issuer, client_id (SPEC §9), and for `piu login` resource
(an RFC 8707 resource indicator sent to the issuer), audience (the `aud` Even expects; sent
as the `audience` parameter only when set explicitly, since some IdPs refuse names they do not
know) and scope. An unknown key in the file is an error rather than silently ignored, so a
typo (`even-url`) is caught at once. Every value is checked the same way wherever it comes
from. A relative `cacert` in the file is relative to the file. URLs that receive a token (Even,
the issuer) must be https unless they point at loopback.

`save_value` rewrites the file atomically, owner-only: it may name the IdP and Even, and it is
the user's, so nobody else needs to read it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from piu.errors import ConfigError
from piu.fastconfig import DEFAULTS, KEYS  # kept with `piu ssh`'s reader, which must agree

_VISIBLE = re.compile(r"[\x21-\x7e]{1,512}")
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")  # RFC 6749 §3.3


@dataclass(frozen=True)
class Settings:
    even_url: str | None = None
    bastion: str | None = None
    cacert: str | None = None
    issuer: str | None = None
    client_id: str | None = DEFAULTS["client_id"]
    resource: str | None = None
    audience: str | None = DEFAULTS["audience"]
    scope: str | None = DEFAULTS["scope"]
    # An ssh_config file piu passes (-F) to ssh and to its bastion hop, e.g. for host aliases.
    ssh_config: str | None = None
    # key → "flag", "env PIU_X", "file PATH" or "default"; only set keys appear.
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def require_even_url(self) -> str:
        if not self.even_url:
            raise ConfigError(
                "no Even URL configured",
                hint="run `piu config set even_url https://even.example.com`,"
                " or set PIU_EVEN_URL, or pass --even-url",
            )
        return self.even_url

    def require_issuer(self) -> str:
        if not self.issuer:
            raise ConfigError(
                "no OIDC issuer configured",
                hint="run `piu config set issuer https://idp.example.com` (or set PIU_ISSUER)",
            )
        return self.issuer

    def explicit(self, key: str) -> str | None:
        """The value only if the user set it (not a default)."""
        value: str | None = getattr(self, key)
        return value if self.sources.get(key, "default") != "default" else None


def env_name(key: str) -> str:
    return "PIU_" + key.upper()


def load_settings(
    config_file: Path, env: Mapping[str, str], flags: Mapping[str, str | None]
) -> Settings:
    """Merge defaults < file < env < flags; an empty env value or flag counts as unset."""
    values: dict[str, str | None] = {key: DEFAULTS.get(key) for key in KEYS}
    sources = {key: "default" for key in DEFAULTS}
    for key, value in read_file(config_file).items():
        if value is not None:
            values[key], sources[key] = value, f"file {config_file}"
    if values.get("cacert") and sources.get("cacert", "").startswith("file"):
        values["cacert"] = str(config_file.parent / Path(str(values["cacert"])).expanduser())
    for key in KEYS:
        if env.get(env_name(key)):
            values[key], sources[key] = env[env_name(key)], f"env {env_name(key)}"
        if flags.get(key):
            values[key], sources[key] = flags[key], "flag"
    for key, value in values.items():
        if value is not None and sources.get(key) != "default":
            values[key] = check_value(key, value, where=sources[key])
    return Settings(**values, sources=sources)


def read_file(path: Path) -> dict[str, str | None]:
    """The file's keys as written (cacert not yet resolved); {} if there is no file."""
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
    result: dict[str, str | None] = {}
    for key, value in data.items():
        if key not in KEYS:
            raise ConfigError(f"{path}: unknown key {key!r}", hint=f"known keys: {', '.join(KEYS)}")
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}: {key} must be a string")
        result[key] = value
    return result


def save_value(path: Path, key: str, value: str | None) -> str | None:
    """Set (or with None remove) `key` in the file; return the value as stored."""
    from piu.files import ensure_private_dir, write_private

    if key not in KEYS:
        raise ConfigError(f"unknown key {key!r}", hint=f"known keys: {', '.join(KEYS)}")
    if value is not None:
        value = check_value(key, value, where="the command line")
        if key == "cacert":
            value = _existing_file(value)
    current = read_file(path)
    if value is None:
        current.pop(key, None)
    else:
        current[key] = value
    import yaml

    ordered = {k: current[k] for k in KEYS if current.get(k) is not None}
    text = yaml.safe_dump(ordered, default_flow_style=False, sort_keys=False) if ordered else ""
    ensure_private_dir(path.parent)
    write_private(path, text.encode("utf-8"))
    return value


def check_value(key: str, value: str, *, where: str) -> str:
    """Return the value normalised, or raise ConfigError naming where it came from."""
    check = _CHECKS.get(key, _visible)
    try:
        return check(value)
    except ConfigError as exc:
        raise ConfigError(f"{key} from {where}: {exc}", hint=exc.hint) from exc
    except ValueError as exc:
        raise ConfigError(f"{key} from {where}: {exc}") from exc


def check_url(url: str, *, what: str = "URL") -> str:
    """Return the URL without a trailing slash; https, or http to loopback only."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} {url!r} is not an http(s) URL", hint="e.g. https://example.com")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        # A bearer token (or a device code) would cross the network in clear text.
        raise ConfigError(
            f"refusing plain http to {parts.hostname}: piu would send your token unencrypted",
            hint="use an https:// URL (http is only allowed for loopback)",
        )
    return url.rstrip("/")


def check_even_url(url: str) -> str:
    return check_url(url, what="Even URL")


def is_loopback(host: str) -> bool:
    import ipaddress  # here, not at the top: `piu --help` imports this module

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bastion(value: str) -> str:
    from piu.models import BASTION_RE

    if not BASTION_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a bastion name")
    return value


def _visible(value: str) -> str:
    if not _VISIBLE.fullmatch(value):
        raise ValueError("expected one word of printable ASCII")
    return value


def _resource(value: str) -> str:
    parts = urlsplit(value)
    if not _VISIBLE.fullmatch(value) or not parts.scheme or parts.fragment:
        raise ValueError(f"{value!r} is not an absolute URI without a fragment (RFC 8707)")
    return value


def _scope(value: str) -> str:
    if not _SCOPE.fullmatch(value):
        raise ValueError("expected scope names separated by single spaces")
    return value


def _cacert(value: str) -> str:
    if not value.strip() or not value.isprintable():
        raise ValueError("expected a file name")
    return value


def _existing_file(value: str) -> str:
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"cacert: no such file {path}")
    return str(path)


_CHECKS: dict[str, Callable[[str], str]] = {
    "even_url": check_url,
    "issuer": check_url,
    "bastion": _bastion,
    "cacert": _cacert,
    "resource": _resource,
    "scope": _scope,
    "ssh_config": _existing_file,
}
