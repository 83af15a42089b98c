"""Parsing ids from untrusted JSON: exactly 64 lowercase hex digits, nothing else."""

from __future__ import annotations

import re

_HEX64 = re.compile(r"[0-9a-f]{64}")


def parse_id(value: object) -> bytes:
    """The 32 bytes behind a hex id; ValueError for anything else (bytes.fromhex alone skips spaces)."""
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValueError("expected 64 lowercase hex digits")
    return bytes.fromhex(value)
