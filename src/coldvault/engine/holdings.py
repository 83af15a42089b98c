"""What each target holds, for prune: every object it lists, with the store's own creation
times, and the packs its own index objects send a reader to.

Prune deletes on every target at once, but each target must stay restorable on its own
(../shared/DESIGN.md §3): a pack is garbage only if no target's own index still places a chunk
that a retained snapshot needs in it.  Targets normally hold the same index objects; one that
a killed sync or prune left behind resolves chunks through the objects it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from coldvault.engine.locks import Chunk, pack_holding
from coldvault.errors import RepositoryError
from coldvault.repo.repository import IndexObject, build_index
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import ObjectInfo, Store

LISTED = (Kind.DATA, Kind.TREE, Kind.INDEX, Kind.SNAPSHOT, Kind.FORGET, Kind.SESSION, Kind.KEY, Kind.CONFIG)


class Holdings:
    def __init__(self, stores: Iterable[Store]) -> None:
        self.by_target: dict[str, dict[Handle, ObjectInfo]] = {
            store.name: {info.handle: info for kind in LISTED for info in store.list(kind)} for store in stores
        }

    def relist(self, stores: Iterable[Store], kind: Kind) -> None:
        """List one kind again on every target."""
        for store in stores:
            listing = self.by_target[store.name]
            for handle in [h for h in listing if h.kind is kind]:
                del listing[handle]
            listing.update((info.handle, info) for info in store.list(kind))

    def everywhere(self, kind: Kind) -> set[Handle]:
        """What some target holds, of one kind."""
        return {h for listing in self.by_target.values() for h in listing if h.kind is kind}

    def stored(self, target: str, handle: Handle, size: int, now: datetime) -> None:
        """Note an object this prune stored (or, dry, would store)."""
        self.by_target[target].setdefault(handle, ObjectInfo(handle, size, created=now))

    def newest(self, handle: Handle) -> datetime | None:
        """The latest creation time across targets (None if one is unknown): how young the object may be."""
        times = self._created(handle)
        return None if not times or None in times else max(t for t in times if t is not None)

    def oldest(self, handle: Handle) -> datetime | None:
        return min((t for t in self._created(handle) if t is not None), default=None)

    def needed(self, objects: list[IndexObject], chunks_of: Callable[[frozenset[str]], set[Chunk]]) -> set[Handle]:
        """Every pack some target's own index places a chunk in that a snapshot it holds needs
        (``chunks_of`` gets the names of the manifests a target holds).  Raises RepositoryError when
        a target cannot place one, or lacks a pack its index places one in: it would not restore
        those snapshots on its own, and nothing may be deleted until sync has made it whole."""
        resolved: dict[tuple[frozenset[str], frozenset[str]], tuple[set[Handle], bool]] = {}
        needed: set[Handle] = set()
        for target, listing in self.by_target.items():
            names = frozenset(o.name for o in objects if Handle(Kind.INDEX, o.name) in listing)
            manifests = frozenset(h.name for h in listing if h.kind is Kind.SNAPSHOT)
            if (names, manifests) not in resolved:  # targets alike are worked out once
                index = build_index(o for o in objects if o.name in names)
                placed = {pack_holding(index, chunk) for chunk in chunks_of(manifests)}
                resolved[names, manifests] = ({p for p in placed if p is not None}, None in placed)
            packs, unplaced = resolved[names, manifests]
            lacking = sorted((str(h) for h in packs if h not in listing), key=str)
            if unplaced or lacking:
                what = f"lacks {len(lacking)} packs" if lacking else "lacks index entries"
                example = f" (e.g. {lacking[0]})" if lacking else ""
                raise RepositoryError(
                    f"target {target} {what} retained snapshots need{example}; run 'coldvault sync' first, then prune"
                )
            needed |= packs
        return needed

    def lacking(self, handles: Iterable[Handle]) -> dict[str, list[Handle]]:
        """Per target, which of ``handles`` it does not hold."""
        handles = list(handles)
        return {target: [h for h in handles if h not in listing] for target, listing in self.by_target.items()}

    def _created(self, handle: Handle) -> list[datetime | None]:
        return [listing[handle].created for listing in self.by_target.values() if handle in listing]
