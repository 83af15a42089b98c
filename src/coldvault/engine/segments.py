"""Read files and pipes into a fixed pool of reusable buffers, and cut them into chunks without copying.

Why: a fresh buffer per chunk costs a copy and, worse, a page fault per 4 KiB
the first time it is touched (about 10 µs each on a virtual machine: seconds
per gigabyte).  A small pool of large segments is allocated once; chunks are
memoryviews into a segment, handed to worker threads as they are; a segment
returns to the pool when every chunk cut from it has been consumed.  The pool
size is the memory bound of a backup's data in flight.

Segments are bump-allocated: many small files share one segment.  A chunk
that the end of a full segment cut short (rather than content) is moved to the
start of the next segment and cut again with what follows, so the cut points
are exactly those of cutting the whole file at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from coldvault.repo.chunker import ChunkerParams


class Segment:
    __slots__ = ("buffer", "view", "pending", "retired")

    def __init__(self, size: int) -> None:
        self.buffer = bytearray(size)
        self.view = memoryview(self.buffer)
        self.pending = 0  # chunks cut from this segment and not yet consumed
        self.retired = False  # no more chunks will be cut from it


class SegmentPool:
    def __init__(self, count: int, size: int) -> None:
        self.size = size
        self._free = [Segment(size) for _ in range(count)]

    def take(self) -> Segment | None:
        if not self._free:
            return None
        segment = self._free.pop()
        segment.pending, segment.retired = 0, False
        return segment

    def chunk_consumed(self, segment: Segment) -> None:
        segment.pending -= 1
        if segment.retired and segment.pending == 0:
            self._free.append(segment)

    def retire(self, segment: Segment) -> None:
        segment.retired = True
        if segment.pending == 0:
            self._free.append(segment)


class SegmentedReader:
    """Yields (chunk view, its segment) for each file or pipe; one instance per backup run.

    ``wait_for_free`` is called while the pool is empty: it must consume finished
    work so that some segment comes back (the caller's pipeline does that).
    """

    def __init__(self, pool: SegmentPool, params: ChunkerParams, wait_for_free: Callable[[], None]) -> None:
        if pool.size <= params.max_size:
            raise ValueError("segments must be larger than the largest chunk")
        self._pool = pool
        self._chunker = params.new()
        self._wait_for_free = wait_for_free
        self._segment: Segment | None = None
        self._position = 0

    def chunks(self, fd: int, expected_size: int | None = None) -> Iterator[tuple[memoryview, Segment]]:
        """``expected_size``, where known (a regular file), ends reading once that many bytes came, without the
        read that would find the end: a file that grew meanwhile is the caller's to notice (fstat)."""
        segment = self._current()
        start = self._position
        remaining = expected_size if expected_size is not None else -1
        while True:
            if self._position == self._pool.size:
                segment, start = self._next_segment(carry_from=(segment, start))
            read = os.readv(fd, [segment.view[self._position :]])
            self._position += read
            remaining -= read
            done = not read or remaining == 0
            if not done and self._position < self._pool.size:
                continue  # pipes deliver a little at a time: cut only a full segment or at the end
            pieces = [c for c in self._chunker.cut_buf(segment.view[start : self._position])]
            if not done:  # the segment is full, not the file done: the last piece may be cut short
                held_back = pieces.pop() if pieces else None
                consumed = held_back.offset if held_back is not None else self._position - start
            else:
                consumed = self._position - start
            for piece in pieces:
                segment.pending += 1
                yield piece.data, segment
            start += consumed
            if done:
                return

    def close(self) -> None:
        if self._segment is not None:
            self._pool.retire(self._segment)
            self._segment = None

    def _current(self) -> Segment:
        if self._segment is None:
            self._segment = self._take()
            self._position = 0
        return self._segment

    def _next_segment(self, *, carry_from: tuple[Segment, int]) -> tuple[Segment, int]:
        """Retire the full segment; start a new one holding the bytes not yet cut into chunks."""
        old, start = carry_from
        new = self._take()
        carry = self._pool.size - start
        new.view[:carry] = old.view[start:]
        self._pool.retire(old)
        self._segment, self._position = new, carry
        return new, 0

    def _take(self) -> Segment:
        while (segment := self._pool.take()) is None:
            self._wait_for_free()
        return segment
