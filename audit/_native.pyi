"""Type stub for the C accelerator built from audit/_native.c (optional at install time)."""

from collections.abc import Callable
from typing import Any

def scan(
    lines: list[bytes],
    start: int,
    seq: int,
    head: str,
    stop: int,
    prefix: bytes,
    sha256: Callable[[bytes], Any],
    /,
) -> tuple[int, int, str]: ...
