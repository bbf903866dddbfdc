"""SQLModel tables for approvals and break-glass reviews (SPEC §11), beside `access_requests`.

- `approvals`: one row per approver of a request. The primary key (request_id, approver) makes
  "each approver counts once" a database fact, so two racing approvals by the same person can
  never both land. Rows are only ever inserted (the app role has no UPDATE or DELETE).
- `approval_states`: one row per request that needed approval or was a break-glass grant,
  keyed by its id; the request's status stays in `access_requests.status`. It holds the count
  asked for, the pending deadline, the approver groups shown to the requester, and the
  break-glass review (due, done, verdict, and whether the overdue record was written).
Times are RFC 3339 UTC strings like every other table here.
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class ApprovalRow(SQLModel, table=True):
    __tablename__ = "approvals"

    request_id: str = Field(primary_key=True, max_length=36)
    approver: str = Field(primary_key=True, max_length=64)
    time: str = Field(max_length=32)
    comment: str | None = None


class ApprovalStateRow(SQLModel, table=True):
    __tablename__ = "approval_states"

    request_id: str = Field(primary_key=True, max_length=36)
    rule: str = Field(max_length=64)
    needed: int = 0  # approvals asked for; 0 for a break-glass grant
    approver_groups: str = "[]"  # JSON array, as shown in the `approval` object
    pending_expires_at: str | None = Field(default=None, index=True, max_length=32)
    emergency: bool = False
    review_due: str | None = Field(default=None, index=True, max_length=32)
    reviewed_at: str | None = Field(default=None, max_length=32)
    reviewed_by: str | None = Field(default=None, max_length=64)
    verdict: str | None = Field(default=None, max_length=16)  # justified | unjustified
    review_comment: str | None = None
    overdue_recorded_at: str | None = Field(default=None, max_length=32)
    decided_by: str | None = Field(default=None, max_length=64)  # who denied or cancelled
    decision_comment: str | None = None
    # JSON: what a pending request asked for (groups, issuer, lifetime, bastion, keys), so
    # the grant at the last approval can re-check and sign it (migration 0007).
    asked: str | None = None
