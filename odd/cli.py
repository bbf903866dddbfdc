"""The `odd` command line: argument parsing, printing and exit codes, nothing else.

Exit codes: 0 success, 1 host failure (configuration, files, permissions), 2 usage (bad
arguments). Errors go to stderr as `odd: error: …`, never as a traceback. The work itself is
done by the modules named in each subcommand's handler, each imported only by its handler:
sshd runs `odd grant-ssh-access` at every push and `odd principals` at every login, and
neither should pay for the other subcommands' imports.
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from odd import __version__, paths
from odd.errors import OddError, UsageError
from odd.paths import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH, DEFAULT_PREFIX, DEFAULT_PYTHON

PROG = "odd"


def main(argv: Sequence[str] | None = None) -> int:
    """Run `odd` with `argv` (default: sys.argv[1:]) and return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.handler(args))
    except OddError as exc:
        _error(str(exc))
        return exc.exit_code
    except OSError as exc:
        # Anything the host refused us (permissions, full disk) is a host failure.
        _error(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}")
        return 1


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with its help formatter sized without `shutil`: argparse makes a
    formatter for every add_argument, and its `import shutil` (with bz2, lzma) would be a
    good part of the start-up of each push. The width is found as shutil finds it."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        return argparse.HelpFormatter(prog=self.prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:  # as shutil: 0 or less is no answer, and the terminal is asked
        return columns
    stdout = sys.__stdout__
    try:
        return (stdout is not None and os.get_terminal_size(stdout.fileno()).columns) or 80
    except (ValueError, OSError):
        return 80


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser for every subcommand. For the two that sshd runs (at every push,
    at every login) named by `command`, only that one's: building the others' is ~2 ms of
    start-up; that command's help and errors read the same."""
    parser: argparse.ArgumentParser = _Parser(
        prog=PROG, description="Host-side companion of Even: principals, sshd_config, install."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config = _Parser(add_help=False)
    config.add_argument(
        "--config",
        metavar="FILE",
        help=f"configuration file (default: ${CONFIG_ENV_VAR} or {DEFAULT_CONFIG_PATH})",
    )
    only = {"grant-ssh-access": _add_grant_ssh_access, "principals": _add_principals}.get(
        command or ""
    )
    if only is not None:
        only(commands, config)
        return parser
    _add_principals(commands, config)
    _add_sshd_config(commands, config)
    _add_install(commands)
    _add_grant_ssh_access(commands, config)
    _add_sync(commands)
    return parser


def _add_principals(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]", config: argparse.ArgumentParser
) -> None:
    command = commands.add_parser(
        "principals",
        parents=[config],
        help="print the principal USER@HOSTNAME (sshd's AuthorizedPrincipalsCommand)",
    )
    command.add_argument("--hostname", help="this host's fully qualified name")
    command.add_argument(
        "--bastion-for",
        action="append",
        default=[],
        metavar="GLOB",
        help="this host is a bastion for hosts matching GLOB (repeatable); needs KEY",
    )
    command.add_argument("user", metavar="USER", help="the login sshd is authenticating")
    command.add_argument(
        "key",
        metavar="KEY",
        nargs="?",
        help="on a bastion: the certificate, base64 (sshd's %%k)",
    )
    command.set_defaults(handler=_principals)


def _add_sshd_config(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]", config: argparse.ArgumentParser
) -> None:
    command = commands.add_parser(
        "sshd-config", parents=[config], help="print the sshd_config lines that trust Even"
    )
    command.add_argument("--hostname", help="this host's fully qualified name")
    command.add_argument("--push", action="store_true", help="also set up Even's push user")
    command.add_argument(
        "--push-user",
        default=paths.DEFAULT_PUSH_USER,
        help="the account Even pushes keys as (default: %(default)s)",
    )
    command.add_argument(
        "--bastion-for",
        action="append",
        default=[],
        metavar="GLOB",
        help="this host is a bastion for hosts matching GLOB (repeatable; with --push, "
        "exact hostnames, which Even's push key may reach)",
    )
    for option, default in [
        ("--ca-file", paths.CA_FILE),
        ("--krl-file", paths.KRL_FILE),
        ("--principals-command", paths.PRINCIPALS_COMMAND),
        ("--authorized-keys-file", paths.AUTHORIZED_KEYS_FILE),
        ("--push-keys-file", paths.PUSH_KEYS_FILE),
        ("--odd-command", paths.ODD_COMMAND),
    ]:
        command.add_argument(
            option, type=Path, default=default, metavar="PATH", help="(default: %(default)s)"
        )
    command.set_defaults(handler=_sshd_config)


def _add_install(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    command = commands.add_parser(
        "install", help="install the root-owned sbin/odd and libexec/odd-principals"
    )
    command.add_argument(
        "--prefix",
        type=Path,
        default=DEFAULT_PREFIX,
        help="installs PREFIX/sbin/odd and PREFIX/libexec/odd-principals (default: %(default)s)",
    )
    command.add_argument(
        "--python",
        type=Path,
        default=DEFAULT_PYTHON,
        help="interpreter readable by nobody (default: %(default)s)",
    )
    command.add_argument(
        "--force", action="store_true", help="replace files that differ from this odd's"
    )
    command.set_defaults(handler=_install)
    build = commands.add_parser(
        "build-zipapp", help="write odd as one executable file (for hosts without pip)"
    )
    build.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    build.add_argument(
        "--python",
        type=Path,
        default=DEFAULT_PYTHON,
        help="the interpreter its '#!' line names (default: %(default)s)",
    )
    build.set_defaults(handler=_build_zipapp)


def _add_grant_ssh_access(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]", config: argparse.ArgumentParser
) -> None:
    command = commands.add_parser(
        "grant-ssh-access",
        parents=[config],
        help="push mode's forced command: grant, revoke or list keys ($SSH_ORIGINAL_COMMAND)",
    )
    command.set_defaults(handler=_grant_ssh_access)


def _grant_ssh_access(args: argparse.Namespace) -> int:
    from odd.config import load_config
    from odd.grant import COMMAND_ENV_VAR, run

    config = load_config(args.config, os.environ)
    for line in run(os.environ.get(COMMAND_ENV_VAR), config, environ=os.environ):
        print(line)
    return 0


def _principals(args: argparse.Namespace) -> int:
    if args.bastion_for:
        from odd.bastion import bastion_lines

        # A bastion is no login host: only the hop each certificate names, nothing else.
        if args.key is None:
            raise UsageError("--bastion-for needs the certificate (sshd's %k) after USER")
        for line in bastion_lines(args.user, _hostname(args), args.bastion_for, args.key):
            print(line)
        return 0
    if args.key is not None:
        raise UsageError("KEY is only read on a bastion (--bastion-for)")
    from odd.principals import principal_for

    print(principal_for(args.user, _hostname(args)))
    return 0


def _sshd_config(args: argparse.Namespace) -> int:
    from odd.sshd_config import SshdPaths, render_sshd_config

    where = SshdPaths(
        ca_file=args.ca_file,
        krl_file=args.krl_file,
        principals_command=args.principals_command,
        authorized_keys_file=args.authorized_keys_file,
        push_keys_file=args.push_keys_file,
        odd_command=args.odd_command,
    )
    push_user = args.push_user if args.push else None
    text = render_sshd_config(
        _hostname(args), where, push_user=push_user, bastion_for=args.bastion_for
    )
    sys.stdout.write(text)
    return 0


def _install(args: argparse.Namespace) -> int:
    from odd.install import install

    for item in install(args.prefix, python=args.python, force=args.force):
        print(f"{'installed' if item.changed else 'unchanged'} {item.path}")
    return 0


def _build_zipapp(args: argparse.Namespace) -> int:
    from odd.zipapp import ODD_MAIN, build

    data = build(ODD_MAIN, args.python)
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755)
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)
    os.chmod(args.output, 0o755)  # noqa: S103 - a program for every user, like /usr/bin's
    print(f"wrote {args.output} (run by {args.python}; copy it to PREFIX/sbin/odd as root)")
    return 0


def _add_sync(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    command = commands.add_parser(
        "sync", help="install Even's CA keys and KRL for sshd (once, or every S seconds)"
    )
    command.add_argument("--even-url", metavar="URL", help="Even's base URL (https)")
    for option, default in [("--ca-file", paths.CA_FILE), ("--krl-file", paths.KRL_FILE)]:
        command.add_argument(
            option, type=Path, default=default, metavar="PATH", help="(default: %(default)s)"
        )
    when = command.add_mutually_exclusive_group()
    when.add_argument("--once", action="store_true", help="sync once and exit (the default)")
    when.add_argument("--interval", type=float, metavar="S", help="sync every S seconds")
    command.add_argument(
        "--cacert", type=Path, metavar="FILE", help="trust only these TLS CAs (PEM)"
    )
    command.add_argument(
        "--systemd-example", action="store_true", help="print a systemd service + timer"
    )
    command.set_defaults(handler=_sync)


def _sync(args: argparse.Namespace) -> int:
    # Imported here: urllib/ssl would slow `odd principals`, which sshd runs at every login.
    import threading

    from odd import sync

    if args.systemd_example:
        sys.stdout.write(sync.SYSTEMD_EXAMPLE)
        return 0
    if not args.even_url:
        raise UsageError("sync needs --even-url URL")
    settings = sync.SyncSettings(args.even_url, args.ca_file, args.krl_file, args.cacert)
    syncer = sync.Syncer(settings, log=lambda line: print(f"{PROG}: sync: {line}", file=sys.stderr))
    if args.interval is None:
        syncer.sync_once()
        return 0
    interval = sync.check_interval(args.interval)
    stop = threading.Event()
    with sync.stop_on_signals(stop):
        sync.run_loop(syncer, interval, stop)
    return 0


def _hostname(args: argparse.Namespace) -> str:
    """`--hostname`, else the configuration file's; the file is read only when needed."""
    if args.hostname is not None:
        return str(args.hostname)
    from odd.config import load_config

    hostname = load_config(args.config, os.environ).hostname
    if hostname is None:
        raise UsageError(
            "no hostname: pass --hostname NAME or set `hostname` in the [odd] section of "
            f"{args.config or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH}"
        )
    return hostname


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)
