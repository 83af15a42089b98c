"""Prune: delete what no retained snapshot needs, once its lock has ended, and repack what is
mostly garbage (docs/FORMAT.md §11.5).

Prune needs delete rights, so it runs apart from the daemon, under the lease (engine.lease),
with every target reachable.  It never deletes while the repository looks damaged: a retained
snapshot that does not resolve, an index object that does not read, or a target that could not
restore every retained snapshot on its own (engine.holdings) stops it before the first deletion.

Packs are dropped in two steps.  First an index object superseding the ones that list garbage
is stored on every target, carrying over what is kept: from then on no backup deduplicates
against the garbage.  A garbage pack is deleted only once no backup that may have read the old
index can still commit: every backup session counted (engine.sessions) started at least
``margin`` after the pack left the index.  With no backup running, both steps happen in one run.
A pack no index ever listed (left by a killed backup) counts as leaving the index
``ADOPT_WINDOW`` after it was stored: until then its host's next backup may adopt it.
Objects younger than ``margin`` are never touched: a concurrent backup may be about to index
and reference them.

A pack that is mostly garbage, and whose lock has ended everywhere, is repacked
(engine.repack): the chunks still needed are copied into new packs, stored on every target
before the superseding index that lists them there, and the old pack then leaves the index and
goes the way of any garbage.  Which packs each target may lose is decided again after the new
index is stored, from what each target then holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from coldvault.clock import Clock
from coldvault.engine.backup import ADOPT_WINDOW
from coldvault.engine.holdings import Holdings
from coldvault.engine.lease import Lease
from coldvault.engine.locks import Chunk, References, packs_holding
from coldvault.engine.repack import Repack, mostly_garbage, rewrite
from coldvault.engine.replicas import Replicas
from coldvault.engine.sessions import TTL as SESSION_TTL
from coldvault.errors import AlreadyExists, ColdvaultError, IntegrityError, NotFound, RepositoryError
from coldvault.repo.index import PackRecord
from coldvault.repo.manifest import Snapshot
from coldvault.repo.repository import PACK_KINDS, IndexObject, Repository, build_index
from coldvault.repo.session import DONE
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import Store

_RETAINED = "a retained snapshot"


@dataclass(frozen=True)
class RepackOptions:
    unused: float = 0.5  # repack a pack once at least this share of its bytes is garbage
    limit: int = 4 << 30  # read at most this many bytes of old packs in one run


@dataclass
class PruneResult:
    retained: int = 0
    forgotten: int = 0
    garbage: int = 0  # unreferenced packs old enough to consider
    reindexed: int = 0  # packs retained snapshots need that only a superseded index object listed
    superseded: int = 0  # index objects the new one replaces
    index_written: str | None = None
    completed: int = 0  # index objects an interrupted prune stored on only some targets, now stored on the rest
    repacked: int = 0  # mostly-garbage packs whose needed chunks were (dry: would be) copied into new packs
    repack_written: list[str] = field(default_factory=list)  # the new packs
    repack_bytes: int = 0  # bytes of the blobs copied
    repack_locked: int = 0  # mostly garbage, but still locked on some target
    repack_archived: int = 0  # mostly garbage, but every copy is in archive storage
    repack_deferred: int = 0  # mostly garbage, beyond this run's repack limit
    repack_damaged: list[str] = field(default_factory=list)  # old packs that failed verification everywhere
    deleted: dict[str, list[str]] = field(default_factory=dict)  # target → paths
    kept_locked: int = 0  # garbage whose lock has not ended yet (on some target)
    kept_in_use: int = 0  # garbage a running backup may still reference
    deleted_bytes: int = 0


def prune(
    repo: Repository,
    replicas: Replicas,
    lease: Lease | None,
    *,
    clock: Clock,
    margin: timedelta,
    repack: RepackOptions = RepackOptions(),
    dry_run: bool = False,
    report: Callable[[str], None] = lambda _: None,
) -> PruneResult:
    """``repo`` reads the union of ``replicas`` without a cache; ``lease`` is held (a dry run needs none)."""
    stores = replicas.stores
    now = clock()
    result = PruneResult()
    report("listing every target")
    holdings = Holdings(stores)
    forget_records = repo.forget_records()
    forgotten = {snapshot for record in forget_records for snapshot in record.snapshots}
    manifests = {h.name for h in holdings.everywhere(Kind.SNAPSHOT)}
    retained = [repo.read_snapshot(name) for name in sorted(manifests - forgotten)]
    result.retained, result.forgotten = len(retained), len(manifests & forgotten)
    objects = [repo.read_index_object(h.name) for h in sorted(holdings.everywhere(Kind.INDEX), key=str)]
    if repo.skipped:
        raise IntegrityError(f"prune stops: {repo.skipped[0]}; run 'coldvault check' and repair first")

    def young(handle: Handle) -> bool:
        created = holdings.newest(handle)
        return created is None or created > now - margin

    report(f"resolving {len(retained)} retained snapshots")
    needs = _Needs(repo, retained)
    chunks = needs.all
    placed = packs_holding(repo.index, chunks, needed_by=_RETAINED)
    # Young objects on some targets only are a backup storing them target by target, not a lag.
    manifests_needed = {Handle(Kind.SNAPSHOT, s.id) for s in retained}
    _require_complete(holdings, {h for h in placed | manifests_needed if not young(h)})
    result.completed = _complete_interrupted(replicas, holdings, objects, now=now, dry_run=dry_run)
    needed = placed | holdings.needed(objects, needs.held)

    packs = holdings.everywhere(Kind.DATA) | holdings.everywhere(Kind.TREE)
    garbage = {h for h in packs if h not in needed and not young(h)}
    result.garbage = len(garbage)

    # Step 1: repack what is mostly garbage, then store an index object superseding every one that
    # lists garbage or a repacked pack, carrying over the rest, listing the new packs, and indexing
    # again what retained snapshots need but only superseded objects list.
    superseded_before = {name for o in objects for name in o.supersedes}
    live = [o for o in objects if o.name not in superseded_before]
    repacks = _choose_repacks(stores, holdings, live, chunks, garbage, young, repack, now, result)
    repacks, new_packs = _store_repacks(repo, stores, holdings, repacks, lease, now, dry_run, result, report)
    leaving = garbage | {_handle(r.old) for r in repacks}
    replaced = [o for o in live if any(_handle(r) in leaving for r in o.records) and not young(_index(o.name))]
    index = repo.index
    lost = sorted(h.name for h in placed if not index.is_live(h.name))
    kept: dict[str, PackRecord] = {r.name: r for o in replaced for r in o.records if _handle(r) not in leaving}
    for name in lost:
        record = index.pack(name)
        assert record is not None, "packs_holding found it"
        kept[name] = record
    kept.update((record.name, record) for record in new_packs)
    superseder_created: dict[str, datetime] = {}
    for o in objects:
        created = holdings.newest(_index(o.name))
        for name in o.supersedes:
            if created is not None:
                superseder_created[name] = max(superseder_created.get(name, created), created)
    if replaced or lost:
        handle, data = repo.seal_superseding_index([o.name for o in replaced], kept.values())
        result.index_written, result.superseded, result.reindexed = handle.name, len(replaced), len(lost)
        if not dry_run:
            report(f"storing index {handle.name[:12]} on every target")
            if lease is not None:
                lease.renew()  # stops here if another prune took the lease over during a long repack
        _store_everywhere(stores, holdings, handle, data, now, dry_run)
        objects = [*objects, IndexObject(handle.name, list(kept.values()), [o.name for o in replaced])]
        stored_at = clock()  # after it is everywhere: a backup starting before then may have read the old index
        for o in replaced:
            superseder_created[o.name] = stored_at
    if dry_run:
        needed -= {_handle(r.old) for r in repacks}  # their chunks would be in the new packs
    else:
        # What each target needs now that it holds the new index: nothing it needs may go.
        needed = packs_holding(build_index(objects), chunks, needed_by=_RETAINED) | holdings.needed(objects, needs.held)

    # Step 2: when each piece of garbage left the index, against the backups that may have read it.
    listed_by: dict[str, list[str]] = {}
    for o in objects:
        for r in o.records:
            listed_by.setdefault(r.name, []).append(o.name)
    still_live = {o.name for o in live} - {o.name for o in replaced}

    def left_index(handle: Handle) -> datetime | None:
        """When the pack left the live index; None while a live index object still lists it."""
        names = listed_by.get(handle.name, [])
        if any(name in still_live for name in names):
            return None
        if not names:
            stored = holdings.oldest(handle)
            return None if stored is None else stored + ADOPT_WINDOW
        return max(superseder_created.get(name, now) for name in names)

    # Sessions listed afresh: a backup may have started while this prune repacked.
    holdings.relist(stores, Kind.SESSION)
    sessions = _sessions(repo, holdings)
    first_session = _first_counted_session(sessions, now=now, margin=margin)
    report("checking locks" + (" (dry run)" if dry_run else ""))
    if lease is not None:
        lease.renew()
    later = clock()
    doomed = []
    for handle in sorted(leaving - needed, key=str):
        left = left_index(handle)
        if left is None or (first_session is not None and left + margin >= first_session) or left > later:
            result.kept_in_use += 1
        else:
            doomed.append(handle)
    retired_index = [  # superseded at an earlier run than this one
        _index(name)
        for name in sorted(superseded_before)
        if (left := superseder_created.get(name)) is not None
        and left < now
        and (first_session is None or left + margin < first_session)
    ]
    forgotten_manifests = [Handle(Kind.SNAPSHOT, name) for name in sorted(manifests & forgotten)]
    _delete(stores, holdings, doomed, later, dry_run, result, counts_locked=True)
    _delete(stores, holdings, _safe_index_objects(retired_index, objects, needed, holdings), later, dry_run, result)
    _delete(stores, holdings, forgotten_manifests, later, dry_run, result)
    remaining = {n for n in manifests if not _gone(Handle(Kind.SNAPSHOT, n), result, holdings)}
    records = [Handle(Kind.FORGET, r.id) for r in forget_records if not set(r.snapshots) & remaining]
    _delete(stores, holdings, sorted(records, key=str), later, dry_run, result)
    _delete(stores, holdings, _dead_session_markers(sessions, now=now, margin=margin), later, dry_run, result)
    return result


class _Needs:
    """The chunks retained snapshots need: all of them, or those of the snapshots one target holds."""

    def __init__(self, repo: Repository, retained: Iterable[Snapshot]) -> None:
        self._references = References(repo)
        self._retained = {s.id: s for s in retained}
        self.all: set[Chunk] = set().union(*(self._references.chunks(s) for s in self._retained.values()))
        self._held: dict[frozenset[str], set[Chunk]] = {}

    def held(self, manifests: frozenset[str]) -> set[Chunk]:
        """Of the retained snapshots among ``manifests``; read again only for a target that lacks some."""
        ids = manifests.intersection(self._retained)  # a frozenset: `frozenset & dict.keys()` is a set
        if ids == self._retained.keys():
            return self.all
        if ids not in self._held:
            self._held[ids] = set().union(*(self._references.chunks(self._retained[i]) for i in ids))
        return self._held[ids]


def _complete_interrupted(
    replicas: Replicas, holdings: Holdings, objects: list[IndexObject], *, now: datetime, dry_run: bool
) -> int:
    """Store each live superseding index object on the targets an interrupted prune did not reach,
    where the target holds every pack it lists.  Returns how many copies were (dry: would be) stored."""
    superseded = {name for o in objects for name in o.supersedes}
    completed = 0
    for o in objects:
        handle = _index(o.name)
        if not o.supersedes or o.name in superseded:
            continue
        for store in replicas.stores:
            listing = holdings.by_target[store.name]
            if handle in listing or any(_handle(r) not in listing for r in o.records):
                continue
            size = 0 if dry_run else replicas.copy(handle, store)
            holdings.stored(store.name, handle, size, now)
            completed += 1
    return completed


def _choose_repacks(
    stores: list[Store],
    holdings: Holdings,
    live: list[IndexObject],
    chunks: set[Chunk],
    garbage: set[Handle],
    young: Callable[[Handle], bool],
    options: RepackOptions,
    now: datetime,
    result: PruneResult,
) -> list[Repack]:
    """Mostly-garbage packs that may be repacked now: old enough, listed only by index objects this
    run supersedes, with a copy online, unlocked on every target, within the run's limit."""
    listed_live: dict[str, list[str]] = {}
    records: dict[str, PackRecord] = {}
    for o in live:
        for r in o.records:
            listed_live.setdefault(r.name, []).append(o.name)
            records[r.name] = r
    chosen, budget = [], options.limit
    for candidate in mostly_garbage(records.values(), chunks, options.unused):
        handle = _handle(candidate.old)
        if handle in garbage or young(handle) or any(young(_index(name)) for name in listed_live[handle.name]):
            continue
        copies = [listing[handle] for listing in holdings.by_target.values() if handle in listing]
        if all(info.archived for info in copies):
            result.repack_archived += 1
        elif candidate.old.length > budget:  # before asking for its locks: a request per target
            result.repack_deferred += 1
        elif _locked_somewhere(stores, holdings, handle, now):
            result.repack_locked += 1
        else:
            budget -= candidate.old.length
            chosen.append(candidate)
    return chosen


def _locked_somewhere(stores: list[Store], holdings: Holdings, handle: Handle, now: datetime) -> bool:
    holding = (store for store in stores if handle in holdings.by_target[store.name])
    return any(_lock_ended(store, handle, now) is False for store in holding)


def _lock_ended(store: Store, handle: Handle, now: datetime) -> bool | None:
    """Whether the object's lock on ``store`` has ended (or it has none); None if the store lacks it."""
    try:
        until = store.head(handle).retain_until
    except NotFound:
        return None
    return until is None or until <= now


def _store_repacks(
    repo: Repository,
    stores: list[Store],
    holdings: Holdings,
    repacks: list[Repack],
    lease: Lease | None,
    now: datetime,
    dry_run: bool,
    result: PruneResult,
    report: Callable[[str], None],
) -> tuple[list[Repack], list[PackRecord]]:
    """Copy the needed blobs of ``repacks`` into new packs stored on every target; a dry run only counts.
    Returns the repacks done (a damaged old pack is left as it is) and the new packs."""
    if dry_run or not repacks:
        result.repacked = len(repacks)
        result.repack_bytes = sum(e.length for r in repacks for e in r.keep)
        return repacks, []
    report(f"repacking {len(repacks)} packs")
    damaged: list[tuple[Repack, str]] = []
    records = []
    between = lease.keep_alive if lease is not None else lambda: None
    for data, record in rewrite(repo, repacks, damaged=damaged, between=between):
        _store_everywhere(stores, holdings, _handle(record), data, now, dry_run)
        records.append(record)
        result.repack_written.append(record.name)
        result.repack_bytes += sum(e.length for e in record.entries)
    result.repack_damaged = [f"{_handle(r.old)}: {reason}" for r, reason in damaged]
    skipped = {r.old.name for r, _ in damaged}
    done = [r for r in repacks if r.old.name not in skipped]
    result.repacked = len(done)
    return done, records


def _store_everywhere(
    stores: list[Store], holdings: Holdings, handle: Handle, data: bytes, now: datetime, dry_run: bool
) -> None:
    for store in stores:
        if not dry_run:
            _put(store, handle, data)
        holdings.stored(store.name, handle, len(data), now)


def _put(store: Store, handle: Handle, data: bytes) -> None:
    try:
        store.put(handle, data)
    except AlreadyExists:
        pass  # same name, same bytes


def _handle(record: PackRecord) -> Handle:
    return Handle(PACK_KINDS[record.kind], record.name)


def _index(name: str) -> Handle:
    return Handle(Kind.INDEX, name)


def _require_complete(holdings: Holdings, needed: set[Handle]) -> None:
    """Deletion on one target never proceeds while a target lacks something a retained snapshot needs."""
    for target, lacking in holdings.lacking(sorted(needed, key=str)).items():
        if lacking:
            raise RepositoryError(
                f"target {target} lacks {len(lacking)} objects retained snapshots need (e.g. {lacking[0]});"
                " run 'coldvault sync' first, then prune"
            )


def _first_counted_session(sessions: dict[str, _Session], *, now: datetime, margin: timedelta) -> datetime | None:
    """When the earliest backup session that may still commit, or that ended since this prune
    began (``now``), started (store time); None if there is none."""
    first = None
    for session in sessions.values():
        running = session.done is None and session.last > now - SESSION_TTL
        ended_lately = session.done is not None and session.done >= now - margin
        if running or ended_lately:
            first = session.first if first is None else min(first, session.first)
    return first


@dataclass
class _Session:
    first: datetime
    last: datetime
    done: datetime | None
    markers: list[Handle]


def _sessions(repo: Repository, holdings: Holdings) -> dict[str, _Session]:
    sessions: dict[str, _Session] = {}
    for handle in holdings.everywhere(Kind.SESSION):
        created = holdings.oldest(handle)
        try:
            marker = repo.read_session_marker(handle.name)
        except ColdvaultError:
            continue  # unreadable: it protects nothing, and stays for someone to look at
        if created is None:
            created = marker.time
        session = sessions.setdefault(marker.session, _Session(created, created, None, []))
        session.first, session.last = min(session.first, created), max(session.last, created)
        if marker.state == DONE:
            session.done = created
        session.markers.append(handle)
    return sessions


def _dead_session_markers(sessions: dict[str, _Session], *, now: datetime, margin: timedelta) -> list[Handle]:
    dead = []
    for session in sessions.values():
        over = session.done if session.done is not None else session.last + SESSION_TTL
        if over + margin < now:
            dead += session.markers
    return sorted(dead, key=str)


def _safe_index_objects(
    candidates: list[Handle], objects: list[IndexObject], needed: set[Handle], holdings: Holdings
) -> list[Handle]:
    """Superseded index objects whose needed packs a live index object on every target describes."""
    superseded = {name for o in objects for name in o.supersedes}
    live_described = {
        target: {r.name for o in objects if o.name not in superseded and _index(o.name) in listing for r in o.records}
        for target, listing in holdings.by_target.items()
    }
    by_name = {o.name: o for o in objects}
    safe = []
    for handle in candidates:
        o = by_name.get(handle.name)
        if o is None:
            continue
        wanted = {r.name for r in o.records if _handle(r) in needed}
        if all(wanted <= described for described in live_described.values()):
            safe.append(handle)
    return safe


def _gone(handle: Handle, result: PruneResult, holdings: Holdings) -> bool:
    return all(
        handle not in listing or str(handle) in result.deleted.get(target, [])
        for target, listing in holdings.by_target.items()
    )


def _delete(
    stores: list[Store],
    holdings: Holdings,
    handles: Iterable[Handle],
    now: datetime,
    dry_run: bool,
    result: PruneResult,
    *,
    counts_locked: bool = False,
) -> None:
    """Delete each object on every target holding it whose lock has ended there."""
    for handle in handles:
        locked = False
        for store in stores:
            info = holdings.by_target[store.name].get(handle)
            if info is None:
                continue
            ended = _lock_ended(store, handle, now)
            if ended is None:
                continue
            if not ended:
                locked = True
                continue
            if not dry_run:
                try:
                    store.delete(handle)
                except NotFound:
                    continue
            result.deleted.setdefault(store.name, []).append(str(handle))
            result.deleted_bytes += info.size
        if locked and counts_locked:
            result.kept_locked += 1
