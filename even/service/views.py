"""Access requests as the use cases answer them: a stored row → `AccessRequestView`.

The view's fields are the dataclass's (even.service.models); a row carries them under the same
names, `principals` as a JSON array. No SQL here: rows come from even.store.access_requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from even.service.models import AccessRequestView

# Every view field a row holds as is (principals is decoded, the receipt is not stored).
_COPIED = tuple(
    f.name for f in fields(AccessRequestView) if f.name not in ("principals", "receipt")
)


def view(row: Mapping[Any, Any], *, receipt: dict[str, Any] | None = None) -> AccessRequestView:
    return AccessRequestView(
        **{name: row[name] for name in _COPIED},
        principals=json.loads(row["principals"]),
        receipt=receipt,
    )
