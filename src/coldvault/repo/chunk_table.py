"""A set of chunk ids that takes a few bytes per id: the in-memory index's lookup table.

Every command holds the whole index in memory, one entry per chunk of the repository.  A dict from
id to entry holds three objects per chunk (the 32-byte id, its value, a table slot: ~150 bytes); this
table holds only a 4-byte entry number per slot, at most half of the slots used, and asks its owner
for the id of an entry when it needs to compare (the owner keeps them packed in the records it
already holds; see repo.index).

Open addressing with linear probing.  The ids are keyed hashes, uniformly spread, so their first
eight bytes pick the slot directly.  Someone holding the repository's keys could write ids that
collide and slow lookups down; nothing else can, and a slow lookup is still a right one.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

_FIRST_SLOTS = 64  # a power of two: a slot is the id's first bytes masked


class ChunkTable:
    """Chunk id → the number of the entry that holds it (entries are numbered by the owner)."""

    def __init__(self, id_of: Callable[[int], bytes]) -> None:
        self._id_of = id_of  # entry number → its chunk id
        self._slots = array("I", bytes(4 * _FIRST_SLOTS))  # 0: empty, else entry number + 1
        self._used = 0

    def __len__(self) -> int:
        return self._used

    def find(self, chunk_id: bytes) -> int | None:
        """The entry holding ``chunk_id``, or None."""
        slots, id_of = self._slots, self._id_of
        mask = len(slots) - 1
        slot = int.from_bytes(chunk_id[:8], "little") & mask
        while taken := slots[slot]:
            if id_of(taken - 1) == chunk_id:
                return taken - 1
            slot = (slot + 1) & mask
        return None

    def add(self, chunk_id: bytes, entry: int) -> None:
        """Map ``chunk_id`` to ``entry`` unless it is mapped already: the first entry added for a chunk
        is the one lookups find."""
        if 2 * (self._used + 1) > len(self._slots):
            self._grow()
        slots, id_of = self._slots, self._id_of
        mask = len(slots) - 1
        slot = int.from_bytes(chunk_id[:8], "little") & mask
        while taken := slots[slot]:
            if id_of(taken - 1) == chunk_id:
                return
            slot = (slot + 1) & mask
        slots[slot] = entry + 1
        self._used += 1

    def _grow(self) -> None:
        old = self._slots
        slots = self._slots = array("I", bytes(8 * len(old)))
        mask = len(slots) - 1
        id_of = self._id_of
        for taken in old:
            if taken:
                slot = int.from_bytes(id_of(taken - 1)[:8], "little") & mask
                while slots[slot]:
                    slot = (slot + 1) & mask
                slots[slot] = taken
