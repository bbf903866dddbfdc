"""Request ids: UUIDv7 (RFC 9562), unguessable as SPEC §7 asks and ordered by time.

74 of the 128 bits are random (the kernel's CSPRNG, through even.randomness), so an id cannot
be guessed from another; the first 48 bits are the Unix time in milliseconds, so ids made one
after another sort one after another. That keeps the database's indexes on request ids (the
requests' primary key, the audit records', the serials') appending at their end instead of
touching a random page per grant, which UUIDv4 does.
"""

from __future__ import annotations

import time

from even.randomness import random_bytes

_VERSION = 0x7
_VARIANT = 0b10


def new_request_id() -> str:
    milliseconds = time.time_ns() // 1_000_000
    random = int.from_bytes(random_bytes(10), "big")  # 80 bits; 74 are used
    rand_a = (random >> 62) & 0xFFF
    rand_b = random & ((1 << 62) - 1)
    value = (
        (milliseconds & ((1 << 48) - 1)) << 80
        | _VERSION << 76
        | rand_a << 64
        | _VARIANT << 62
        | rand_b
    )
    text = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, without building a UUID
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
