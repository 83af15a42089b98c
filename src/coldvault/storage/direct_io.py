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
"""

from __future__ import annotations

import errno
import mmap
import os
import threading

from coldvault.storage.protocol import BytesLike

ALIGN = 4096  # a multiple of every common logical block size (512 and 4096)
_WRITE_SLICE = 4 << 20  # bytes per direct write: bounds the write buffer; 4 MiB already reach full speed here
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def _down(n: int) -> int:
    return n & ~(ALIGN - 1)


def _up(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


class DirectFiles:
    """Direct I/O on one directory tree, falling back to buffered I/O once the filesystem refuses it."""

    def __init__(self) -> None:
        self._enabled = _O_DIRECT != 0
        self._buffers = threading.local()

    def write_new(self, path: str | os.PathLike[str], data: BytesLike, mode: int, *, direct: bool = True) -> None:
        """Create ``path`` (it must not exist) holding ``data``, synced to the device; ``direct=False``
        for files that are read often (they should stay cached)."""
        if direct and self._enabled:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_DIRECT, mode)
            except OSError as exc:
                self._refused(exc)
            else:
                try:
                    self._write_direct(fd, memoryview(data).cast("B"))
                    os.fsync(fd)
                    return
                except OSError as exc:
                    self._refused(exc)
                finally:
                    os.close(fd)
                os.unlink(path)  # the direct attempt left a partial file: start again, buffered
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def read(
        self, path: str | os.PathLike[str], offset: int = 0, length: int | None = None, *, direct: bool = True
    ) -> bytes:
        """``length`` bytes from ``offset`` (all to the end when None); fewer where the file ends first."""
        if direct and self._enabled:
            try:
                fd = os.open(path, os.O_RDONLY | _O_DIRECT)
            except OSError as exc:
                self._refused(exc)
            else:
                try:
                    return self._read_direct(fd, offset, length)
                except OSError as exc:
                    self._refused(exc)
                finally:
                    os.close(fd)
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read() if length is None else f.read(length)

    def _write_direct(self, fd: int, view: memoryview) -> None:
        buffer = self._buffer(min(_up(len(view)), _WRITE_SLICE))
        for start in range(0, len(view), _WRITE_SLICE):
            piece = view[start : start + _WRITE_SLICE]
            buffer[: len(piece)] = piece
            padded = _up(len(piece))  # the bytes past the data are cut off below
            written = os.pwrite(fd, memoryview(buffer)[:padded], start)
            if written != padded:
                raise OSError(errno.EIO, "short direct write")
        os.ftruncate(fd, len(view))

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
            buffer = self._buffers.buffer = mmap.mmap(-1, _up(size))
        return buffer

    def _refused(self, exc: OSError) -> None:
        """EINVAL means this filesystem (or its alignment) does not do direct I/O: stop trying."""
        if exc.errno != errno.EINVAL:
            raise exc
        self._enabled = False
