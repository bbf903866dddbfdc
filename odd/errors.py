"""Errors raised by odd; the only place that knows which exit code each kind of failure gets.

One base, `OddError`, whose `exit_code` the CLI returns: 2 when the caller passed bad arguments
(a usage error), 1 when the host itself is at fault (configuration, files, permissions). Only
`odd.cli` prints these or exits.
"""

EXIT_HOST_FAILURE = 1
EXIT_USAGE = 2


class OddError(Exception):
    """A failure with a message meant for the operator."""

    exit_code = EXIT_HOST_FAILURE


class UsageError(OddError):
    """The command line asked for something invalid."""

    exit_code = EXIT_USAGE


class InvalidHostname(UsageError):
    """A hostname breaks SPEC §1 or cannot identify one host."""


class InvalidLogin(UsageError):
    """A login name does not match `^[a-z_][a-z0-9_.-]{0,31}$`."""


class InvalidPath(UsageError):
    """A path cannot be written into sshd_config safely."""


class ConfigError(OddError):
    """`/etc/odd.conf` (or the file named instead) is unreadable or invalid."""


class UnsafePath(OddError):
    """A file or directory fails the ownership/permission rules sshd applies."""


class InstallError(OddError):
    """`odd install` could not put a working wrapper in place."""


class SyncError(OddError):
    """`odd sync` left at least one file as it was; the message says which and why."""


class EvenUnavailable(SyncError):
    """Even could not be reached or answered 5xx: a transport failure, retry later."""


class BadResponse(SyncError):
    """Even answered something that must not be installed (garbage, empty, older, wrong type)."""
