"""`piu config show|set|unset` and `piu completion bash|zsh|fish`.

`config show` prints every setting with where it came from (flag, env, file, default) and the
login state, never a token: a token source is named, its value is not. Completion scripts are
click's own; they call piu back with `_PIU_COMPLETE` set.
"""

from __future__ import annotations

import click

from piu.fastconfig import KEYS
from piu.render import escape, to_json
from piu.runtime import Runtime

SHELLS = ("bash", "zsh", "fish")


@click.group()
def config() -> None:
    """Show or change settings (~/.config/piu/piu.yaml)."""


@config.command("show")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def config_show(runtime: Runtime, output: str) -> None:
    """Show the settings in effect and where each comes from."""
    from piu.login import status

    settings = runtime.settings()
    entries = [
        {"key": key, "value": getattr(settings, key), "source": settings.sources.get(key)}
        for key in KEYS
    ]
    token = _token_source(runtime) or status(settings, runtime.paths(), runtime.clock())
    if output == "json":
        report = {"config_file": str(runtime.config_file()), "settings": entries, "token": token}
        click.echo(to_json(report))
        return
    click.echo(f"config file: {escape(str(runtime.config_file()))}")
    width = max(len(key) for key in KEYS)
    for entry in entries:
        value = "-" if entry["value"] is None else escape(str(entry["value"]))
        source = f"  ({escape(entry['source'])})" if entry["source"] else ""
        click.echo(f"{entry['key']:<{width}}  {value}{source}")
    click.echo(f"{'token':<{width}}  {escape(token)}")


@config.command("set")
@click.argument("key", type=click.Choice(KEYS))
@click.argument("value")
@click.pass_obj
def config_set(runtime: Runtime, key: str, value: str) -> None:
    """Set KEY to VALUE in piu.yaml (checked first; the file stays owner-only)."""
    from piu.config import save_value

    stored = save_value(runtime.config_file(), key, value)
    click.echo(f"{key} = {escape(str(stored))}")


@config.command("unset")
@click.argument("key", type=click.Choice(KEYS))
@click.pass_obj
def config_unset(runtime: Runtime, key: str) -> None:
    """Remove KEY from piu.yaml (its default, if any, applies again)."""
    from piu.config import save_value

    save_value(runtime.config_file(), key, None)
    click.echo(f"{key} unset")


def _token_source(runtime: Runtime) -> str | None:
    if runtime.token_command:
        return "from --token-command (not run by `config show`)"
    if runtime.env.get("PIU_TOKEN", "").strip():
        return "from PIU_TOKEN (value hidden)"
    return None


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash: eval "$(piu completion bash)"        (e.g. in ~/.bashrc)
    zsh:  eval "$(piu completion zsh)"         (e.g. in ~/.zshrc)
    fish: piu completion fish > ~/.config/fish/completions/piu.fish
    """
    from click.shell_completion import get_completion_class

    root = ctx.find_root().command
    cls = get_completion_class(shell)
    if cls is None:  # click knows all of SHELLS; kept for type narrowing
        raise click.UsageError(f"no completion for {shell}")
    click.echo(cls(root, {}, "piu", "_PIU_COMPLETE").source())


COMMANDS = (config, completion)
