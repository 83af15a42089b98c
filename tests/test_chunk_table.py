"""The index's compact id table against the dict it replaces."""

from __future__ import annotations

import os
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldvault.repo.blob import BlobKind
from coldvault.repo.chunk_table import ChunkTable
from coldvault.repo.index import Index, Location, PackRecord
from coldvault.repo.pack import PackEntry

# Ids from a few distinct first four bytes: most collide on the slot they hash to and must be told
# apart by the rest (real ids are keyed hashes and rarely do, but nothing may rely on that).
_IDS = st.builds(lambda head, tail: bytes([head]) * 4 + tail, st.integers(0, 3), st.binary(min_size=28, max_size=28))


@settings(max_examples=60)
@given(st.lists(_IDS, max_size=300), st.lists(_IDS, max_size=50))
def test_it_answers_as_a_dict_that_keeps_the_first_entry(added: list[bytes], asked: list[bytes]) -> None:
    ids: list[bytes] = []  # entry number → id, as the index's records hold them
    table = ChunkTable(ids.__getitem__)
    expected: dict[bytes, int] = {}
    for chunk_id in added:
        ids.append(chunk_id)
        table.add([chunk_id], len(ids) - 1)
        expected.setdefault(chunk_id, len(ids) - 1)
    assert len(table) == len(expected)
    for chunk_id in added + asked:
        assert table.find(chunk_id) == expected.get(chunk_id)


def test_it_grows_past_its_first_slots_and_finds_every_id() -> None:
    ids = [i.to_bytes(4, "little") * 8 for i in range(10_000)]  # consecutive slots: long probe runs
    table = ChunkTable(ids.__getitem__)
    for first in range(0, len(ids), 300):
        table.add(ids[first : first + 300], first)
    assert [table.find(chunk_id) for chunk_id in ids] == list(range(10_000))
    assert table.find(b"\xff" * 32) is None


def test_entry_numbers_that_would_not_fit_a_slot_are_refused() -> None:
    table = ChunkTable(lambda entry: b"")
    table.add([b"\x01" * 32], 2**32 - 3)
    with pytest.raises(OverflowError):
        table.add([b"\x02" * 32], 2**32 - 2)


_PACKS = st.lists(st.lists(st.binary(min_size=32, max_size=32).map(bytes), max_size=6), max_size=12)


@settings(max_examples=60)
@given(_PACKS)
def test_the_index_finds_each_chunk_in_the_first_pack_that_holds_it(packs: list[list[bytes]]) -> None:
    # Empty packs and ids shared between packs: entry numbering across packs must stay exact.
    index, expected = Index(), {}
    for number, ids in enumerate(packs):
        name = f"{number:064x}"
        entries = [PackEntry(BlobKind.DATA, chunk_id, 10 * i, 10, 20 + i) for i, chunk_id in enumerate(ids)]
        index.add(PackRecord.of(name, BlobKind.DATA, 1000, entries))
        for e in entries:
            expected.setdefault(e.chunk_id, Location(name, BlobKind.DATA, e.offset, e.length, e.raw_length))
    assert len(index) == len(expected)
    for chunk_id, location in expected.items():
        assert index.lookup(BlobKind.DATA, chunk_id) == location
        assert index.lookup(BlobKind.TREE, chunk_id) is None


def test_a_lookup_on_another_thread_while_the_table_grows_still_finds_what_was_there() -> None:
    ids = [os.urandom(32) for _ in range(60_000)]
    table = ChunkTable(ids.__getitem__)
    table.add(ids[:500], 0)
    missed: list[bytes] = []
    adding = threading.Event()
    adding.set()

    def look() -> None:
        while adding.is_set():
            missed.extend(chunk_id for chunk_id in ids[:500] if table.find(chunk_id) is None)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # the threads take turns often, also in the middle of growing
    try:
        reader = threading.Thread(target=look)
        reader.start()
        for first in range(500, len(ids), 500):  # the table grows from 64 slots to 128 Ki
            table.add(ids[first : first + 500], first)
    finally:
        adding.clear()
        sys.setswitchinterval(interval)
    reader.join()
    assert not missed
