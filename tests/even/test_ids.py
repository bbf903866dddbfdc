"""Request ids are UUIDv7: unguessable (74 random bits) and ordered by their creation time."""

from __future__ import annotations

import time
import uuid

from even.ids import new_request_id


def test_ids_are_version_7_rfc_9562_uuids_with_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_request_id() for _ in range(10_000)]
    after = time.time_ns() // 1_000_000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical lowercase 8-4-4-4-12
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after
    assert len(set(ids)) == len(ids)


def test_ids_made_later_sort_later_and_the_rest_is_random() -> None:
    first = new_request_id()
    time.sleep(0.002)
    second = new_request_id()
    assert first < second
    # Within one millisecond the 74 random bits differ: no counter an attacker could step.
    randoms = {uuid.UUID(new_request_id()).int & ((1 << 62) - 1) for _ in range(1000)}
    assert len(randoms) == 1000
