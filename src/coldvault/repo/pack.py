"""Packs: many sealed blobs in one object, with a sealed header at the end.

    pack   := blob_1 || … || blob_n || sealed_header || header_length (u32 LE)
    header := "CVPH" || version u8 (=1) || n u32 || n × entry
    entry  := kind u8 || chunk id [32] || offset u32 || length u32 || raw_length u32

The header duplicates what the index says about this pack, so a lost or
corrupt index can be rebuilt from the packs alone.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from coldvault.errors import IntegrityError
from coldvault.repo.blob import BlobKind
from coldvault.repo.crypto import seal, unseal

_MAGIC = b"CVPH"
_VERSION = 1
_ENTRY = struct.Struct("<B32sIII")
_COUNT = struct.Struct("<I")
_AAD = b"coldvault pack header v1"


@dataclass(frozen=True, slots=True)
class PackEntry:
    kind: BlobKind
    chunk_id: bytes
    offset: int
    length: int
    raw_length: int


class PackBuilder:
    """Collects sealed blobs of one kind until the pack is big enough to store.

    It writes into a buffer it is given, which may be one a previous pack used:
    reusing buffers avoids first-touch page faults on every pack.  The buffer
    grows when a pack outgrows it.
    """

    def __init__(self, kind: BlobKind, buffer: bytearray | None = None) -> None:
        self.kind = kind
        self.buffer = buffer if buffer is not None else bytearray()
        self._length = 0
        self._entries: list[PackEntry] = []

    @property
    def size(self) -> int:
        return self._length

    @property
    def empty(self) -> bool:
        return not self._entries

    def fits(self, length: int, pack_size: int) -> bool:
        """Whether a blob of ``length`` bytes keeps the pack within ``pack_size`` (an empty pack takes
        any blob): a pack is stored before it would outgrow the size, so its buffer stays that size."""
        return not self._entries or self._length + length <= pack_size

    def add(self, chunk_id: bytes, blob: bytes, raw_length: int) -> None:
        self._entries.append(PackEntry(self.kind, chunk_id, self._length, len(blob), raw_length))
        self._append(blob)

    def finish(self, meta_key: bytes) -> tuple[memoryview, list[PackEntry]]:
        """The pack's bytes, as a view into the buffer (release it before reusing the buffer)."""
        header = bytearray(_MAGIC + bytes((_VERSION,)) + _COUNT.pack(len(self._entries)))
        for e in self._entries:
            header += _ENTRY.pack(e.kind, e.chunk_id, e.offset, e.length, e.raw_length)
        sealed = seal(meta_key, bytes(header), _AAD)
        self._append(sealed)
        self._append(_COUNT.pack(len(sealed)))
        return memoryview(self.buffer)[: self._length], self._entries

    def _append(self, data: bytes) -> None:
        end = self._length + len(data)
        self.buffer[self._length : end] = data  # overwrites in place; grows the buffer past its end
        self._length = end


def read_header(meta_key: bytes, pack: bytes, *, what: str) -> list[PackEntry]:
    """Parse and authenticate a whole pack's header; every entry must lie inside the blob area."""
    if len(pack) < _COUNT.size:
        raise IntegrityError(f"{what} is truncated")
    (sealed_length,) = _COUNT.unpack_from(pack, len(pack) - _COUNT.size)
    blob_area = len(pack) - _COUNT.size - sealed_length
    if blob_area < 0:
        raise IntegrityError(f"{what} is truncated: header length points before its start")
    header = unseal(meta_key, memoryview(pack)[blob_area : len(pack) - _COUNT.size], _AAD, what=f"{what} header")
    if len(header) < 9 or header[:4] != _MAGIC or header[4] != _VERSION:
        raise IntegrityError(f"{what} header has an unknown format")
    (count,) = _COUNT.unpack_from(header, 5)
    if len(header) != 9 + count * _ENTRY.size:
        raise IntegrityError(f"{what} header has the wrong length")
    entries = []
    for i in range(count):
        kind, chunk_id, offset, length, raw_length = _ENTRY.unpack_from(header, 9 + i * _ENTRY.size)
        if kind not in (BlobKind.DATA, BlobKind.TREE) or offset + length > blob_area:
            raise IntegrityError(f"{what} header has an entry outside the pack")
        entries.append(PackEntry(BlobKind(kind), chunk_id, offset, length, raw_length))
    return entries
