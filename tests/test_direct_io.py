"""Direct I/O for packs on local targets: exact bytes for any size and range, and a buffered fallback."""

from __future__ import annotations

import errno
import os
import random

import pytest

from coldvault.storage import direct_io
from coldvault.storage.direct_io import ALIGN, DirectFiles

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


def test_writing_over_an_existing_file_is_refused(tmp_path):
    path = tmp_path / "pack"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        DirectFiles().write_new(path, b"x" * ALIGN * 3, 0o444)
    assert path.read_bytes() == b"old"


def test_a_filesystem_refusing_direct_io_gets_buffered_io(tmp_path, monkeypatch):
    # Mocked: the kernel's refusal (EINVAL for O_DIRECT, as tmpfs on older kernels and some FUSE
    # filesystems answer) cannot be produced on demand on this machine's filesystems.
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if flags & direct_io._O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    files = DirectFiles()
    data = random.Random(3).randbytes(5 << 20)
    files.write_new(tmp_path / "pack", data, 0o444)
    assert files.read(tmp_path / "pack", 12345, 99999) == data[12345 : 12345 + 99999]
    assert (tmp_path / "pack").read_bytes() == data


def test_a_write_refused_halfway_is_written_again_buffered(tmp_path, monkeypatch):
    # Mocked: a device that accepts O_DIRECT at open but refuses the alignment at write time.
    real_pwrite = os.pwrite
    calls = []

    def refusing_pwrite(fd, data, offset):
        calls.append(offset)
        if len(calls) == 2:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", refusing_pwrite)
    data = random.Random(4).randbytes(20 << 20)
    DirectFiles().write_new(tmp_path / "pack", data, 0o444)
    assert (tmp_path / "pack").read_bytes() == data


def test_other_errors_are_not_mistaken_for_a_refusal(tmp_path):
    with pytest.raises(FileNotFoundError):
        DirectFiles().read(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        DirectFiles().write_new(tmp_path / "no" / "folder", b"x", 0o444)
