"""A chunk as stored inside a pack: compressed when that helps, then sealed.

    plaintext := flag (1 byte: 0 = stored raw, 1 = zstd frame) || payload
    blob      := seal(K_data, plaintext, aad = kind byte || chunk id)

Binding the kind and the chunk id as associated data means a blob cannot be
moved to another id, or a data blob passed off as a tree blob, without failing
authentication.
"""

from __future__ import annotations

from enum import IntEnum

import zstandard

from coldvault.errors import IntegrityError
from coldvault.repo.crypto import seal, unseal

_RAW = 0
_ZSTD = 1


class BlobKind(IntEnum):
    DATA = 0
    TREE = 1


def encode_blob(
    key: bytes, kind: BlobKind, chunk_id: bytes, plaintext: bytes | memoryview, compressor: zstandard.ZstdCompressor
) -> bytes:
    compressed = compressor.compress(plaintext)
    if len(compressed) < len(plaintext):
        body = bytes((_ZSTD,)) + compressed
    else:
        body = bytes((_RAW,)) + bytes(plaintext)
    return seal(key, body, _aad(kind, chunk_id))


def decode_blob(key: bytes, kind: BlobKind, chunk_id: bytes, sealed: bytes | memoryview, raw_length: int) -> bytes:
    """Open, decompress and check the length; the caller re-derives the chunk id if it wants proof of content."""
    what = f"chunk {chunk_id.hex()[:16]}"
    body = unseal(key, sealed, _aad(kind, chunk_id), what=what)
    if body[:1] == bytes((_RAW,)):
        plaintext = body[1:]
    elif body[:1] == bytes((_ZSTD,)):
        # The frame must declare exactly the indexed length: one-shot decompression then writes
        # into a buffer of that size and cannot be inflated beyond it (no zip bomb).
        try:
            if zstandard.frame_content_size(body[1:]) != raw_length:
                raise IntegrityError(f"{what} declares a different length than the index")
            plaintext = zstandard.ZstdDecompressor().decompress(body[1:])
        except zstandard.ZstdError:
            raise IntegrityError(f"{what} does not decompress") from None
    else:
        raise IntegrityError(f"{what} has an unknown compression flag")
    if len(plaintext) != raw_length:
        raise IntegrityError(f"{what} has length {len(plaintext)}, expected {raw_length}")
    return plaintext


def _aad(kind: BlobKind, chunk_id: bytes) -> bytes:
    return bytes((kind,)) + chunk_id
