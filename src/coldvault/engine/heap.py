"""Hand the memory the C allocator keeps after a free back to the system.

glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB), so after the first
whole pack (~30 MiB) is freed, the next ones come from the reading thread's heap, which keeps what is
freed there for its next allocations.  Verifying packs side by side, each worker's heap grew to hold
several packs: `check --read-data` of the bench repository peaked at 254 MB instead of ~200 MB, and
one repetition of the bench at 302 MB.  Where the allocator has no such call (musl, macOS), nothing.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


def give_back_freed_memory() -> None:
    """Return the free pages of every thread's heap to the system (glibc's malloc_trim)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None
