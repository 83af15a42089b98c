"""The segmented reader cuts exactly where cutting the whole input at once would, with bounded memory."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldvault.engine.segments import SegmentedReader, SegmentPool
from coldvault.repo.chunker import ChunkerParams, cut_buffer

PARAMS = ChunkerParams(min_size=256, avg_size=1024, max_size=4096, seed=99)


def whole(data: bytes) -> list[bytes]:
    return [bytes(c) for c in cut_buffer(PARAMS.new(), data)]


def read_all(inputs: list[bytes], tmp_path: Path, *, segment_size: int, count: int = 2) -> list[list[bytes]]:
    """Feed several files through one reader (as a backup does), consuming chunks right away."""
    pool = SegmentPool(count, segment_size)
    reader = SegmentedReader(pool, PARAMS, wait_for_free=lambda: pytest.fail("pool ran dry"))
    results = []
    for i, data in enumerate(inputs):
        path = tmp_path / f"f{i}"
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        chunks = []
        for view, segment in reader.chunks(fd):
            chunks.append(bytes(view))
            pool.chunk_consumed(segment)
        os.close(fd)
        results.append(chunks)
    reader.close()
    return results


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40_000), min_size=1, max_size=6),
    segment_size=st.sampled_from([4097, 5000, 9000, 65536]),
    seed=st.integers(0, 2**32),
)
def test_cut_points_equal_cutting_each_file_whole(tmp_path_factory, sizes, segment_size, seed) -> None:
    rng = random.Random(seed)
    inputs = [rng.randbytes(n) if rng.random() < 0.7 else bytes(n) for n in sizes]
    got = read_all(inputs, tmp_path_factory.mktemp("seg"), segment_size=segment_size)
    assert got == [whole(data) for data in inputs]


def test_a_pipe_delivering_bytes_in_dribbles_cuts_the_same(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(100_000)
    read_fd, write_fd = os.pipe()

    def dribble() -> None:
        rng = random.Random(4)
        position = 0
        while position < len(data):
            step = rng.randint(1, 3000)
            os.write(write_fd, data[position : position + step])
            position += step
        os.close(write_fd)

    writer = threading.Thread(target=dribble)
    writer.start()
    pool = SegmentPool(2, 10_000)
    reader = SegmentedReader(pool, PARAMS, wait_for_free=lambda: pytest.fail("pool ran dry"))
    chunks = []
    for view, segment in reader.chunks(read_fd):
        chunks.append(bytes(view))
        pool.chunk_consumed(segment)
    writer.join()
    os.close(read_fd)
    assert chunks == whole(data)


def test_the_reader_waits_for_consumers_when_the_pool_is_empty(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(60_000)
    (tmp_path / "f").write_bytes(data)
    pool = SegmentPool(2, 10_000)
    held: list[tuple[bytes, object]] = []

    def release_oldest() -> None:
        assert held, "the reader waited with nothing to release: it would deadlock"
        _, segment = held.pop(0)
        pool.chunk_consumed(segment)  # type: ignore[arg-type]

    reader = SegmentedReader(pool, PARAMS, wait_for_free=release_oldest)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    out = []
    for view, segment in reader.chunks(fd):
        out.append(bytes(view))
        held.append((bytes(view), segment))
    os.close(fd)
    assert out == whole(data)


def test_segments_must_be_larger_than_the_largest_chunk() -> None:
    with pytest.raises(ValueError):
        SegmentedReader(SegmentPool(2, 4096), PARAMS, wait_for_free=lambda: None)


def test_a_file_of_known_size_is_read_without_looking_for_its_end(tmp_path: Path, monkeypatch) -> None:
    data = random.Random(5).randbytes(30_000)
    path = tmp_path / "f"
    path.write_bytes(data)
    reads = []
    real_readv = os.readv
    monkeypatch.setattr(os, "readv", lambda fd, buffers: reads.append(1) or real_readv(fd, buffers))
    pool = SegmentPool(2, 65536)
    reader = SegmentedReader(pool, PARAMS, wait_for_free=lambda: pytest.fail("pool ran dry"))
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [bytes(view) for view, _ in reader.chunks(fd, expected_size=len(data))]
        assert chunks == whole(data) and len(reads) == 1
        # A file that grew past what its size said is read to its end (the backup then warns).
        with open(path, "ab") as f:
            f.write(b"more")
        os.lseek(fd, 0, os.SEEK_SET)
        grown = b"".join(bytes(view) for view, _ in reader.chunks(fd, expected_size=10))
        assert grown == data + b"more"
    finally:
        os.close(fd)
