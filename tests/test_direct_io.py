"""Direct I/O for packs on local targets and large restored files: exact bytes for any size, range and
order of pieces, holes where there were zeros, and a buffered fallback."""

from __future__ import annotations

import errno
import itertools
import mmap
import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coldvault.engine.forked import Forked
from coldvault.engine.progress import Progress, SilentProgress
from coldvault.storage import direct_io
from coldvault.storage.direct_io import ALIGN, SLICE, DirectFiles, SlicedWriter, data_ranges, read_on

SIZES = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, (4 << 20) - 1, 4 << 20, (4 << 20) + 5, (20 << 20) + 123]


@pytest.mark.parametrize("size", SIZES)
def test_a_direct_write_holds_exactly_the_data(tmp_path, size):
    data = random.Random(size).randbytes(size)
    path = tmp_path / "pack"
    DirectFiles().write_new(path, memoryview(data), 0o444)
    assert path.read_bytes() == data  # read back through the page cache, independently
    assert os.stat(path).st_mode & 0o777 == 0o444


def test_reads_of_any_range_match_the_file(tmp_path):
    data = random.Random(1).randbytes((3 << 20) + 777)
    path = tmp_path / "pack"
    path.write_bytes(data)
    files, rng = DirectFiles(), random.Random(2)
    assert files.read(path) == data
    for _ in range(200):
        offset = rng.randrange(len(data) + 10)
        length = rng.choice([None, 0, 1, ALIGN, rng.randrange(len(data) + 10)])
        expected = data[offset:] if length is None else data[offset : offset + length]
        assert files.read(path, offset, length) == expected, (offset, length)


def test_reads_on_through_the_cache_match_the_file(tmp_path, monkeypatch):
    data = random.Random(5).randbytes((2 << 20) + 333)
    path = tmp_path / "pack"
    path.write_bytes(data)
    hints = []
    # Mocked: whether the kernel fetched ahead cannot be observed from Python (no mincore); the hint can.
    monkeypatch.setattr(direct_io, "_fadvise", lambda fd, offset, length, advice: hints.append((offset, length)))
    rng = random.Random(6)
    for _ in range(200):
        offset, length = rng.randrange(len(data) + 10), rng.choice([0, 1, ALIGN, rng.randrange(len(data) + 10)])
        hints.clear()
        got = read_on(path, offset, length)
        assert got == data[offset : offset + length], (offset, length)
        assert hints == ([(offset + len(got), len(got))] if got else [])  # as many again, right after


def test_writing_over_an_existing_file_is_refused(tmp_path):
    path = tmp_path / "pack"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        DirectFiles().write_new(path, b"x" * ALIGN * 3, 0o444)
    assert path.read_bytes() == b"old"


@pytest.mark.usefixtures("refusing_filesystem")
def test_a_filesystem_refusing_direct_io_gets_buffered_io(tmp_path):
    files = DirectFiles()
    data = random.Random(3).randbytes(5 << 20)
    files.write_new(tmp_path / "pack", data, 0o444)
    assert files.read(tmp_path / "pack", 12345, 99999) == data[12345 : 12345 + 99999]
    assert (tmp_path / "pack").read_bytes() == data
    assert os.listdir(tmp_path) == ["pack"]  # nothing left behind by the refused attempt


@pytest.fixture
def second_write_refused(monkeypatch):
    """Mocked: a device that accepts O_DIRECT but refuses a write's alignment, from the second write on."""
    real_pwrite = os.pwrite
    calls = []

    def refusing_pwrite(fd, data, offset):
        calls.append(offset)
        if len(calls) == 2:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", refusing_pwrite)


@pytest.mark.usefixtures("second_write_refused")
def test_a_write_refused_halfway_is_written_again_buffered(tmp_path):
    data = random.Random(4).randbytes(20 << 20)
    DirectFiles().write_new(tmp_path / "pack", data, 0o444)
    assert (tmp_path / "pack").read_bytes() == data


def test_other_errors_are_not_mistaken_for_a_refusal(tmp_path):
    with pytest.raises(FileNotFoundError):
        DirectFiles().read(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        DirectFiles().write_new(tmp_path / "no" / "folder", b"x", 0o444)


# ---- SlicedWriter: large restored files, gathered into aligned slices ------------------------------


def pieces_of(data: bytes, rng: random.Random, zero_runs: list[tuple[int, int]] = ()) -> list[tuple[int, bytes]]:
    """``data`` cut at random places (and at the edges of the zero runs), as (offset, piece)."""
    cuts = {0, len(data)} | {rng.randrange(len(data) + 1) for _ in range(len(data) // 50_000 + 3)}
    cuts |= {edge for start, end in zero_runs for edge in (start, end)}
    edges = sorted(cuts)
    return [(start, data[start:end]) for start, end in itertools.pairwise(edges) if end > start]


def write_sliced(path, data, pieces, *, threads=3, files=None):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        writer = SlicedWriter(files or DirectFiles(), fd, len(data))
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda p: writer.write(p[1], p[0], zeros=not any(p[1])), pieces))
        os.ftruncate(fd, len(data))
        return writer
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [1, ALIGN + 1, SLICE - 1, SLICE, SLICE + 1, 3 * SLICE + 12345])
def test_pieces_in_any_order_from_several_threads_make_the_file(tmp_path, size):
    rng = random.Random(size)
    data = rng.randbytes(size)
    pieces = pieces_of(data, rng)
    rng.shuffle(pieces)
    writer = write_sliced(tmp_path / "f", data, pieces)
    assert writer.missing == 0
    assert (tmp_path / "f").read_bytes() == data


def test_a_piece_not_yet_written_is_counted_missing(tmp_path):
    data = random.Random(0).randbytes(SLICE + 10)
    writer = write_sliced(tmp_path / "f", data, [(0, data[:SLICE])])
    assert writer.missing == 10


def test_a_piece_outside_the_file_is_refused(tmp_path):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(ValueError, match="do not fit"):
            SlicedWriter(DirectFiles(), fd, 10).write(b"x" * 5, 6)
    finally:
        os.close(fd)


def test_runs_of_zeros_stay_holes_and_read_back_as_zeros(tmp_path):
    rng = random.Random(7)
    size = 4 * SLICE + 999
    data = bytearray(rng.randbytes(size))
    # A whole slice of zeros, a run across a slice boundary, a short run (one block), the file's tail.
    zero_runs = [
        (SLICE, 2 * SLICE),
        (3 * SLICE - 150_000, 3 * SLICE + 150_000),
        (100_000, 100_000 + 3 * ALIGN),
        (size - 70_000, size),
    ]
    for start, end in zero_runs:
        data[start:end] = bytes(end - start)
    pieces = pieces_of(bytes(data), rng, zero_runs)
    rng.shuffle(pieces)
    write_sliced(tmp_path / "f", bytes(data), pieces)
    assert (tmp_path / "f").read_bytes() == data
    if not sparse_files_here(tmp_path):
        pytest.skip("the file system under tmp_path does not make sparse files")
    allocated = os.stat(tmp_path / "f").st_blocks * 512
    assert allocated <= size - SLICE - 290_000 + 4 * ALIGN  # the holes are not allocated


def sparse_files_here(folder) -> bool:
    probe = folder / "probe"
    with open(probe, "wb") as f:
        f.truncate(1 << 20)
    return os.stat(probe).st_blocks == 0


@pytest.mark.usefixtures("refusing_filesystem")
def test_sliced_writes_fall_back_to_buffered_io(tmp_path):
    rng = random.Random(8)
    data = rng.randbytes(2 * SLICE + 77)
    write_sliced(tmp_path / "f", data, pieces_of(data, rng))
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.usefixtures("second_write_refused")
def test_sliced_writes_refused_halfway_are_written_again_buffered(tmp_path):
    rng = random.Random(9)
    data = rng.randbytes(3 * SLICE + 5)
    write_sliced(tmp_path / "f", data, pieces_of(data, rng), threads=1)
    assert (tmp_path / "f").read_bytes() == data


def dirty_files(count: int) -> DirectFiles:
    """A DirectFiles whose spare slice buffers hold an earlier file's bytes, as in a long restore."""
    files = DirectFiles()
    for _ in range(count):
        buffer = mmap.mmap(-1, SLICE)
        buffer[:] = b"\xff" * SLICE
        files.give_back(buffer)
    return files


def test_zeros_before_the_first_data_of_a_slice_are_zeros_in_a_reused_buffer(tmp_path):
    # The slice's buffer is taken (dirty) only when its first data arrives, after the zeros.
    rng = random.Random(14)
    data = bytes(300_000) + rng.randbytes(SLICE - 300_000) + bytes(1000) + rng.randbytes(5000)
    zero_runs = [(0, 300_000), (SLICE, SLICE + 1000)]
    write_sliced(tmp_path / "f", data, pieces_of(data, rng, zero_runs), threads=1, files=dirty_files(2))
    assert (tmp_path / "f").read_bytes() == data


def test_many_files_at_once_share_the_buffers_safely(tmp_path):
    # Several files written at once by several threads from one pool of dirty buffers: a buffer given
    # back too early, or not cleared where zeros go, shows up as wrong bytes in some file.
    rng = random.Random(15)
    files = dirty_files(4)
    expected, work = {}, []
    for i in range(8):
        data = bytearray(rng.randbytes(rng.randrange(SLICE, 3 * SLICE)))
        start = rng.randrange(len(data) - 200_000)
        data[start : start + 200_000] = bytes(200_000)
        path = tmp_path / f"f{i}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        writer = SlicedWriter(files, fd, len(data))
        expected[path] = (bytes(data), fd)
        work += [(writer, offset, piece) for offset, piece in pieces_of(bytes(data), rng, [(start, start + 200_000)])]
    rng.shuffle(work)
    work.sort(key=lambda w: w[1] // SLICE)  # roughly in file order, as a restore delivers them
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda w: w[0].write(w[2], w[1], zeros=not any(w[2])), work))
    for path, (data, fd) in expected.items():
        os.ftruncate(fd, len(data))
        os.close(fd)
        assert path.read_bytes() == data, path


def test_slice_buffers_are_reused(tmp_path):
    files = DirectFiles()
    data = random.Random(10).randbytes(8 * SLICE)
    write_sliced(tmp_path / "f", data, pieces_of(data, random.Random(11)), threads=1, files=files)
    # In order, on one thread: a piece across a slice's end begins the next before the first is
    # written, so two buffers serve all eight slices.
    assert len(files._spare) == 2


# ---- data_ranges: what of a slice is written ------------------------------------------------------


@given(
    length=st.integers(1, 64 * ALIGN),
    cuts=st.lists(st.integers(0, 64 * ALIGN), max_size=12),
    zero_flags=st.lists(st.booleans(), min_size=13, max_size=13),
)
def test_data_ranges_skip_only_aligned_blocks_of_zeros(length, cuts, zero_flags):
    edges = sorted({0, length} | {c for c in cuts if c < length})
    zeros = [(a, b - a) for (a, b), zero in zip(itertools.pairwise(edges), zero_flags, strict=False) if zero]
    is_zero = bytearray(length)
    for start, size in zeros:
        is_zero[start : start + size] = b"\1" * size
    ranges = data_ranges(zeros, length)
    written = bytearray(length)
    for start, end in ranges:
        assert start % ALIGN == 0 and (end % ALIGN == 0 or end == length) and start < end <= length
        written[start:end] = b"\1" * (end - start)
    for block in range(0, length, ALIGN):  # a block is skipped exactly when it lies wholly in zeros
        end = min(block + ALIGN, length)
        assert (not any(written[block:end])) == all(is_zero[block:end])


def test_buffers_are_this_processs_own_after_a_fork() -> None:
    # A restore forks its large files' lane (engine.forked) after the parent has used its buffers:
    # a shared mapping would let the child write into the parent's.
    files = DirectFiles()
    slice_buffer = files.take_slice_buffer()
    slice_buffer[:4] = b"mine"
    files.give_back(slice_buffer)
    read_buffer = files._buffer(ALIGN)
    read_buffer[:4] = b"mine"

    def work(progress: Progress) -> object:
        files.take_slice_buffer()[:4] = b"kids"
        files._buffer(ALIGN)[:4] = b"kids"
        return None

    Forked(work, SilentProgress()).wait()
    assert slice_buffer[:4] == b"mine" and read_buffer[:4] == b"mine"
