"""The compact JSON bodies of sealed records (snapshot manifests, forget records, session
markers): one encoding, and one way of turning anything malformed into IntegrityError."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from coldvault.errors import IntegrityError

T = TypeVar("T")


def encode_doc(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode_doc(body: bytes, *, version: int, what: str, build: Callable[[dict[str, Any]], T]) -> T:
    """``build`` the record from the decoded document; any ValueError, KeyError or TypeError it
    raises means the document is malformed."""
    try:
        doc = json.loads(body)
        if doc["version"] != version:
            raise IntegrityError(f"{what} has version {doc['version']!r}; upgrade coldvault to read it")
        return build(doc)
    except IntegrityError:
        raise
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(f"{what} is malformed") from None


def aware_time(value: object) -> datetime:
    """An ISO 8601 time that names its offset from UTC."""
    if not isinstance(value, str):
        raise TypeError("expected a time")
    time = datetime.fromisoformat(value)
    if time.tzinfo is None:
        raise ValueError("time without an offset")
    return time


def text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def items(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return value
