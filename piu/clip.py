"""`--clip`: put the ssh command on the clipboard with whatever tool the desktop has.

Tried in order: wl-copy (Wayland), xclip, xsel (X11), pbcopy (macOS); each only when it is on
PATH. The text goes to the tool's stdin (argv only, no shell). Failing to copy is reported as a
ClipboardUnavailable, which the CLI shows as a warning: the command is printed anyway.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping

from piu.errors import PiuError

TOOLS: tuple[tuple[str, ...], ...] = (
    ("wl-copy",),
    ("xclip", "-selection", "clipboard"),
    ("xsel", "--clipboard", "--input"),
    ("pbcopy",),
)
TIMEOUT = 5.0


class ClipboardUnavailable(PiuError):
    """No clipboard tool was found, or the one found failed."""


def copy(text: str, env: Mapping[str, str]) -> str:
    """Copy `text`; return the name of the tool used."""
    path = env.get("PATH")
    for argv in TOOLS:
        found = shutil.which(argv[0], path=path)
        if found is None:
            continue
        try:
            # The tools fork a background owner of the selection; stdout/stderr are not ours
            # to capture, or we would wait for that child too.
            subprocess.run(
                [found, *argv[1:]],
                input=text.encode("utf-8"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
                timeout=TIMEOUT,
                env=dict(env),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ClipboardUnavailable(f"{argv[0]} could not copy: {exc}") from exc
        return argv[0]
    raise ClipboardUnavailable(
        "no clipboard tool found (wl-copy, xclip, xsel or pbcopy)",
        hint="copy the command from the output above",
    )
