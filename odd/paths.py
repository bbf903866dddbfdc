"""Where odd's files are by default, and which paths may be written into sshd_config.

A leaf module (os, re and pathlib only): `odd`'s argument parser shows these defaults for
every subcommand, and `odd grant-ssh-access` and `odd principals`, which sshd runs at every
push and login, must not pay for importing the modules that use the rest of them.
Invariant: `check_config_path` accepts only absolute paths of a plain character set, so a
path written into sshd_config can neither add nor change a directive.
"""

import os
import re
from pathlib import Path

from odd.errors import InvalidPath

CONFIG_ENV_VAR = "ODD_CONFIG"
DEFAULT_CONFIG_PATH = Path("/etc/odd.conf")
DEFAULT_PREFIX = Path("/usr/local")  # odd install: PREFIX/sbin/odd, PREFIX/libexec/…
DEFAULT_PYTHON = Path("/usr/bin/python3")  # the interpreter odd's zipapps name after '#!'
DEFAULT_PUSH_USER = "granting-service"
# The sshd side (SPEC §5/§6 fix these).
CA_FILE = Path("/etc/ssh/even_user_ca.pub")
KRL_FILE = Path("/etc/ssh/even_revoked.krl")
PRINCIPALS_COMMAND = Path("/usr/local/libexec/odd-principals")
AUTHORIZED_KEYS_FILE = Path("/etc/ssh/even_authorized_keys/%u")
PUSH_KEYS_FILE = Path("/etc/ssh/even_push_keys")
# The forced command of Even's push key (SPEC §5: odd is called by this absolute path).
ODD_COMMAND = Path("/usr/local/sbin/odd")

# sshd_config splits on whitespace, treats quotes and '#' specially and expands %-tokens in
# several directives, so paths are limited to a plain character set.
_PATH_RE = re.compile(r"/[A-Za-z0-9._/+@-]*")
# AuthorizedKeysFile is a pattern: %u (login), %U (uid), %h (home) and %% are meant.
_KEYS_PATTERN_RE = re.compile(r"/(?:[A-Za-z0-9._/+@-]|%[%uUh])*")


def check_config_path(path: str | os.PathLike[str], *, keys_pattern: bool = False) -> str:
    """Return `path` as a string if it is safe to write into sshd_config, else raise."""
    text = os.fspath(path)
    pattern = _KEYS_PATTERN_RE if keys_pattern else _PATH_RE
    if pattern.fullmatch(text) is None:
        raise InvalidPath(
            f"path {text!r} must be absolute and use only letters, digits and ._/+@-"
            + (" (and %u, %U, %h, %%)" if keys_pattern else "")
        )
    return text
