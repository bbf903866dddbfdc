"""The requests piu left waiting for approvers, so `piu wait <TAB>` and `piu cancel <TAB>`
complete their ids without asking Even (completion must never touch the network).

`$XDG_STATE_HOME/piu/pending.json` lists `{id, hostname, login}`. It is a convenience only:
Even decides what is pending; a lost or stale entry costs a completion, never a wrong action.
"""

from __future__ import annotations

import json

from piu.files import ensure_private_dir, write_private
from piu.models import REQUEST_ID_RE, Grant
from piu.paths import Paths

FILE_NAME = "pending.json"
MAX_ENTRIES = 50  # a forgotten pile never grows without bound


def load(paths: Paths) -> list[dict[str, str]]:
    try:
        raw = json.loads((paths.state_dir / FILE_NAME).read_text(encoding="utf-8"))
        entries = raw["pending"]
        return [e for e in entries if REQUEST_ID_RE.fullmatch(str(e.get("id", "")))]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []


def remember(paths: Paths, grant: Grant) -> None:
    entry = {"id": grant.id, "hostname": grant.hostname, "login": grant.login}
    kept = [e for e in load(paths) if e.get("id") != grant.id]
    _save(paths, [*kept, entry][-MAX_ENTRIES:])


def forget(paths: Paths, request_id: str) -> None:
    entries = load(paths)
    kept = [e for e in entries if e.get("id") != request_id]
    if len(kept) != len(entries):
        _save(paths, kept)


def ids(paths: Paths) -> list[str]:
    return [e["id"] for e in load(paths)]


def _save(paths: Paths, entries: list[dict[str, str]]) -> None:
    ensure_private_dir(paths.state_dir)
    data = json.dumps({"pending": entries}, indent=2) + "\n"
    write_private(paths.state_dir / FILE_NAME, data.encode("utf-8"))
