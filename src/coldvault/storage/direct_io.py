"""Write and read files around the page cache (O_DIRECT), where the filesystem allows it.

Packs on a local target are written once and read rarely, so caching them buys nothing and
costs three things direct I/O avoids:
- a backup would evict the host's working set (the database being backed up) from the page
  cache to make room for data nobody reads soon;
- ``check``, ``scrub`` and drills, run after a backup, would verify the cached copy of what was
  written, not what the device holds;
- the kernel would copy every byte into freshly allocated cache pages (on virtual machines that
  return free memory to the host, each such page costs a fault in the hypervisor too).

Direct I/O needs the buffer, the file offset and the length aligned to the device's block size:
bytes pass through a page-aligned buffer kept per thread and reused, and a write's padded tail
is cut off with ftruncate before the file is synced.  Where the filesystem refuses O_DIRECT
(tmpfs on older kernels, some FUSE filesystems, other systems than Linux), the same calls do
ordinary buffered I/O.

Restores use the same path for large files (SlicedWriter): their bytes are written once and
are usually not read again soon, and a restore of a whole host should not push out the page
cache of what runs there while it restores.

What a restore reads is the exception (read_on): runs of chunks, a range of a pack at a time,
mostly in the order they lie in the pack.  A direct read waits for the device with nothing
else in flight, while through the page cache the kernel fetches what follows meanwhile: on
the benchmark machine a 1 GiB restore took a tenth less time (docs/BENCHMARKS.md).  Whole
objects, which is how check, scrub and a drill's rotation verify packs, are still read around
the cache.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import threading
from dataclasses import dataclass, field

from coldvault.storage.protocol import BytesLike

ALIGN = 4096  # a multiple of every common logical block size (512 and 4096)
SLICE = 4 << 20  # bytes per direct write: bounds each buffer; 4 MiB already reach full speed here
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_fadvise = getattr(os, "posix_fadvise", None)  # not on macOS: there, no read-ahead hint


def _anonymous(size: int) -> mmap.mmap:
    """Page-aligned memory of this process's own: private, where mmap's default would share it with
    a child forked later (engine.forked), and both would write into the same buffer."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)


def _down(n: int) -> int:
    return n & ~(ALIGN - 1)


def _up(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


class DirectFiles:
    """Direct I/O on one directory tree, falling back to buffered I/O once the filesystem refuses it."""

    def __init__(self) -> None:
        self._enabled = _O_DIRECT != 0
        self._buffers = threading.local()
        self._spare: list[mmap.mmap] = []  # slice buffers of finished SlicedWriter slices, for the next ones
        self._spare_lock = threading.Lock()

    def write_new(self, path: str | os.PathLike[str], data: BytesLike, mode: int, *, direct: bool = True) -> None:
        """Create ``path`` (it must not exist) holding ``data``, synced to the device; ``direct=False``
        for files that are read often (they should stay cached)."""
        view = memoryview(data).cast("B")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            direct = direct and self.make_direct(fd)
            if direct:
                buffer = self._buffer(min(max(_up(len(view)), ALIGN), SLICE))
            for start in range(0, len(view), SLICE):
                piece = view[start : start + SLICE]
                if direct:
                    buffer[: len(piece)] = piece
                    direct = self.write_aligned(fd, buffer, 0, len(piece), start)
                else:
                    pwrite_all(fd, piece, start)
            os.ftruncate(fd, len(view))  # cuts the padding of the last direct write
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(
        self, path: str | os.PathLike[str], offset: int = 0, length: int | None = None, *, direct: bool = True
    ) -> bytes:
        """``length`` bytes from ``offset`` (all to the end when None); fewer where the file ends first."""
        fd = os.open(path, os.O_RDONLY)
        try:
            if direct and self.make_direct(fd):
                try:
                    return self._read_direct(fd, offset, length)
                except OSError as exc:
                    self._refused(exc, fd)
            with os.fdopen(fd, "rb", closefd=False) as f:
                f.seek(offset)
                return f.read() if length is None else f.read(length)
        finally:
            os.close(fd)

    def make_direct(self, fd: int) -> bool:
        """Switch ``fd`` to direct I/O; False where the filesystem refuses (and for every file after)."""
        if not self._enabled:
            return False
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | _O_DIRECT)
        except OSError as exc:
            self._refused(exc, fd)
            return False
        return True

    def write_aligned(self, fd: int, buffer: mmap.mmap, start: int, length: int, offset: int) -> bool:
        """Write ``length`` bytes of ``buffer`` from ``start`` at ``offset`` (both aligned) through a
        direct ``fd``, padded to the alignment with zeros (a padded tail past the file's end is the
        caller's to cut off with ftruncate).  If the filesystem refuses after all, write the same
        bytes buffered and return False: ``fd`` is buffered from then on."""
        end = start + length
        padded = _up(end)
        buffer[end:padded] = bytes(padded - end)
        try:
            pwrite_all(fd, memoryview(buffer)[start:padded], offset)
            return True
        except OSError as exc:
            self._refused(exc, fd)
        pwrite_all(fd, memoryview(buffer)[start:end], offset)
        return False

    def _read_direct(self, fd: int, offset: int, length: int | None) -> bytes:
        end = os.fstat(fd).st_size if length is None else offset + length
        first = _down(offset)
        if end <= offset:
            return b""
        buffer = self._buffer(_up(end) - first)
        view = memoryview(buffer)
        got = first
        while got < end:  # a direct read ends early only at the end of the file
            n = os.preadv(fd, [view[got - first : _up(end) - first]], got)
            if n == 0:
                break
            got += n
        return buffer[offset - first : min(got, end) - first]

    def _buffer(self, size: int) -> mmap.mmap:
        """This thread's page-aligned buffer, grown to ``size``; reused so its pages are touched once."""
        buffer: mmap.mmap | None = getattr(self._buffers, "buffer", None)
        if buffer is None or len(buffer) < size:
            if buffer is not None:
                buffer.close()
            buffer = self._buffers.buffer = _anonymous(_up(size))
        return buffer

    def take_slice_buffer(self) -> mmap.mmap:
        with self._spare_lock:
            if self._spare:
                return self._spare.pop()
        return _anonymous(SLICE)

    def give_back(self, buffer: mmap.mmap) -> None:
        with self._spare_lock:
            self._spare.append(buffer)

    def close(self) -> None:
        """Unmap the spare slice buffers now rather than whenever the collector gets to them."""
        with self._spare_lock:
            spare, self._spare = self._spare, []
        for buffer in spare:
            # A write that failed may still hold a view of its buffer (in the exception's frames):
            # that one is left to the collector.
            with contextlib.suppress(BufferError):
                buffer.close()

    def _refused(self, exc: OSError, fd: int) -> None:
        """EINVAL means this filesystem (or its alignment) does not do direct I/O: stop trying, and
        leave ``fd`` buffered."""
        if exc.errno != errno.EINVAL:
            raise exc
        self._enabled = False
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_DIRECT)


@dataclass
class _Slice:
    length: int  # of the file's bytes in this slice: SLICE, or less for the last
    missing: int
    buffer: mmap.mmap | None = None  # taken when the first byte other than zero arrives
    zeros: list[tuple[int, int]] = field(default_factory=list)  # (start, length) of the pieces of zeros


class SlicedWriter:
    """Writes a new file of known size from pieces that arrive in any order, from any thread, each
    byte once: the pieces are gathered into aligned slices, and each slice is written with one
    direct write as soon as all of its bytes are in.  Aligned blocks that received only zeros are
    not written and stay holes: a sparse file stays sparse.  Memory: one slice buffer per slice
    begun and not yet complete, so pieces should arrive roughly in order.  The caller gives the
    file its length afterwards (ftruncate), which also cuts the padding of the last slice."""

    def __init__(self, files: DirectFiles, fd: int, size: int) -> None:
        self._files = files
        self._fd = fd
        self._size = size
        self._direct = files.make_direct(fd)
        self._slices: dict[int, _Slice] = {}
        self._missing = size
        self._lock = threading.Lock()

    @property
    def missing(self) -> int:
        """Bytes of the file not written yet."""
        return self._missing

    def write(self, data: BytesLike, offset: int, *, zeros: bool = False) -> None:
        """Place ``data`` at ``offset``; ``zeros`` says it holds only zero bytes (the caller knows)."""
        view = memoryview(data).cast("B")
        if offset < 0 or offset + len(view) > self._size:
            raise ValueError(f"{len(view)} bytes at {offset} do not fit a file of {self._size}")
        complete: list[tuple[int, _Slice]] = []
        with self._lock:
            self._missing -= len(view)
            while view:
                index, at = divmod(offset, SLICE)
                piece, view = view[: SLICE - at], view[SLICE - at :]
                part = self._slices.get(index)
                if part is None:
                    length = min(SLICE, self._size - index * SLICE)
                    part = self._slices[index] = _Slice(length, length)
                if zeros:
                    part.zeros.append((at, len(piece)))
                if part.buffer is None and not zeros:
                    part.buffer = self._files.take_slice_buffer()
                    for start, length in part.zeros:  # a reused buffer holds an earlier slice's bytes
                        part.buffer[start : start + length] = bytes(length)
                if part.buffer is not None:
                    part.buffer[at : at + len(piece)] = piece
                part.missing -= len(piece)
                if part.missing == 0:
                    complete.append((index, self._slices.pop(index)))
                offset += len(piece)
        for index, part in complete:  # outside the lock: other workers fill other slices meanwhile
            self._flush(index * SLICE, part)

    def _flush(self, offset: int, part: _Slice) -> None:
        if part.buffer is None:
            return  # only zeros: a hole
        try:
            for start, end in data_ranges(part.zeros, part.length):
                if self._direct:
                    self._direct = self._files.write_aligned(self._fd, part.buffer, start, end - start, offset + start)
                else:
                    pwrite_all(self._fd, memoryview(part.buffer)[start:end], offset + start)
        finally:
            self._files.give_back(part.buffer)


def data_ranges(zeros: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """The (start, end) ranges of ``length`` bytes to write, given the (start, length) pieces known
    to be zeros: everything except the aligned blocks lying wholly inside zeros.  Every start is
    aligned, and every end too except one at ``length``."""
    holes: list[tuple[int, int]] = []
    merged: list[list[int]] = []
    for start, size in sorted(zeros):  # touching pieces of zeros make one run
        if merged and merged[-1][1] == start:
            merged[-1][1] += size
        else:
            merged.append([start, start + size])
    for start, end in merged:
        first, last = _up(start), _down(end) if end < length else end
        if first < last:
            holes.append((first, last))
    ranges, at = [], 0
    for start, end in holes:
        if at < start:
            ranges.append((at, start))
        at = end
    if at < length:
        ranges.append((at, length))
    return ranges


def read_on(path: str | os.PathLike[str], offset: int, length: int) -> bytes:
    """``length`` bytes from ``offset`` (fewer where the file ends first) through the page cache, and
    the kernel asked to fetch as many again after them (POSIX_FADV_WILLNEED; it does not wait).
    Whoever reads on through the file finds the next bytes on their way in, whatever the device's
    own read-ahead (128 KiB by default: less than one chunk); a reader of one small range costs
    the device as much again, no more."""
    fd = os.open(path, os.O_RDONLY)
    try:
        pieces = []
        at, left = offset, length
        while left > 0 and (piece := os.pread(fd, left, at)):  # short only at the end of the file
            pieces.append(piece)
            at, left = at + len(piece), left - len(piece)
        if _fadvise is not None and at > offset:
            _fadvise(fd, at, at - offset, os.POSIX_FADV_WILLNEED)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)
    finally:
        os.close(fd)


def pwrite_all(fd: int, data: BytesLike, offset: int) -> None:
    """Write all of ``data`` at ``offset``; pwrite may write less than asked."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
