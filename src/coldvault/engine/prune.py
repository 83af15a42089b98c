"""Prune: delete what no retained snapshot needs, once its lock has ended (docs/FORMAT.md §11.5).

Prune needs delete rights, so it runs apart from the daemon, under the lease (engine.lease),
with every target reachable.  It never deletes while the repository looks damaged: a retained
snapshot that does not resolve, an index object that does not read, or a target lacking
something a retained snapshot needs stops it before the first deletion.

Packs are dropped in two steps.  First an index object superseding the ones that list garbage
is stored on every target, carrying over what is kept: from then on no backup deduplicates
against the garbage.  A garbage pack is deleted only once no backup that may have read the old
index can still commit: every backup session counted (engine.sessions) started at least
``margin`` after the pack left the index.  With no backup running, both steps happen in one run.
A pack no index ever listed (left by a killed backup) counts as leaving the index
``ADOPT_WINDOW`` after it was stored: until then its host's next backup may adopt it.
Objects younger than ``margin`` are never touched: a concurrent backup may be about to index
and reference them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from coldvault.engine.backup import ADOPT_WINDOW
from coldvault.engine.lease import Lease
from coldvault.engine.locks import References
from coldvault.engine.sessions import TTL as SESSION_TTL
from coldvault.errors import AlreadyExists, ColdvaultError, IntegrityError, NotFound, RepositoryError
from coldvault.repo.index import PackRecord
from coldvault.repo.repository import PACK_KINDS, IndexObject, Repository
from coldvault.repo.session import DONE
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import ObjectInfo, Store

_LISTED = (Kind.DATA, Kind.TREE, Kind.INDEX, Kind.SNAPSHOT, Kind.FORGET, Kind.SESSION, Kind.KEY, Kind.CONFIG)


@dataclass
class PruneResult:
    retained: int = 0
    forgotten: int = 0
    garbage: int = 0  # unreferenced packs old enough to consider
    reindexed: int = 0  # packs retained snapshots need that only a superseded index object listed
    superseded: int = 0  # index objects the new one replaces
    index_written: str | None = None
    deleted: dict[str, list[str]] = field(default_factory=dict)  # target → paths
    kept_locked: int = 0  # garbage whose lock has not ended yet (on some target)
    kept_in_use: int = 0  # garbage a running backup may still reference
    deleted_bytes: int = 0


class _Listings:
    """Every target's listing of every kind, and the store's creation times across targets."""

    def __init__(self, stores: list[Store]) -> None:
        self.by_target: dict[str, dict[Handle, ObjectInfo]] = {
            store.name: {info.handle: info for kind in _LISTED for info in store.list(kind)} for store in stores
        }

    def everywhere(self, kind: Kind) -> set[Handle]:
        return {h for listing in self.by_target.values() for h in listing if h.kind is kind}

    def newest(self, handle: Handle) -> datetime | None:
        """The latest creation time across targets (None if one is unknown): how young the object may be."""
        times = self._created(handle)
        return None if not times or None in times else max(t for t in times if t is not None)

    def oldest(self, handle: Handle) -> datetime | None:
        return min((t for t in self._created(handle) if t is not None), default=None)

    def _created(self, handle: Handle) -> list[datetime | None]:
        return [listing[handle].created for listing in self.by_target.values() if handle in listing]


def prune(
    repo: Repository,
    stores: list[Store],
    lease: Lease,
    *,
    now: datetime,
    margin: timedelta,
    dry_run: bool = False,
    report: Callable[[str], None] = lambda _: None,
) -> PruneResult:
    """``repo`` reads the union of ``stores`` without a cache; ``lease`` is held."""
    result = PruneResult()
    report("listing every target")
    listings = _Listings(stores)
    forget_records = repo.forget_records()
    forgotten = {snapshot for record in forget_records for snapshot in record.snapshots}
    manifests = {h.name for h in listings.everywhere(Kind.SNAPSHOT)}
    retained = [repo.read_snapshot(name) for name in sorted(manifests - forgotten)]
    result.retained, result.forgotten = len(retained), len(manifests & forgotten)
    objects = [repo.read_index_object(h.name) for h in sorted(listings.everywhere(Kind.INDEX), key=str)]
    if repo.skipped:
        raise IntegrityError(f"prune stops: {repo.skipped[0]}; run 'coldvault check' and repair first")
    report(f"resolving {len(retained)} retained snapshots")
    references = References(repo)
    needed: set[Handle] = set()
    for snapshot in retained:
        needed |= references.packs(snapshot)
    _require_complete(listings, needed, {Handle(Kind.SNAPSHOT, s.id) for s in retained})

    def young(handle: Handle) -> bool:
        created = listings.newest(handle)
        return created is None or created > now - margin

    packs = listings.everywhere(Kind.DATA) | listings.everywhere(Kind.TREE)
    garbage = {h for h in packs if h not in needed and not young(h)}
    result.garbage = len(garbage)

    # Step 1: an index object superseding every one that lists garbage, carrying over the rest,
    # and indexing again what retained snapshots need but only superseded objects list.
    superseded_before = {name for o in objects for name in o.supersedes}
    live = [o for o in objects if o.name not in superseded_before]
    replaced = [o for o in live if any(_handle(r) in garbage for r in o.records) and not young(_index(o.name))]
    index = repo.index
    lost = sorted(h.name for h in needed if not index.is_live(h.name))
    kept: dict[str, PackRecord] = {r.name: r for o in replaced for r in o.records if _handle(r) not in garbage}
    for name in lost:
        record = index.pack(name)
        assert record is not None, "References resolved it"
        kept[name] = record
    superseder_created: dict[str, datetime] = {}
    for o in objects:
        created = listings.newest(_index(o.name))
        for name in o.supersedes:
            if created is not None:
                superseder_created[name] = max(superseder_created.get(name, created), created)
    if replaced or lost:
        handle, data = repo.seal_superseding_index([o.name for o in replaced], kept.values())
        result.index_written, result.superseded, result.reindexed = handle.name, len(replaced), len(lost)
        if not dry_run:
            report(f"storing index {handle.name[:12]} on every target")
            for store in stores:
                try:
                    store.put(handle, data)
                except AlreadyExists:
                    pass
        for o in replaced:
            superseder_created[o.name] = now

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
            stored = listings.oldest(handle)
            return None if stored is None else stored + ADOPT_WINDOW
        return max(superseder_created.get(name, now) for name in names)

    sessions = _sessions(repo, listings)
    first_session = _first_counted_session(sessions, now=now, margin=margin)
    report("checking locks" + (" (dry run)" if dry_run else ""))
    if not dry_run:
        lease.renew()
    doomed = []
    for handle in sorted(garbage, key=str):
        left = left_index(handle)
        if left is None or (first_session is not None and left + margin >= first_session) or left > now:
            result.kept_in_use += 1
        else:
            doomed.append(handle)
    superseded_now = superseded_before | {o.name for o in replaced}
    retired_index = [
        _index(name)
        for name in sorted(superseded_now)
        if (first_session is None or superseder_created.get(name, now) + margin < first_session)
        and superseder_created.get(name, now) < now
    ]
    forgotten_manifests = [Handle(Kind.SNAPSHOT, name) for name in sorted(manifests & forgotten)]
    _delete(stores, listings, doomed, now, dry_run, result, counts_locked=True)
    _delete(stores, listings, _safe_index_objects(retired_index, objects, needed, listings), now, dry_run, result)
    _delete(stores, listings, forgotten_manifests, now, dry_run, result)
    remaining = {n for n in manifests if not _gone(Handle(Kind.SNAPSHOT, n), result, listings)}
    records = [Handle(Kind.FORGET, r.id) for r in forget_records if not set(r.snapshots) & remaining]
    _delete(stores, listings, sorted(records, key=str), now, dry_run, result)
    _delete(stores, listings, _dead_session_markers(sessions, now=now, margin=margin), now, dry_run, result)
    return result


def _handle(record: PackRecord) -> Handle:
    return Handle(PACK_KINDS[record.kind], record.name)


def _index(name: str) -> Handle:
    return Handle(Kind.INDEX, name)


def _require_complete(listings: _Listings, needed: set[Handle], manifests: set[Handle]) -> None:
    """Deletion on one target never proceeds while a target lacks something a retained snapshot needs."""
    for target, listing in listings.by_target.items():
        lacking = [h for h in needed | manifests if h not in listing]
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


def _sessions(repo: Repository, listings: _Listings) -> dict[str, _Session]:
    sessions: dict[str, _Session] = {}
    for handle in listings.everywhere(Kind.SESSION):
        created = listings.oldest(handle)
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
    candidates: list[Handle], objects: list[IndexObject], needed: set[Handle], listings: _Listings
) -> list[Handle]:
    """Superseded index objects whose needed packs a live index object on every target describes."""
    superseded = {name for o in objects for name in o.supersedes}
    live_described = {
        target: {r.name for o in objects if o.name not in superseded and _index(o.name) in listing for r in o.records}
        for target, listing in listings.by_target.items()
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


def _gone(handle: Handle, result: PruneResult, listings: _Listings) -> bool:
    return all(
        handle not in listing or str(handle) in result.deleted.get(target, [])
        for target, listing in listings.by_target.items()
    )


def _delete(
    stores: list[Store],
    listings: _Listings,
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
            info = listings.by_target[store.name].get(handle)
            if info is None:
                continue
            try:
                until = store.head(handle).retain_until
            except NotFound:
                continue
            if until is not None and until > now:
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
