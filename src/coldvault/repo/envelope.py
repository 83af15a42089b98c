"""Standalone encrypted objects (config body, indexes, snapshot manifests, forget records).

    object := magic "CVLT" || version u8 (=1) || type u8 || seal(K_meta, body, aad = the first 6 bytes)

The header is authenticated, so an index cannot be passed off as a snapshot.
"""

from __future__ import annotations

from enum import IntEnum

from coldvault.errors import ForeignObject, IntegrityError
from coldvault.repo.crypto import seal, unseal

MAGIC = b"CVLT"
VERSION = 1


class EnvelopeType(IntEnum):
    CONFIG = 1
    INDEX = 2
    SNAPSHOT = 3
    FORGET = 4
    SUPERSEDING_INDEX = 5  # an index object written by prune, naming the index objects it replaces
    SESSION = 6


def wrap(key: bytes, kind: EnvelopeType, body: bytes) -> bytes:
    header = MAGIC + bytes((VERSION, kind))
    return header + seal(key, body, header)


def unwrap(key: bytes, kind: EnvelopeType, data: bytes, *, what: str) -> bytes:
    """The body; raises ForeignObject where ``data`` was not sealed by ``key`` as a ``kind`` object (for
    an object whose bytes match its name, that proves it is not one of this repository's), and
    IntegrityError where it may be one this coldvault cannot read (a newer format version)."""
    header = data[:6]
    if len(data) < 6 or header[:4] != MAGIC:
        raise ForeignObject(f"{what} is not a coldvault object")
    if header[4] != VERSION:
        raise IntegrityError(f"{what} has format version {header[4]}; this coldvault reads version {VERSION}")
    if header[5] != kind:
        raise ForeignObject(f"{what} is not a {kind.name.lower()} object")
    try:
        return unseal(key, memoryview(data)[6:], header, what=what)
    except IntegrityError as exc:
        raise ForeignObject(str(exc)) from None


def type_of(data: bytes) -> int | None:
    """The type an object's header claims, before unwrapping (which authenticates it)."""
    return data[5] if len(data) >= 6 and data[:4] == MAGIC else None
