"""Bring archived packs back online before reading them, and say how long that took.

Archive tiers (S3 GLACIER and DEEP_ARCHIVE, Azure Archive) keep objects offline; a read
fails with Archived until a restore request has run its course, which takes minutes to
hours.  Only data packs are ever archived (see storage.policy), so what a restore needs
is known from the index before the first byte is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from coldvault.repo.blob import BlobKind
from coldvault.repo.repository import Repository
from coldvault.repo.tree import FILE, Node
from coldvault.storage.handle import Handle, Kind


@dataclass(frozen=True)
class Warmup:
    packs: int  # archived packs that had to be warmed up
    waited: float  # seconds spent waiting for them


def packs_needed(repo: Repository, nodes: Iterable[Node]) -> Iterator[Handle]:
    """The data packs the files among ``nodes`` read from, lazily: nothing is decoded unless asked for."""
    for node in nodes:
        if node.type == FILE:
            for chunk_id in node.chunks:
                location = repo.index.lookup(BlobKind.DATA, chunk_id)
                if location is not None:  # a missing chunk is the restore's to report, by file name
                    yield Handle(Kind.DATA, location.pack)


def warm_up(
    repo: Repository,
    needed: Iterable[Handle],
    *,
    report: Callable[[str], None],
    poll_interval: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> Warmup:
    """Request warm-up of the archived packs among ``needed`` and wait until all are readable.

    ``needed`` is consumed only where warm-up exists, so a restore from a local target does not
    decode its listing twice.
    """
    store = repo.store
    if not store.capabilities.needs_warmup:
        return Warmup(0, 0.0)
    needed = set(needed)
    if not needed:
        return Warmup(0, 0.0)
    # One listing tells the storage class of every pack; far cheaper than a HEAD per pack.
    archived = [info.handle for info in store.list(Kind.DATA) if info.archived and info.handle in needed]
    if not archived:
        return Warmup(0, 0.0)
    started = monotonic()
    pending = [h for h, ready in store.warmup_status(archived).items() if not ready]
    if pending:
        store.warmup(pending)
        report(f"{len(pending)} of {len(needed)} packs are in archive storage; warm-up requested, waiting")
    while pending:
        pending = [h for h, ready in store.warmup_status(pending).items() if not ready]
        if pending:
            done = len(archived) - len(pending)
            report(f"warm-up: {done}/{len(archived)} packs readable after {_duration(monotonic() - started)}")
            sleep(poll_interval)
    waited = monotonic() - started
    report(f"warmed up {len(archived)} archived packs in {_duration(waited)}")
    return Warmup(len(archived), waited)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    minutes = seconds / 60
    return f"{minutes:.0f}m" if minutes < 120 else f"{minutes / 60:.1f}h"
