"""A set of chunk ids that takes a few bytes per id: the in-memory index's lookup table.

Every command holds the whole index in memory, one entry per chunk of the repository.  A dict from
id to entry holds three objects per chunk (the 32-byte id, its value, a table slot: ~150 bytes); this
table holds one 8-byte slot per chunk, at most half of the slots used, and asks its owner for the id
of an entry only to confirm a match (the owner keeps the ids packed in the records it holds anyway;
see repo.index).

Open addressing with linear probing.  The ids are keyed hashes, uniformly spread, so their first
four bytes pick the slot directly; a slot keeps them too, which rules out nearly every other id
without asking the owner, and lets the table grow without reading an id again.  Someone holding the
repository's keys could write ids that collide and slow lookups down; nothing else can, and a slow
lookup is still a right one.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence

_FIRST_SLOTS = 64  # a power of two: a slot is the id's first bytes masked
_ENTRY_BITS = 32  # a slot: the id's first four bytes above, entry number + 1 below (0: empty)
_ENTRY_MASK = (1 << _ENTRY_BITS) - 1


class ChunkTable:
    """Chunk id → the number of the entry that holds it (entries are numbered by the owner, from 0 to
    2**32 - 3: some 2.5 PB of chunks at the default sizes)."""

    def __init__(self, id_of: Callable[[int], bytes]) -> None:
        self._id_of = id_of  # entry number → its chunk id
        self._slots = array("Q", bytes(8 * _FIRST_SLOTS))
        self._used = 0

    def __len__(self) -> int:
        return self._used

    def find(self, chunk_id: bytes) -> int | None:
        """The entry holding ``chunk_id``, or None."""
        slots = self._slots
        mask = len(slots) - 1
        key = int.from_bytes(chunk_id[:4], "little")
        slot = key & mask
        while taken := slots[slot]:
            if taken >> _ENTRY_BITS == key:
                entry = (taken & _ENTRY_MASK) - 1
                if self._id_of(entry) == chunk_id:
                    return entry
            slot = (slot + 1) & mask
        return None

    def add(self, chunk_ids: Sequence[bytes], first: int) -> None:
        """Map each of ``chunk_ids`` to its entry (``first``, ``first + 1``, …) unless it is mapped
        already: the first entry added for a chunk is the one lookups find.  In bulk, as a pack's
        entries come: loading the index calls this for every chunk of the repository."""
        if first + len(chunk_ids) >= _ENTRY_MASK:  # entry + 1 must fit below the id's bytes
            raise OverflowError("an index holds at most 2**32 - 2 chunk entries")
        while 2 * (self._used + len(chunk_ids)) > len(self._slots):
            self._grow()
        slots, id_of = self._slots, self._id_of
        mask = len(slots) - 1
        added = 0
        # find's probe, written out: calling a shared one per chunk made loading 500,000 entries take
        # 0.62 s instead of 0.46 (bench/index_load.py).
        for entry, chunk_id in enumerate(chunk_ids, first):
            key = int.from_bytes(chunk_id[:4], "little")
            slot = key & mask
            while taken := slots[slot]:
                if taken >> _ENTRY_BITS == key and id_of((taken & _ENTRY_MASK) - 1) == chunk_id:
                    break
                slot = (slot + 1) & mask
            else:
                slots[slot] = key << _ENTRY_BITS | (entry + 1)
                added += 1
        self._used += added

    def _grow(self) -> None:
        old = self._slots
        slots = array("Q", bytes(16 * len(old)))
        mask = len(slots) - 1
        for taken in old:
            if taken:
                slot = (taken >> _ENTRY_BITS) & mask
                while slots[slot]:
                    slot = (slot + 1) & mask
                slots[slot] = taken
        self._slots = slots  # only when whole: a lookup on another thread sees one table or the other
