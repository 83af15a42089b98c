"""Content-defined chunking (FastCDC 2020) with a gear table keyed per repository.

pyfastcdc is pinned exactly: a release that moved cut points would silently
halve deduplication against existing snapshots.  tests/test_chunker.py keeps a
vector of cut points so such a change fails loudly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pyfastcdc import FastCDC

NORMALIZED_CHUNKING = 1


@dataclass(frozen=True)
class ChunkerParams:
    min_size: int
    avg_size: int
    max_size: int
    seed: int

    def new(self) -> FastCDC:
        """A fresh chunker; FastCDC objects must not be shared between threads."""
        return FastCDC(
            self.avg_size,
            min_size=self.min_size,
            max_size=self.max_size,
            normalized_chunking=NORMALIZED_CHUNKING,
            seed=self.seed,
        )


def cut_buffer(chunker: FastCDC, data: bytes) -> Iterator[memoryview]:
    """Chunks of an in-memory buffer, as views into it (no copy).  Files and pipes go through
    coldvault.engine.segments, which cuts the same points without holding a whole file."""
    for chunk in chunker.cut_buf(data):
        yield chunk.data
