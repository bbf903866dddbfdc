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

# Not columns of access_requests: the receipt is signed per answer, and the approval and
# break-glass review come from the approval tables (`extras`, even.store.approval_store).
_NOT_STORED = frozenset(
    {
        "principals",
        "receipt",
        "approval",
        "emergency",
        "review_due",
        "reviewed_at",
        "reviewed_by",
        "verdict",
        "review_comment",
    }
)
# Every view field a row holds as is (principals is decoded).
_COPIED = tuple(f.name for f in fields(AccessRequestView) if f.name not in _NOT_STORED)


def view(
    row: Mapping[Any, Any],
    *,
    receipt: dict[str, Any] | None = None,
    extras: Mapping[str, Any] | None = None,
) -> AccessRequestView:
    """`extras`: the approval/review fields (approval_store.view_extras), if any."""
    if extras:
        return AccessRequestView(
            **{name: row[name] for name in _COPIED},
            principals=json.loads(row["principals"]),
            receipt=receipt,
            **extras,
        )
    return AccessRequestView(
        **{name: row[name] for name in _COPIED},
        principals=json.loads(row["principals"]),
        receipt=receipt,
    )
