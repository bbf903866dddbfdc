"""The grant answer built directly (`grant_document`) is the model's answer, byte for byte."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from even.api.schemas import AccessGrantAnswer, grant_document
from even.service.models import AccessRequestView

RECEIPT = {"seq": 42, "hash": "ab" * 32, "signature": "c2ln" * 22, "key_id": "cd" * 32}
GRANTED = AccessRequestView(
    id="0193a8f0-0000-7000-8000-000000000001",
    status="GRANTED",
    username="alice",
    login="deploy",
    hostname="db-1.prod.example.org",
    mode="certificate",
    reason="debug INC-123",
    rule="prod-db",
    certificate="ssh-ed25519-cert-v01@openssh.com AAAA",
    serial=7,
    key_id="even:0193a8f0:alice",
    principals=["deploy"],
    valid_after="2026-12-06T18:00:00Z",
    valid_before="2026-12-06T18:30:00Z",
    bastion=None,
    bastion_certificate=None,
    bastion_serial=None,
    lifetime_minutes=30,
    status_reason=None,
    created="2026-12-06T18:00:00Z",
    last_modified="2026-12-06T18:00:00Z",
    receipt=RECEIPT,
)
APPROVAL = {
    "needed": 2,
    "approvals": [{"username": "bob", "time": "2026-12-06T18:01:00Z", "comment": None}],
    "approver_groups": ["sre"],
    "expires_at": "2026-12-06T19:00:00Z",
}

VIEWS = {
    "granted": GRANTED,
    "through a bastion": replace(
        GRANTED,
        bastion="bastion-1",
        bastion_certificate="ssh-ed25519-cert-v01@openssh.com BBBB",
        bastion_serial=8,
        principals=["deploy@db-1.prod.example.org"],
    ),
    "break-glass": replace(GRANTED, emergency=True),
    "without a receipt": replace(GRANTED, receipt=None),
    "an empty receipt": replace(GRANTED, receipt={}),
    "pending approval": replace(
        GRANTED,
        status="PENDING_APPROVAL",
        certificate=None,
        serial=None,
        key_id=None,
        valid_after=None,
        valid_before=None,
        receipt=None,
        approval=APPROVAL,
    ),
    "approved and granted": replace(GRANTED, approval=APPROVAL),
    "push": replace(GRANTED, mode="push", certificate=None, serial=None, key_id=None),
    "non-ASCII and quotes": replace(GRANTED, hostname='h"ö\u202e', login="d\\x"),
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_grant_document_equals_the_models_answer(name: str) -> None:
    view = VIEWS[name]
    expected = AccessGrantAnswer.from_view(view).model_dump()
    ours = grant_document(view)
    assert ours == expected
    assert orjson.dumps(ours) == orjson.dumps(expected)  # the same members in the same order


def test_every_answer_field_is_built() -> None:
    assert list(grant_document(GRANTED)) == list(AccessGrantAnswer.model_fields)
