"""Reading odd's host configuration, `/etc/odd.conf` (INI, one `[odd]` section).

    [odd]
    hostname = db-1.prod.example.org
    # Push mode (`odd grant-ssh-access`, SPEC §5); the values shown are the defaults.
    # The account Even pushes as; never granted a key itself. Set it to root in the root set-up.
    push_user = granting-service
    # Whether Even may push keys for root.
    allow_root_login = false
    # The managed authorized-keys files, one per login (sshd: AuthorizedKeysFile <dir>/%u).
    keys_dir = /etc/ssh/even_authorized_keys

Comments must be on lines of their own: a `#` after a value is part of the value.

Which file: `--config PATH`, else the `ODD_CONFIG` environment variable, else
`/etc/odd.conf`. Invariants: only the default file may be absent (an empty configuration);
a file that was named explicitly must exist. Unknown sections and keys are errors, so a typo
cannot silently leave a setting at its default. Values are validated here, once, at the edge.
"""

import configparser
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from odd.errors import ConfigError, InvalidHostname, InvalidLogin, InvalidPath
from odd.names import check_host_identity, check_login
from odd.paths import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH, check_config_path

SECTION = "odd"
KNOWN_KEYS = frozenset({"hostname", "push_user", "allow_root_login", "keys_dir"})
# Where `odd grant-ssh-access` keeps one authorized-keys file per login; sshd's
# `AuthorizedKeysFile` (printed by `odd sshd-config`) must name the same directory + `/%u`.
DEFAULT_KEYS_DIR = Path("/etc/ssh/even_authorized_keys")


class OddConfig(NamedTuple):
    """Settings from the configuration file; `None` where the file says nothing."""

    hostname: str | None = None
    # None: the default push user of `odd sshd-config` (odd.paths.DEFAULT_PUSH_USER).
    push_user: str | None = None
    # Off by default: a pushed root key is a full root login, so the operator must opt in.
    allow_root_login: bool = False
    keys_dir: Path = DEFAULT_KEYS_DIR


def resolve_config_path(
    explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> tuple[Path, bool]:
    """Return the configuration path and whether it must exist (it was named explicitly)."""
    if explicit is not None:
        return Path(explicit), True
    from_env = environ.get(CONFIG_ENV_VAR)
    if from_env:
        return Path(from_env), True
    return DEFAULT_CONFIG_PATH, False


def load_config(
    explicit: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> OddConfig:
    """Read and validate the configuration file chosen by `resolve_config_path`."""
    path, required = resolve_config_path(explicit, os.environ if environ is None else environ)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: no such configuration file") from None
        return OddConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return parse_config(text, source=str(path))


def parse_config(text: str, *, source: str = "<config>") -> OddConfig:
    """Parse the INI text of a configuration file; `source` names it in error messages."""
    # No interpolation: a literal '%' in a value must stay a '%'.
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    unknown_sections = [name for name in parser.sections() if name != SECTION]
    if unknown_sections:
        raise ConfigError(f"{source}: unknown section [{unknown_sections[0]}]")
    if not parser.has_section(SECTION):
        return OddConfig()
    section = parser[SECTION]
    unknown_keys = sorted(set(section) - KNOWN_KEYS)
    if unknown_keys:
        raise ConfigError(f"{source}: unknown key {unknown_keys[0]!r} in [{SECTION}]")
    hostname = section.get("hostname")
    push_user = section.get("push_user")
    keys_dir = section.get("keys_dir")
    try:
        if hostname is not None:
            check_host_identity(hostname)
        if push_user is not None:
            check_login(push_user)
        if keys_dir is not None:
            # The same rules as for paths printed into sshd_config, which names this directory.
            check_config_path(keys_dir)
        allow_root_login = section.getboolean("allow_root_login", fallback=False)
    except (InvalidHostname, InvalidLogin, InvalidPath) as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{source}: allow_root_login: {exc}") from exc
    return OddConfig(
        hostname=hostname,
        push_user=push_user,
        allow_root_login=allow_root_login,
        keys_dir=DEFAULT_KEYS_DIR if keys_dir is None else Path(keys_dir),
    )
