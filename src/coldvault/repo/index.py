"""The index: where each chunk lives (pack, offset, length).

Stored as encrypted index objects, each describing a set of packs:

    body := n_packs u32 || n_packs × pack_record
    pack_record := pack name [32] || kind u8 || pack length u32 || n u32 || n × entry
    entry       := chunk id [32] || offset u32 || length u32 || raw_length u32

Prune rewrites the index: it writes an index object that *supersedes* others, carrying over
the entries of the packs it keeps, and sealed as its own envelope type:

    body := n_superseded u32 || n_superseded × index object name [32] || index body as above

The in-memory Index is the union of every index object that nothing supersedes (live); the
entries of superseded ones are kept apart (retired), for reading only: a backup that reused a
pack just before prune dropped it from the index commits a snapshot that still reads, until the
next prune indexes the pack again.  New backups deduplicate against live entries only, so they
never reuse a pack that prune is about to delete.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from coldvault.errors import IntegrityError
from coldvault.repo.blob import BlobKind
from coldvault.repo.pack import PackEntry

_PACK = struct.Struct("<32sBII")
_ENTRY = struct.Struct("<32sIII")
_COUNT = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Location:
    pack: str  # hex name of the pack object
    kind: BlobKind
    offset: int
    length: int
    raw_length: int


@dataclass(frozen=True)
class PackRecord:
    name: str
    kind: BlobKind
    length: int
    entries: tuple[PackEntry, ...]


def encode_index(packs: Iterable[PackRecord]) -> bytes:
    packs = list(packs)
    out = bytearray(_COUNT.pack(len(packs)))
    for pack in packs:
        out += _PACK.pack(bytes.fromhex(pack.name), pack.kind, pack.length, len(pack.entries))
        for e in pack.entries:
            out += _ENTRY.pack(e.chunk_id, e.offset, e.length, e.raw_length)
    return bytes(out)


def encode_superseding(supersedes: Iterable[str], packs: Iterable[PackRecord]) -> bytes:
    names = sorted(supersedes)
    return _COUNT.pack(len(names)) + b"".join(bytes.fromhex(n) for n in names) + encode_index(packs)


def decode_superseding(body: bytes, *, what: str) -> tuple[list[str], list[PackRecord]]:
    """(the index objects it supersedes, its packs)."""
    try:
        (count,) = _COUNT.unpack_from(body, 0)
    except struct.error:
        raise IntegrityError(f"{what} is malformed") from None
    end = _COUNT.size + 32 * count
    if end > len(body):
        raise IntegrityError(f"{what} is malformed")
    names = [body[i : i + 32].hex() for i in range(_COUNT.size, end, 32)]
    return names, decode_index(body[end:], what=what)


def decode_index(body: bytes, *, what: str) -> list[PackRecord]:
    try:
        (n_packs,) = _COUNT.unpack_from(body, 0)
        position = _COUNT.size
        packs = []
        for _ in range(n_packs):
            name, kind, length, n = _PACK.unpack_from(body, position)
            position += _PACK.size
            entries = []
            for _ in range(n):
                chunk_id, offset, blob_length, raw_length = _ENTRY.unpack_from(body, position)
                position += _ENTRY.size
                if offset + blob_length > length:
                    raise IntegrityError(f"{what} places a chunk outside its pack")
                entries.append(PackEntry(BlobKind(kind), chunk_id, offset, blob_length, raw_length))
            packs.append(PackRecord(name.hex(), BlobKind(kind), length, tuple(entries)))
    except (struct.error, ValueError):
        raise IntegrityError(f"{what} is malformed") from None
    if position != len(body):
        raise IntegrityError(f"{what} has trailing bytes")
    return packs


class Index:
    """(kind, chunk id) → Location, plus pack name → PackRecord.  Not thread-safe for writers.

    Keyed by kind too: a file may contain exactly the bytes of a listing chunk, and
    the two must each be stored under their own kind.  Retired entries (from superseded index
    objects) answer ``lookup`` after the live ones, and never ``lookup_live``.
    """

    def __init__(self) -> None:
        # One map per kind, keyed by the id alone: a (kind, id) tuple per entry cost 56 bytes more, and the
        # whole index lives in memory (docs/BENCHMARKS.md, 2026-12-07 evening).
        self._chunks: dict[BlobKind, dict[bytes, Location]] = {kind: {} for kind in BlobKind}
        self._packs: dict[str, PackRecord] = {}
        self._described_by: dict[str, str] = {}  # pack name → name of an index object describing it
        self._retired_chunks: dict[BlobKind, dict[bytes, Location]] = {kind: {} for kind in BlobKind}
        self._retired_packs: dict[str, PackRecord] = {}
        self._retired_described_by: dict[str, str] = {}

    def add(self, pack: PackRecord, index_object: str | None = None, *, retired: bool = False) -> None:
        packs, chunks, described_by = (
            (self._retired_packs, self._retired_chunks, self._retired_described_by)
            if retired
            else (self._packs, self._chunks, self._described_by)
        )
        packs[pack.name] = pack
        if index_object is not None:
            described_by.setdefault(pack.name, index_object)
        for e in pack.entries:
            chunks[e.kind].setdefault(e.chunk_id, Location(pack.name, e.kind, e.offset, e.length, e.raw_length))

    def has(self, kind: BlobKind, chunk_id: bytes) -> bool:
        return self.lookup(kind, chunk_id) is not None

    def __len__(self) -> int:
        return sum(len(chunks) for chunks in self._chunks.values())

    def lookup(self, kind: BlobKind, chunk_id: bytes) -> Location | None:
        """Where to read a chunk: a live entry, else a retired one."""
        return self._chunks[kind].get(chunk_id) or self._retired_chunks[kind].get(chunk_id)

    def lookup_live(self, kind: BlobKind, chunk_id: bytes) -> Location | None:
        """Where a chunk is for deduplication: live entries only (see the module's docstring)."""
        return self._chunks[kind].get(chunk_id)

    def packs(self) -> Iterator[PackRecord]:
        """The live packs."""
        return iter(self._packs.values())

    def is_live(self, pack: str) -> bool:
        return pack in self._packs

    def pack(self, name: str) -> PackRecord | None:
        return self._packs.get(name) or self._retired_packs.get(name)

    def index_object(self, pack: str) -> str | None:
        """An index object that describes the pack (a live one if any): a reader needs it to find the pack's chunks."""
        return self._described_by.get(pack) or self._retired_described_by.get(pack)
