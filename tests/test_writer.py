"""The blob writer under concurrency: every chunk stored once, packs within their size, memory bounded."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from coldvault.config import Secret
from coldvault.config.model import FormatConfig
from coldvault.repo import writer as writer_module
from coldvault.repo.blob import BlobKind
from coldvault.repo.pack import PackBuilder
from coldvault.repo.repository import Repository
from coldvault.repo.writer import BlobWriter
from coldvault.storage.faults import Faults, FaultyStore
from coldvault.storage.memory import MemoryStore

PACK_SIZE = 32 << 10
FORMAT = FormatConfig(chunk_min_size=256, chunk_avg_size=1024, chunk_max_size=4096, pack_size=PACK_SIZE)


@pytest.mark.parametrize("uploads_in_flight", [1, 3])
def test_a_slow_target_holds_at_most_one_pack_beyond_those_uploading(monkeypatch, uploads_in_flight) -> None:
    # Counting buffers is the observation: a pack buffer is made only where no finished upload gave one back.
    made: list[bytearray] = []

    class CountingBuilder(PackBuilder):
        def __init__(self, kind: BlobKind, buffer: bytearray | None = None) -> None:
            super().__init__(kind, buffer)
            if buffer is None:
                made.append(self.buffer)

    monkeypatch.setattr(writer_module, "PackBuilder", CountingBuilder)
    store = FaultyStore(MemoryStore(), Faults(latency=0.02))  # every put waits: the workers outrun the target
    repo = Repository.init(store, Secret(b"pw"), FORMAT)
    rng = random.Random(7)
    chunks = [rng.randbytes(rng.randrange(1000, 4000)) for _ in range(600)]
    writer = BlobWriter(repo, uploads_in_flight=uploads_in_flight)
    try:
        with ThreadPoolExecutor(4) as workers:
            ids = list(workers.map(lambda chunk: writer.store(BlobKind.DATA, chunk), chunks))
        records = writer.flush()
    finally:
        writer.close()
    store.faults = Faults()  # reading back needs no delay
    repo.write_index(records)

    used = [buffer for buffer in made if buffer]  # flush leaves fresh, empty builders behind
    assert len(records) > 10 * uploads_in_flight  # enough switches for another buffer to have shown up
    assert len(used) <= uploads_in_flight + 1
    assert all(r.length <= PACK_SIZE + 4096 for r in records)  # blobs, plus the sealed header
    assert [repo.read_blob(BlobKind.DATA, i) for i in ids] == chunks


def test_a_blob_larger_than_a_pack_gets_a_pack_of_its_own() -> None:
    repo = Repository.init(MemoryStore(), Secret(b"pw"), FORMAT)
    big = random.Random(8).randbytes(3 * PACK_SIZE)
    writer = BlobWriter(repo)
    try:
        small = writer.store(BlobKind.DATA, b"small" * 100)
        large = writer.store(BlobKind.DATA, big)
        records = writer.flush()
    finally:
        writer.close()
    repo.write_index(records)
    assert len(records) == 2
    assert repo.read_blob(BlobKind.DATA, large) == big and repo.read_blob(BlobKind.DATA, small) == b"small" * 100


def test_chunks_stored_together_read_back_as_stored_one_by_one() -> None:
    # store_many compresses a batch in one zstd call; what it stores must be what store() would store.
    repo = Repository.init(MemoryStore(), Secret(b"pw"), FORMAT)
    rng = random.Random(9)
    chunks = [
        b"text " * rng.randrange(1, 800),  # compresses
        rng.randbytes(3000),  # does not: stored raw
        b"",
        memoryview(b"a view " * 300),
        b"text " * 7,
    ]
    batch = [*chunks, chunks[0]]  # a chunk twice in one batch is stored once
    writer = BlobWriter(repo)
    try:
        ids = writer.store_many(BlobKind.DATA, batch)
        one_by_one = [writer.store(BlobKind.DATA, chunk) for chunk in batch]
        records = writer.flush()
    finally:
        writer.close()
    repo.write_index(records)
    assert ids == one_by_one and ids[0] == ids[-1]
    assert writer.new_chunks == len(chunks)
    assert [repo.read_blob(BlobKind.DATA, i) for i in ids] == [bytes(c) for c in batch]
