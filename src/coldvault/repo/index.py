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
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from coldvault.errors import IntegrityError
from coldvault.repo.blob import BlobKind
from coldvault.repo.chunk_table import ChunkTable
from coldvault.repo.pack import PackEntry

_PACK = struct.Struct("<32sBII")
_ENTRY = struct.Struct("<32sIII")
_COUNT = struct.Struct("<I")


class Location(NamedTuple):
    """Made on each lookup (see _Packs): a tuple is made in a third of a frozen dataclass's time."""

    pack: str  # hex name of the pack object
    kind: BlobKind
    offset: int
    length: int
    raw_length: int


@dataclass(frozen=True)
class PackRecord:
    """A pack as the index describes it.  Its entries stay as an index object stores them (44 bytes
    each, see above) rather than as objects: every command holds every pack's record in memory."""

    name: str
    kind: BlobKind
    length: int
    table: bytes  # n × entry

    @classmethod
    def of(cls, name: str, kind: BlobKind, length: int, entries: Iterable[PackEntry]) -> PackRecord:
        table = b"".join(_ENTRY.pack(e.chunk_id, e.offset, e.length, e.raw_length) for e in entries)
        return cls(name, kind, length, table)

    @property
    def count(self) -> int:
        return len(self.table) // _ENTRY.size

    @property
    def entries(self) -> tuple[PackEntry, ...]:
        return tuple(PackEntry(self.kind, *fields) for fields in _ENTRY.iter_unpack(self.table))


def encode_index(packs: Iterable[PackRecord]) -> bytes:
    packs = list(packs)
    out = bytearray(_COUNT.pack(len(packs)))
    for pack in packs:
        out += _PACK.pack(bytes.fromhex(pack.name), pack.kind, pack.length, pack.count)
        out += pack.table
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
            table = body[position : position + n * _ENTRY.size]
            if len(table) != n * _ENTRY.size:
                raise IntegrityError(f"{what} is malformed")
            position += len(table)
            if any(offset + blob_length > length for _, offset, blob_length, _ in _ENTRY.iter_unpack(table)):
                raise IntegrityError(f"{what} places a chunk outside its pack")
            packs.append(PackRecord(name.hex(), BlobKind(kind), length, table))
    except (struct.error, ValueError):
        raise IntegrityError(f"{what} is malformed") from None
    if position != len(body):
        raise IntegrityError(f"{what} has trailing bytes")
    return packs


class _Packs:
    """Packs by name, and for each kind where its chunks are: the first pack added that holds one.

    The entries of all packs are numbered in the order they were added (a pack's first entry number is
    in ``_starts``); a ChunkTable per kind maps an id to its entry number, and the entry itself is read
    from its pack's record on lookup.  About 65 bytes per chunk where an object per entry took 288,
    and every command holds the whole index (docs/BENCHMARKS.md, 2026-12-07 fourth session)."""

    def __init__(self) -> None:
        self.records: dict[str, PackRecord] = {}
        self.described_by: dict[str, str] = {}  # pack name → name of an index object describing it
        self._numbered: list[PackRecord] = []
        self._starts: list[int] = []  # a list, not an array: bisect on it takes half the time
        self._entries = 0
        self._chunks = {kind: ChunkTable(self._chunk_id) for kind in BlobKind}

    def add(self, pack: PackRecord, index_object: str | None) -> None:
        if index_object is not None:
            self.described_by.setdefault(pack.name, index_object)
        if pack.name in self.records:  # described by another index object too: the same pack
            return
        self.records[pack.name] = pack
        first = self._entries
        self._numbered.append(pack)
        self._starts.append(first)
        self._entries += pack.count
        table = pack.table
        self._chunks[pack.kind].add([table[start : start + 32] for start in range(0, len(table), _ENTRY.size)], first)

    def chunk_count(self) -> int:
        return sum(len(chunks) for chunks in self._chunks.values())

    def lookup(self, kind: BlobKind, chunk_id: bytes) -> Location | None:
        entry = self._chunks[kind].find(chunk_id)
        if entry is None:
            return None
        number = bisect_right(self._starts, entry) - 1
        pack = self._numbered[number]
        _, offset, length, raw_length = _ENTRY.unpack_from(pack.table, (entry - self._starts[number]) * _ENTRY.size)
        return Location(pack.name, kind, offset, length, raw_length)

    def _chunk_id(self, entry: int) -> bytes:
        # The ChunkTable calls this for every id it compares: one call, not one per step.
        number = bisect_right(self._starts, entry) - 1
        start = (entry - self._starts[number]) * _ENTRY.size
        return self._numbered[number].table[start : start + 32]


class Index:
    """(kind, chunk id) → Location, plus pack name → PackRecord.  Not thread-safe for writers.

    Keyed by kind too: a file may contain exactly the bytes of a listing chunk, and
    the two must each be stored under their own kind.  Retired entries (from superseded index
    objects) answer ``lookup`` after the live ones, and never ``lookup_live``.
    """

    def __init__(self) -> None:
        self._live = _Packs()
        self._retired = _Packs()

    def add(self, pack: PackRecord, index_object: str | None = None, *, retired: bool = False) -> None:
        (self._retired if retired else self._live).add(pack, index_object)

    def has(self, kind: BlobKind, chunk_id: bytes) -> bool:
        return self.lookup(kind, chunk_id) is not None

    def __len__(self) -> int:
        return self._live.chunk_count()

    def lookup(self, kind: BlobKind, chunk_id: bytes) -> Location | None:
        """Where to read a chunk: a live entry, else a retired one."""
        return self._live.lookup(kind, chunk_id) or self._retired.lookup(kind, chunk_id)

    def lookup_live(self, kind: BlobKind, chunk_id: bytes) -> Location | None:
        """Where a chunk is for deduplication: live entries only (see the module's docstring)."""
        return self._live.lookup(kind, chunk_id)

    def packs(self) -> Iterator[PackRecord]:
        """The live packs."""
        return iter(self._live.records.values())

    def is_live(self, pack: str) -> bool:
        return pack in self._live.records

    def pack(self, name: str) -> PackRecord | None:
        return self._live.records.get(name) or self._retired.records.get(name)

    def index_object(self, pack: str) -> str | None:
        """An index object that describes the pack (a live one if any): a reader needs it to find the pack's chunks."""
        return self._live.described_by.get(pack) or self._retired.described_by.get(pack)
