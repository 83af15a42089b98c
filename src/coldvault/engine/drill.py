"""Restore drills: prove, target by target, that sampled files come back byte for byte and stay locked.

The sample is derived from a seed that the report records: for every source, its latest
snapshot plus ``older`` randomly chosen older ones; in each, up to ``files`` files and one
random byte range of each.  The same seed and the same snapshot list give the same sample,
so an auditor can re-derive it.  Every target is drilled on its own, with no local cache:
its snapshots, listings, index and packs all come from it, every chunk is authenticated and
proven by its keyed hash, and every pack read has its lock read back from the provider.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from coldvault.engine.check import verify_packs
from coldvault.engine.full_drill import FullDrill
from coldvault.engine.locks import LockPolicy, snapshot_retained_until
from coldvault.engine.warmup import warm_up
from coldvault.errors import ColdvaultError, IntegrityError
from coldvault.repo.blob import BlobKind
from coldvault.repo.index import Location, PackRecord
from coldvault.repo.manifest import Snapshot
from coldvault.repo.report import figures
from coldvault.repo.repository import PACK_KINDS, Repository
from coldvault.repo.tree import FILE, Node
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import Store

_RANGE = 4 << 20  # the most bytes sampled from one file
_CLOCK_SLACK = timedelta(hours=1)  # between the snapshot's time and its manifest's upload


@dataclass(frozen=True)
class Sampling:
    files: int = 8  # per sampled snapshot
    older: int = 2  # older snapshots per source, besides the latest


@dataclass(frozen=True)
class Coverage:
    """Whole packs read per drill, so that every pack of a target is read within ``days``."""

    days: int
    last_read: dict[str, str]  # pack name → when a drill last read it on this target (ISO 8601)
    interval_days: float  # since the previous drill: how much of the period this drill stands for


@dataclass(frozen=True)
class Sample:
    """A byte range of a file, the file named by its position among the snapshot's regular files in
    listing order: a report travels in plaintext, and file names are the repository's secret."""

    snapshot: str
    source: str
    file: int
    offset: int
    length: int


@dataclass
class TargetDrill:
    name: str
    errors: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    bytes: int = 0
    objects: int = 0  # chunks read
    first_byte_s: float | None = None
    duration_s: float = 0.0
    locks_checked: int = 0
    lock_violations: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)  # ids the target shows
    packs_read: dict[Handle, set[str]] = field(default_factory=dict)  # → the snapshots it was read for
    warmup_s: float = 0.0
    verified: set[str] = field(default_factory=set)  # snapshots whose every sample read back whole
    whole_packs: list[str] = field(default_factory=list)  # read whole for coverage, and verified
    coverage: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.lock_violations

    @property
    def throughput(self) -> float:
        """Bytes per second of sampled content read back."""
        return self.bytes / self.duration_s if self.duration_s else 0.0


def choose_snapshots(snapshots: list[Snapshot], sampling: Sampling, rng: random.Random) -> list[Snapshot]:
    """The latest of every source and up to ``sampling.older`` older ones, chosen with ``rng``."""
    chosen = []
    for source in sorted({s.source for s in snapshots}):
        of_source = sorted((s for s in snapshots if s.source == source), key=lambda s: (s.time, s.id))
        older = of_source[:-1]
        chosen.append(of_source[-1])
        chosen += sorted(rng.sample(older, min(sampling.older, len(older))), key=lambda s: (s.time, s.id))
    return chosen


def choose_ranges(files: list[Node], count: int, rng: random.Random) -> list[tuple[int, Node, int, int]]:
    """Up to ``count`` files (non-empty ones if any) and a random byte range of each, as
    (position among ``files``, file, offset, length)."""
    positions = [i for i, n in enumerate(files) if n.size > 0] or list(range(len(files)))
    ranges = []
    for position in sorted(rng.sample(positions, min(count, len(positions)))):
        node = files[position]
        length = min(node.size, _RANGE)
        offset = rng.randrange(node.size - length + 1) if node.size > length else 0
        ranges.append((position, node, offset, length))
    return ranges


def drill_target(
    name: str,
    repo: Repository,
    store: Store,
    snapshot_ids: list[str],
    seed: int,
    sampling: Sampling,
    lock: LockPolicy | None,
    now: datetime,
    coverage: Coverage,
    *,
    report: Callable[[str], None],
    workers: int,
    poll_interval: float = 60.0,
    monotonic: Callable[[], float] = time.monotonic,
) -> TargetDrill:
    """Drill one target: ``repo`` must read from ``store`` alone, with no cache in between; ``workers``
    of the rotation's whole packs are read at a time, as a restore reads side by side."""
    result = TargetDrill(name)
    started = monotonic()
    try:
        shown = {s.id: s for s in repo.snapshots()}
        result.snapshots = sorted(shown)
        drilled = [shown[i] for i in snapshot_ids if i in shown]
        result.errors += [f"snapshot {i[:12]} is missing on {name}" for i in snapshot_ids if i not in shown]
        planned = [(snapshot, _plan(repo, snapshot, seed, sampling)) for snapshot in drilled]
        needed = {
            h for _, ranges in planned for _, node, offset, length in ranges for h in _packs(repo, node, offset, length)
        }
        rotation = _rotation(repo, coverage, random.Random(f"{seed}:{name}"))
        needed |= {Handle(PACK_KINDS[p.kind], p.name) for p in rotation}
        result.warmup_s = warm_up(repo, needed, report=report, poll_interval=poll_interval, monotonic=monotonic).waited
        for snapshot, of_snapshot in planned:
            errors = len(result.errors)
            for position, node, offset, length in of_snapshot:
                _drill_range(result, repo, snapshot, position, node, offset, length, started, monotonic)
            if len(result.errors) == errors:
                result.verified.add(snapshot.id)
        _read_whole(result, repo, rotation, workers)
        result.coverage = _coverage_figures(repo, coverage, result.whole_packs, now)
        result.errors += [f"{name}: {message}" for message in repo.skipped]
        _check_locks(result, store, lock, drilled, now)
        _check_rotation_locks(result, store, lock, rotation, now)
    except ColdvaultError as exc:
        result.errors.append(str(exc))
    result.duration_s = monotonic() - started
    return result


def _rotation(repo: Repository, coverage: Coverage, rng: random.Random) -> list[PackRecord]:
    """This drill's share of the packs: never read first, then the longest ago."""
    packs = sorted(repo.index.packs(), key=lambda p: p.name)
    share = min(1.0, max(coverage.interval_days, 0.0) / coverage.days)
    count = math.ceil(len(packs) * share)
    rng.shuffle(packs)
    packs.sort(key=lambda p: coverage.last_read.get(p.name, ""))
    return packs[:count]


def _read_whole(result: TargetDrill, repo: Repository, packs: list[PackRecord], workers: int) -> None:
    def take(pack: PackRecord, problem: ColdvaultError | None) -> None:
        if problem is not None:
            result.errors.append(f"pack {pack.name[:12]}: {problem}")
            return
        result.bytes += pack.length
        result.whole_packs.append(pack.name)

    verify_packs(repo, packs, workers=workers, take=take)


def _coverage_figures(repo: Repository, coverage: Coverage, read_now: list[str], now: datetime) -> dict[str, Any]:
    since = (now - timedelta(days=coverage.days)).isoformat()
    packs = [p.name for p in repo.index.packs()]
    recent = {p for p in packs if coverage.last_read.get(p, "") >= since} | set(read_now)
    return {
        "days": coverage.days,
        "packs": len(packs),
        "read_now": len(read_now),
        "read_within_days": len(recent),
        "fraction": round(len(recent) / len(packs), 4) if packs else 1.0,
    }


def _plan(repo: Repository, snapshot: Snapshot, seed: int, sampling: Sampling) -> list[tuple[int, Node, int, int]]:
    # Seeded by snapshot, so every target samples the same files: their figures compare.
    files = [n for n in repo.listing(snapshot) if n.type == FILE]
    return choose_ranges(files, sampling.files, random.Random(f"{seed}:{snapshot.id}"))


def _covering(repo: Repository, node: Node, offset: int, length: int) -> Iterator[tuple[bytes, Location]]:
    """The chunks of a file that hold bytes of [offset, offset + length)."""
    position = 0
    for chunk_id in node.chunks:
        location = repo.index.lookup(BlobKind.DATA, chunk_id)
        if location is None:
            raise IntegrityError(f"chunk {chunk_id.hex()[:16]} is not in the index")
        end = position + location.raw_length
        if end > offset and position < offset + length:
            yield chunk_id, location
        position = end
        if position >= offset + length:
            return


def _packs(repo: Repository, node: Node, offset: int, length: int) -> Iterator[Handle]:
    try:
        for _, location in _covering(repo, node, offset, length):
            yield Handle(Kind.DATA, location.pack)
    except IntegrityError:
        return  # reported, by file name, when the range is read


def _drill_range(
    result: TargetDrill,
    repo: Repository,
    snapshot: Snapshot,
    position: int,
    node: Node,
    offset: int,
    length: int,
    started: float,
    monotonic: Callable[[], float],
) -> None:
    """Read the chunks covering the range; each is authenticated and proven by its keyed hash."""
    where = f"snapshot {snapshot.id[:12]}, file #{position}"
    result.samples.append(Sample(snapshot.id, snapshot.source, position, offset, length))
    got = 0
    try:
        for chunk_id, location in _covering(repo, node, offset, length):
            result.packs_read.setdefault(Handle(Kind.DATA, location.pack), set()).add(snapshot.id)
            data = repo.read_blob(BlobKind.DATA, chunk_id)
            if result.first_byte_s is None:
                result.first_byte_s = monotonic() - started
            result.bytes += len(data)
            result.objects += 1
            got += len(data)
    except ColdvaultError as exc:
        result.errors.append(f"{where}: {exc}")
        return
    if got < length:
        result.errors.append(f"{where}: its chunks hold {got} bytes of the {length} sampled")


def _check_locks(
    result: TargetDrill, store: Store, lock: LockPolicy | None, drilled: list[Snapshot], now: datetime
) -> None:
    """Read back the lock of every manifest drilled and of every pack the sample read.

    Every object must be locked in the policy's mode and still under retention, and at least as
    long as every drilled snapshot that needs it: a snapshot is retained ``days`` from its time
    (engine.locks).  A pack shared with older snapshots is the case to watch: 'coldvault
    maintain' extends such locks, and a drill that finds one too short fails."""
    if lock is None:
        return
    retained = {s.id: snapshot_retained_until(s, lock.days) - _CLOCK_SLACK for s in drilled}
    needs = {Handle(Kind.SNAPSHOT, s): {s} for s in retained}
    needs.update(sorted(result.packs_read.items(), key=lambda item: item[0].name))
    for handle, needed_by in needs.items():
        until = _lock_of(result, store, handle, lock, now)
        need, snapshot = max((retained[s], s) for s in needed_by)
        if until is not None and until < need:
            why = "the policy's" if handle.kind is Kind.SNAPSHOT else "what a snapshot that shares it needs"
            result.lock_violations.append(
                f"{handle} is retained until {until.isoformat()}, shorter than {why}: {lock.days} days"
                f" from snapshot {snapshot[:12]} ({need.isoformat()}); run 'coldvault maintain'"
            )


def _check_rotation_locks(
    result: TargetDrill, store: Store, lock: LockPolicy | None, packs: list[PackRecord], now: datetime
) -> None:
    """Read back the lock of every pack of the rotation that verified and that the sample did not read:
    it must be in the policy's mode, so a pack ever stored without its lock is found within
    ``coverage_days``.  It may be out of retention: which snapshots need it is not known here, and
    once every one of them is past its own retention, prune deletes it."""
    if lock is None:
        return
    verified = set(result.whole_packs)
    for pack in packs:
        handle = Handle(PACK_KINDS[pack.kind], pack.name)
        if pack.name in verified and handle not in result.packs_read:
            _lock_of(result, store, handle, lock, now, still_retained=False)


def _lock_of(
    result: TargetDrill, store: Store, handle: Handle, lock: LockPolicy, now: datetime, *, still_retained: bool = True
) -> datetime | None:
    """The object's retain-until, if it is locked as the policy says; otherwise the violation is noted."""
    info = store.head(handle)
    result.locks_checked += 1
    if info.lock_mode != lock.mode:
        result.lock_violations.append(f"{handle} is locked in mode {info.lock_mode!r}; the policy says {lock.mode!r}")
        return None
    if info.retain_until is None:
        result.lock_violations.append(f"{handle} is in mode {lock.mode!r} but has no retain-until date")
        return None
    if still_retained and info.retain_until <= now:
        result.lock_violations.append(f"{handle} is no longer under retention (it ended {info.retain_until})")
        return None
    return info.retain_until


def body_of(
    results: list[TargetDrill],
    chosen: list[Snapshot],
    *,
    min_targets: int,
    now: datetime,
    full: FullDrill | None = None,
    **header: Any,
) -> dict[str, Any]:
    """The report body: the verdict, per-source recovery points, a record per target, the full restore."""
    sources = _recovery_points(results, chosen, min_targets, now)
    latest_bytes = sum(int(s.summary.get("bytes", 0)) for s in _latest(chosen).values())
    passed = all(r.ok for r in results) and all(s["rpo_s"] is not None for s in sources)
    return {
        **header,
        "verdict": "pass" if passed and (full is None or full.ok) else "fail",
        "full": full.as_dict() if full is not None else None,
        "min_targets": min_targets,
        "snapshots": [{"id": s.id, "source": s.source, "time": s.time.isoformat()} for s in chosen],
        "sources": sources,
        "targets": [
            {
                "name": r.name,
                "verdict": "pass" if r.ok else "fail",
                "errors": r.errors,
                "bytes": r.bytes,
                "chunks_read": r.objects,
                "packs_read": len(r.packs_read),
                "time_to_first_byte_s": round(r.first_byte_s, 4) if r.first_byte_s is not None else None,
                "throughput_bytes_per_s": round(r.throughput, 1),
                "duration_s": round(r.duration_s, 4),
                "warmup_s": round(r.warmup_s, 4),
                # A full restore of every source's latest snapshot: warm-up, then the bytes at the rate measured.
                "rto_estimate_s": round(r.warmup_s + latest_bytes / r.throughput, 3) if r.throughput else None,
                "verified_snapshots": sorted(r.verified),
                "coverage": r.coverage,
                "locks_checked": r.locks_checked,
                "lock_violations": r.lock_violations,
                "samples": [vars(s) for s in r.samples],
            }
            for r in results
        ],
    }


def _latest(chosen: list[Snapshot]) -> dict[str, Snapshot]:
    latest: dict[str, Snapshot] = {}
    for snapshot in chosen:
        if snapshot.source not in latest or snapshot.time > latest[snapshot.source].time:
            latest[snapshot.source] = snapshot
    return latest


def _recovery_points(
    results: list[TargetDrill], chosen: list[Snapshot], min_targets: int, now: datetime
) -> list[dict[str, Any]]:
    """Per source, the newest snapshot the drill restored on at least ``min_targets`` targets, and its age."""
    points = []
    for source in sorted({s.source for s in chosen}):
        good = [s for s in chosen if s.source == source and sum(s.id in r.verified for r in results) >= min_targets]
        newest = max(good, key=lambda s: s.time, default=None)
        points.append(
            {
                "source": source,
                "newest_verified": newest.id if newest else None,
                "time": newest.time.isoformat() if newest else None,
                "rpo_s": round((now - newest.time).total_seconds(), 1) if newest else None,
            }
        )
    return points


def history(previous: list[dict[str, Any]], limit: int = 30) -> list[dict[str, Any]]:
    """The figures of earlier drills (their report bodies, oldest first), for trends."""
    return [figures(body) for body in previous[-limit:]]
