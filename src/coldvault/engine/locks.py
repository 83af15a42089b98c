"""Locks long enough for what is kept (../shared/DESIGN.md §3, docs/FORMAT.md §11.4).

A snapshot is retained until its time plus the target's lock days, and every object it needs
must stay locked at least that long: its packs, an index object describing each, the config
and the key slots.  Deduplication is what makes this work: today's snapshot reuses packs
written months ago, locked only until then plus the lock days.  After those locks end, an
insider with delete rights could remove the packs and break today's snapshot.

``required_locks`` works out, for one target, how long each object must stay locked;
``maintain`` extends every lock that falls short, and never shortens one.  It extends the
policy's ``ahead`` beyond the need, so that daily backups do not cost a request per shared
object per day: a shared object is extended about once every ``ahead``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from coldvault.config.model import Target
from coldvault.errors import ColdvaultError, IntegrityError, NotFound
from coldvault.repo.blob import BlobKind
from coldvault.repo.index import Index
from coldvault.repo.manifest import Snapshot
from coldvault.repo.repository import PACK_KINDS, Repository
from coldvault.repo.tree import FILE
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import Store

_PARALLEL = 8  # lock look-ups and extensions in flight per target


@dataclass(frozen=True)
class LockPolicy:
    mode: str  # "compliance" or "governance"
    days: int
    ahead: timedelta = timedelta(0)  # how far past the need maintain extends a lock

    @classmethod
    def of(cls, target: Target) -> LockPolicy | None:
        """The target's lock, or None where it writes unlocked objects (a local directory, lock = false)."""
        if target.type == "local" or target.lock is None:
            return None
        return cls(target.lock.mode, target.lock.days, timedelta(days=target.lock.extend_ahead_days))


def snapshot_retained_until(snapshot: Snapshot, days: int) -> datetime:
    """How long a snapshot is protected on a target locking for ``days``: from its time, the start
    of its backup, so that packs its own backup wrote are locked long enough from the start."""
    return snapshot.time + timedelta(days=days)


Chunk = tuple[BlobKind, bytes]


class References:
    """The objects each snapshot needs.  Raises IntegrityError when a chunk is in no index: a
    snapshot that cannot be resolved must stop anything that would delete or leave unlocked."""

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    def chunks(self, snapshot: Snapshot) -> set[Chunk]:
        """Every chunk it reads: its listing's and its files'."""
        chunks: set[Chunk] = {(BlobKind.TREE, c) for c in snapshot.listing}
        for node in self._repo.listing(snapshot):
            if node.type == FILE:
                chunks.update((BlobKind.DATA, c) for c in node.chunks)
        return chunks

    def packs(self, snapshot: Snapshot) -> set[Handle]:
        return packs_holding(self._repo.index, self.chunks(snapshot), needed_by=f"snapshot {snapshot.id[:12]}")

    def objects(self, snapshot: Snapshot) -> set[Handle]:
        """Its packs, an index object describing each, the config and every key slot."""
        packs = self.packs(snapshot)
        described = {self._repo.index.index_object(h.name) for h in packs}
        return packs | {Handle(Kind.INDEX, name) for name in described if name} | self._essentials

    @cached_property
    def _essentials(self) -> set[Handle]:
        """The config and every key slot: needed by every snapshot, listed once."""
        return {Handle(Kind.CONFIG), *(info.handle for info in self._repo.store.list(Kind.KEY))}


def pack_holding(index: Index, chunk: Chunk) -> Handle | None:
    """The pack a reader of ``index`` takes the chunk from."""
    location = index.lookup(*chunk)
    return None if location is None else Handle(PACK_KINDS[chunk[0]], location.pack)


def packs_holding(index: Index, chunks: Iterable[Chunk], *, needed_by: str) -> set[Handle]:
    """The packs a reader of ``index`` takes the chunks from; IntegrityError if it cannot place one."""
    packs = set()
    for chunk in chunks:
        pack = pack_holding(index, chunk)
        if pack is None:
            raise IntegrityError(
                f"{needed_by} needs chunk {chunk[1].hex()[:16]}, which no index lists; run 'coldvault check'"
            )
        packs.add(pack)
    return packs


def required_locks(
    snapshots: Iterable[Snapshot], needs: dict[str, set[Handle]], days: int
) -> dict[Handle, tuple[datetime, str]]:
    """Object → (how long it must stay locked, the snapshot that needs it longest)."""
    required: dict[Handle, tuple[datetime, str]] = {}
    for snapshot in snapshots:
        need = (snapshot_retained_until(snapshot, days), snapshot.id)
        for handle in needs[snapshot.id] | {Handle(Kind.SNAPSHOT, snapshot.id)}:
            if handle not in required or required[handle] < need:
                required[handle] = need
    return required


@dataclass
class TargetLocks:
    name: str
    checked: int = 0
    extended: list[str] = field(default_factory=list)  # paths whose lock was (or, dry, would be) extended
    short: list[str] = field(default_factory=list)  # human lines: what was locked too short, and until when
    missing: list[str] = field(default_factory=list)  # needed but not on this target: 'coldvault sync'
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the target was not looked at

    @property
    def ok(self) -> bool:
        return not self.errors and not self.missing


def maintain_target(
    name: str,
    store: Store,
    policy: LockPolicy | None,
    snapshots: list[Snapshot],
    needs: dict[str, set[Handle]],
    *,
    now: datetime,
    dry_run: bool = False,
    report: Callable[[str], None] = lambda _: None,
) -> TargetLocks:
    """Extend, on one target, every lock shorter than a retained snapshot there needs."""
    result = TargetLocks(name)
    if policy is None:
        result.skipped = "writes unlocked objects"
        return result
    try:
        present = {info.handle.name for info in store.list(Kind.SNAPSHOT)}
    except ColdvaultError as exc:
        result.errors.append(str(exc))
        return result
    # A snapshot this target lacks (it lags) needs nothing here yet: sync brings its objects, locked anew.
    required = required_locks([s for s in snapshots if s.id in present], needs, policy.days)
    report(f"{name}: checking the locks of {len(required)} objects")

    def check(handle: Handle) -> None:
        need, snapshot = required[handle]
        try:
            info = store.head(handle)
        except NotFound:
            result.missing.append(f"{handle} (needed by snapshot {snapshot[:12]})")
            return
        result.checked += 1
        if info.retain_until is not None and info.retain_until >= need:
            return
        result.short.append(
            f"{handle} was locked until {info.retain_until.isoformat() if info.retain_until else 'never'};"
            f" snapshot {snapshot[:12]} needs {need.isoformat()}"
        )
        if not dry_run:
            store.retain(handle, max(need, now) + policy.ahead)
        result.extended.append(str(handle))

    def guarded(handle: Handle) -> None:
        try:
            check(handle)
        except ColdvaultError as exc:
            result.errors.append(f"{handle}: {exc}")

    with ThreadPoolExecutor(_PARALLEL, thread_name_prefix="coldvault-locks") as pool:
        list(pool.map(guarded, sorted(required, key=str)))
    for found in (result.extended, result.short, result.missing, result.errors):
        found.sort()
    return result
