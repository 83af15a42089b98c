"""A chunk as stored inside a pack: compressed when that helps, then sealed.

    payload := the chunk itself, or a zstd frame of it when that is strictly shorter
    blob    := seal(K_data, payload, aad = kind byte || chunk id)

No flag says which: the index holds the chunk's length (raw_length), so a
payload of exactly raw_length bytes is the chunk and a shorter one is a zstd
frame.  Both lengths are authenticated (raw_length by the sealed index and
pack header, the payload length by the AEAD tag).  Binding the kind and the
chunk id as associated data means a blob cannot be moved to another id, or a
data blob passed off as a tree blob, without failing authentication.
"""

from __future__ import annotations

import threading
from enum import IntEnum

import zstandard

from coldvault.errors import IntegrityError
from coldvault.repo.crypto import SEAL_OVERHEAD, seal, unseal

_local = threading.local()  # a ZstdDecompressor per thread: it is not thread-safe, and costly to set up per chunk


class BlobKind(IntEnum):
    DATA = 0
    TREE = 1


def seal_blob(
    key: bytes, kind: BlobKind, chunk_id: bytes, plaintext: bytes | memoryview, compressed: bytes | memoryview
) -> bytearray:
    """``compressed`` is the plaintext as one zstd frame declaring its length, compressed by the caller."""
    payload = compressed if len(compressed) < len(plaintext) else plaintext
    return seal(key, payload, _aad(kind, chunk_id))


def decode_blob(key: bytes, kind: BlobKind, chunk_id: bytes, sealed: bytes | memoryview, raw_length: int) -> bytes:
    """Open and decompress; the caller re-derives the chunk id if it wants proof of content."""
    what = f"chunk {chunk_id.hex()[:16]}"
    if len(sealed) - SEAL_OVERHEAD > raw_length:
        raise IntegrityError(f"{what} is longer than the index says it can be")
    payload = unseal(key, sealed, _aad(kind, chunk_id), what=what)
    if len(payload) == raw_length:
        return payload
    try:
        # The frame must declare exactly the indexed length: one-shot decompression then writes
        # into a buffer of that size and cannot be inflated beyond it (no zip bomb).
        if zstandard.frame_content_size(payload) != raw_length:
            raise IntegrityError(f"{what} declares a different length than the index")
        plaintext = _decompressor().decompress(payload)
    except zstandard.ZstdError:
        raise IntegrityError(f"{what} does not decompress") from None
    if len(plaintext) != raw_length:
        raise IntegrityError(f"{what} has length {len(plaintext)}, expected {raw_length}")
    return plaintext


def _aad(kind: BlobKind, chunk_id: bytes) -> bytes:
    return bytes((kind,)) + chunk_id


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor
