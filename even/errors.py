"""One error base for the server's domain; the API layer maps each leaf to an HTTP status.

Each leaf carries a stable `code` (SPEC §7) and a message safe to show the client.
"""

from __future__ import annotations


class EvenError(Exception):
    code = "error"

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class InvalidToken(EvenError):
    """401: the bearer token is missing, malformed or fails validation."""

    code = "invalid_token"


class InvalidUsername(InvalidToken):
    code = "invalid_username"


class IdentityUnavailable(EvenError):
    """503: the issuer's keys are too stale to trust and cannot be refreshed."""

    code = "identity_unavailable"


class InvalidRequest(EvenError):
    """422: a field is well-formed JSON but not acceptable."""

    code = "invalid_request"


class Denied(EvenError):
    """403: policy says no."""

    code = "denied"


class NoMatchingRule(Denied):
    code = "no_matching_rule"


class LoginNotAllowed(Denied):
    code = "login_not_allowed"


class PolicyRejected(EvenError):
    """422: a rule matched but the request breaks one of its conditions."""

    code = "policy_rejected"


class ReasonRejected(PolicyRejected):
    code = "reason_rejected"


class LifetimeTooLong(PolicyRejected):
    code = "lifetime_too_long"


class NotFound(EvenError):
    code = "not_found"


class StoreUnavailable(EvenError):
    """503: the audit store cannot commit, so nothing may be issued."""

    code = "store_unavailable"


class Conflict(EvenError):
    """409: the resource's state does not allow this."""

    code = "conflict"


class IdempotencyKeyReused(InvalidRequest):
    """422: the same Idempotency-Key with another body."""

    code = "idempotency_key_reused"


class IdempotencyInFlight(EvenError):
    """409: the first request with this key has not finished yet."""

    code = "idempotency_in_flight"


class PushFailed(EvenError):
    """502: a host could not be reached, trusted or changed; nothing was granted."""

    code = "push_failed"


class RevokeIncomplete(PushFailed):
    """502: a pushed key could not be removed from every host; the grant stays, retry."""

    code = "revoke_incomplete"


class RateLimited(EvenError):
    """429: too many requests from this user, or failed authentications from this address."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(EvenError):
    code = "config_error"


# Approvals and break-glass (SPEC §11). The service checks them in this order: the requester
# (self_approval), not an approver (not_an_approver), not pending (not_pending), the same
# approver twice (already_approved); see even.approvals.


class SelfApproval(Denied):
    """403: the requester tried to approve, deny or review their own request."""

    code = "self_approval"


class NotAnApprover(Denied):
    """403: the caller is not among the deciding rule's approvers (nor an admin, for reviews)."""

    code = "not_an_approver"


class NotRequester(Denied):
    """403: only the requester may cancel a pending request."""

    code = "not_requester"


class EmergencyNotAllowed(Denied):
    """403: break-glass was asked for on a rule without `emergency.allowed`."""

    code = "emergency_not_allowed"


class ApprovalRequired(Denied):
    """403: the classic API cannot wait for approvers, so a rule that needs them refuses."""

    code = "approval_required"


class NotPending(Conflict):
    """409: the request is no longer waiting for approval (granted, denied, cancelled, expired)."""

    code = "not_pending"


class AlreadyApproved(Conflict):
    """409: this approver has already approved this request; each counts once."""

    code = "already_approved"


class NotReviewable(Conflict):
    """409: only a break-glass grant is reviewed."""

    code = "not_reviewable"


class AlreadyReviewed(Conflict):
    """409: the break-glass grant already has its review."""

    code = "already_reviewed"
