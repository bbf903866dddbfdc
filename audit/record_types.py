"""The audit record types Even writes, in the order the audit format lists them.

One list for everything that names them: notification subscriptions, the console's filter,
documentation checks. A record of another type is not an error for a verifier (the chain is
what is verified), but Even itself writes only these.
"""

from __future__ import annotations

RECORD_TYPES: tuple[str, ...] = (
    "access.requested",
    "access.denied",
    "access.pending",
    "access.approved",
    "access.cancelled",
    "access.push_started",
    "access.granted",
    "access.failed",
    "access.revoked",
    "access.expired",
    "access.reviewed",
    "access.review_overdue",
    "keys.updated",
    "policy.loaded",
    "ca.rotated",
    "audit.exported",
)
