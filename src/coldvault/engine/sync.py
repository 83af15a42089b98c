"""Anti-entropy across targets: compare listings, copy what a target lacks, verify a rotating sample.

``sync`` catches lagging targets up; ``scrub`` does the same and also reads a share of every
target's objects back, checks each against its content hash, and replaces damaged copies with
verified bytes from a healthy target.  Neither ever deletes, and neither needs the key:
targets are byte-identical, so any good copy repairs any other.

Copies to a target go in dependency order, packs → indexes → key slots → snapshots → config,
and a snapshot manifest or the config is copied only once every pack and index copy to that
target succeeded.  A target therefore never shows a snapshot whose objects it lacks, and a
brand-new target becomes a repository (gets its config) only when it holds everything.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

from coldvault.engine.replicas import Replicas
from coldvault.errors import Archived, IntegrityError, Locked, NotFound, TargetError
from coldvault.storage.handle import Handle, Kind, object_name
from coldvault.storage.protocol import PutMode, Store

# Forget records go before manifests, so that a catching-up target never shows a forgotten snapshot.
COPY_ORDER = (
    Kind.DATA, Kind.TREE, Kind.INDEX, Kind.KEY, Kind.SESSION, Kind.FORGET, Kind.SNAPSHOT, Kind.REPORT, Kind.CONFIG,
)  # fmt: skip
_PREREQUISITES = frozenset({Kind.DATA, Kind.TREE, Kind.INDEX})
_COPIES_IN_FLIGHT = 4

Listing = dict[Handle, int]  # handle → size, as one target lists it
Report = Callable[[str], None]


@dataclass
class TargetResult:
    name: str
    error: str | None = None  # why the target could not be listed; None when it answered
    objects: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)  # objects the others hold and this target lacked
    missing_bytes: int = 0
    damaged: list[str] = field(default_factory=list)  # wrong size or content
    repaired: list[str] = field(default_factory=list)
    unrepaired: dict[str, str] = field(default_factory=dict)  # object → why it could not be repaired
    verified: int = 0
    verified_bytes: int = 0

    @property
    def reachable(self) -> bool:
        return self.error is None

    @property
    def ok(self) -> bool:
        return self.reachable and not self.unrepaired


@dataclass
class Survey:
    """Every reachable target's listing, and the union of them."""

    listings: dict[str, Listing]
    results: dict[str, TargetResult]

    @cached_property  # every target's missing objects are measured against it
    def union(self) -> Listing:
        union: Listing = {}
        for listing in self.listings.values():
            for handle, size in listing.items():
                union.setdefault(handle, size)
        return union

    def missing_on(self, name: str) -> list[Handle]:
        have = self.listings[name]
        return [handle for handle in self.union if handle not in have]


def survey(replicas: Replicas) -> Survey:
    """List every target once; a target that cannot be listed is reported, not fatal."""
    listings: dict[str, Listing] = {}
    results = {store.name: TargetResult(store.name) for store in replicas.stores}
    for store in replicas.stores:
        result = results[store.name]
        if store.name in replicas.down:
            result.error = str(replicas.down[store.name])
            continue
        try:
            listing = {info.handle: info.size for kind in COPY_ORDER for info in store.list(kind)}
        except TargetError as exc:
            replicas.mark_down(store, exc)
            result.error = str(exc)
            continue
        listings[store.name] = listing
        result.objects, result.bytes = len(listing), sum(listing.values())
        if replicas.journal is not None:
            replicas.journal.replace_listing(store.name, ((h.path, size) for h, size in listing.items()))
    if not listings:
        raise TargetError(f"no target could be listed: {'; '.join(r.error or '' for r in results.values())}")
    survey = Survey(listings, results)
    union = survey.union
    for name, result in results.items():
        if name in listings:
            missing = survey.missing_on(name)
            result.missing = [h.path for h in missing]
            result.missing_bytes = sum(union[h] for h in missing)
    return survey


def sync(replicas: Replicas, *, report: Report) -> list[TargetResult]:
    """Copy to every reachable target what the others hold and it lacks."""
    found = survey(replicas)
    for store in replicas.up():
        missing = found.missing_on(store.name)
        if missing:
            report(f"{store.name}: copying {len(missing)} missing objects")
        copy_missing(replicas, store, missing, found.results[store.name])
    _drop_delivered(replicas)
    return list(found.results.values())


def scrub(replicas: Replicas, *, read_fraction: float, rng: random.Random, report: Report) -> list[TargetResult]:
    """``sync``, then find damaged copies (sizes that disagree, and a rotating ``read_fraction`` of every
    target's objects read back and hashed) and replace them with verified bytes from another target."""
    found = survey(replicas)
    for store in replicas.up():
        result = found.results[store.name]
        listing = found.listings[store.name]
        suspects = {h for h, size in listing.items() if _differs(found, h, size)}
        sample = _rotating_sample(replicas, store, listing, read_fraction, rng)
        report(f"{store.name}: verifying {len(sample | suspects)} of {len(listing)} objects")
        damaged = [h for h in sorted(sample | suspects, key=_copy_rank) if not _verify(replicas, store, h, result)]
        result.damaged = [h.path for h in damaged]
        for handle in damaged:
            _repair(replicas, store, handle, result, mode=PutMode.OVERWRITE)
        copy_missing(replicas, store, found.missing_on(store.name), result)
    _drop_delivered(replicas)
    return list(found.results.values())


def copy_missing(replicas: Replicas, store: Store, missing: Iterable[Handle], result: TargetResult) -> None:
    """Copy objects to ``store`` in COPY_ORDER; snapshots and config only when all packs and indexes made it."""
    by_kind: dict[Kind, list[Handle]] = {kind: [] for kind in COPY_ORDER}
    for handle in missing:
        by_kind[handle.kind].append(handle)
    with ThreadPoolExecutor(_COPIES_IN_FLIGHT, thread_name_prefix="coldvault-copy") as pool:
        for kind in COPY_ORDER:
            if kind not in _PREREQUISITES and any(_path_kind(p) in _PREREQUISITES for p in result.unrepaired):
                for handle in by_kind[kind]:
                    result.unrepaired[handle.path] = "held back until the packs and indexes it needs are copied"
                continue
            list(pool.map(lambda h: _repair(replicas, store, h, result), by_kind[kind]))
    _warm_up_sources(replicas, store, result)


def _repair(
    replicas: Replicas, store: Store, handle: Handle, result: TargetResult, *, mode: PutMode = PutMode.CREATE
) -> None:
    try:
        replicas.copy(handle, store, mode=mode)
    except Archived:
        result.unrepaired[handle.path] = "archived on every other target; warm-up requested, run sync again later"
    except NotFound:
        result.unrepaired[handle.path] = "no reachable target holds a copy"
    except IntegrityError:
        result.unrepaired[handle.path] = "every other copy is damaged too"
    except Locked as exc:
        result.unrepaired[handle.path] = f"the damaged copy is locked and cannot be replaced yet ({exc})"
    except TargetError as exc:
        result.unrepaired[handle.path] = str(exc)
    else:
        result.repaired.append(handle.path)


def _drop_delivered(replicas: Replicas) -> None:
    """Staged copies no target is waiting for any more."""
    if replicas.staging is None or replicas.journal is None:
        return
    for handle in replicas.staging.handles():
        if not replicas.journal.pending_anywhere(handle.path):
            replicas.staging.drop(handle)


def _warm_up_sources(replicas: Replicas, store: Store, result: TargetResult) -> None:
    """Ask the archive targets to bring back what could not be copied because it is offline everywhere."""
    archived = [
        Handle.from_path(path) for path, why in result.unrepaired.items() if why.startswith("archived on every")
    ]
    wanted = [h for h in archived if h is not None]
    if wanted:
        others = [s for s in replicas.up() if s is not store and s.capabilities.needs_warmup]
        for source in others:
            source.warmup(wanted)


def _verify(replicas: Replicas, store: Store, handle: Handle, result: TargetResult) -> bool:
    """Read the object back and check it against its name; record the check in the journal."""
    try:
        data = store.get(handle)
    except Archived:
        return True  # cannot be read without warm-up; the drill covers archived packs
    except NotFound:
        return False
    result.verified += 1
    result.verified_bytes += len(data)
    good = handle.kind is Kind.CONFIG or object_name(data) == handle.name
    if good and replicas.journal is not None:
        replicas.journal.record_verified(store.name, handle.path)
    return good


def _differs(found: Survey, handle: Handle, size: int) -> bool:
    return any(listing.get(handle, size) != size for listing in found.listings.values())


def _rotating_sample(
    replicas: Replicas, store: Store, listing: Listing, fraction: float, rng: random.Random
) -> set[Handle]:
    """The least recently verified ``fraction`` of the target's objects, so repeated scrubs cover everything."""
    count = math.ceil(fraction * len(listing))
    if count == 0:
        return set()
    last = replicas.journal.last_verified(store.name) if replicas.journal is not None else {}
    handles = list(listing)
    rng.shuffle(handles)  # among objects verified equally long ago, a random pick
    handles.sort(key=lambda h: last.get(h.path, ""))
    return set(handles[:count])


def _copy_rank(handle: Handle) -> int:
    return COPY_ORDER.index(handle.kind)


def _path_kind(path: str) -> Kind | None:
    handle = Handle.from_path(path)
    return handle.kind if handle is not None else None
