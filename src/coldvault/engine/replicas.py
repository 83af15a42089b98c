"""Every target behind one Store: writes fan out to all of them at once, reads fail over.

The rules (../shared/DESIGN.md §3):
- An object is written once per target, concurrently; each target's own stack bounds its
  uploads in flight.  A put succeeds when at least ``min_targets`` targets hold the object.
- A target that fails a write (after its retries) is *down* for the rest of the run: it is
  skipped from then on, and every object it misses is recorded as pending in the journal and,
  space permitting, kept in the staging area, so that ``sync`` can catch it up later.
- A snapshot manifest goes only to the targets that hold every object it references
  (``publish``); what such a target lacks is copied to it from another target first.
- Reads try the targets in config order and fall over to the next on NotFound, Archived or
  an unreachable target.
- The journal row for a stored object is committed before the put returns.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TypeVar

from coldvault.engine.journal import Journal
from coldvault.engine.staging import Staging
from coldvault.errors import (
    AlreadyExists,
    Archived,
    DamagedObject,
    IntegrityError,
    NotFound,
    RepositoryError,
    TargetError,
)
from coldvault.repo.unlock import held_repository_id
from coldvault.storage.handle import Handle, Kind, object_name
from coldvault.storage.protocol import BytesLike, Capabilities, ObjectInfo, PutMode, Store

T = TypeVar("T")

# Past this many objects of unknown whereabouts, one listing is cheaper than a HEAD each.
_LISTING_THRESHOLD = 200


class Replicas:
    def __init__(
        self,
        stores: list[Store],
        *,
        min_targets: int | None = None,
        journal: Journal | None = None,
        staging: Staging | None = None,
    ) -> None:
        if not stores:
            raise ValueError("replication needs at least one store")
        self.stores = stores
        self.min_targets = min_targets or len(stores)
        self.journal = journal
        self.staging = staging
        self.down: dict[str, str] = {}  # target name → why it is out of this run
        self.damaged: list[str] = []  # damaged copies that reads stepped over to a good one, for the user to hear of
        self._pool = ThreadPoolExecutor(8 * len(stores), thread_name_prefix="coldvault-replica")

    @property
    def name(self) -> str:
        return "+".join(s.name for s in self.stores)

    @property
    def capabilities(self) -> Capabilities:
        caps = [s.capabilities for s in self.up()]
        return Capabilities(
            object_lock=all(c.object_lock for c in caps),
            storage_classes=frozenset.intersection(*(c.storage_classes for c in caps)),
            needs_warmup=any(c.needs_warmup for c in caps),
            conditional_create=all(c.conditional_create for c in caps),
            max_object_size=min(c.max_object_size for c in caps),
        )

    def up(self) -> list[Store]:
        return [s for s in self.stores if s.name not in self.down]

    def mark_down(self, store: Store, error: TargetError) -> None:
        # Only the message is kept: the exception's traceback would pin the frames of the failed
        # upload, and with them views of a pack buffer the writer is about to reuse.
        self.down.setdefault(store.name, str(error))

    def require_quorum(self) -> None:
        """Fail before any work when too few targets are reachable to complete a backup."""
        if len(self.up()) < self.min_targets:
            raise TargetError(self._quorum_message(len(self.up()), "reachable"))

    def require_one_repository(self) -> None:
        """Refuse targets that hold different repositories (a config pointing a target at the wrong
        place): writing one's objects into the other would mix them, and reads would meet the other's
        objects as damage.  A target that holds no repository yet is new, and sync fills it; one that
        cannot be reached is marked down."""
        stores = self.up()
        if len(stores) < 2:
            return
        held: dict[str, str] = {}  # target name -> repository id

        def look(store: Store) -> None:
            try:
                repository_id = held_repository_id(store)
            except TargetError as exc:
                self.mark_down(store, exc)
                return
            except IntegrityError:
                return  # a damaged config: another target's is read instead, and scrub repairs it
            if repository_id is not None:
                held[store.name] = repository_id

        list(self._pool.map(look, stores))
        if len(set(held.values())) > 1:
            (first, first_id), *_ = held.items()
            other, other_id = next((name, rid) for name, rid in held.items() if rid != first_id)
            raise RepositoryError(
                f"targets {first!r} and {other!r} hold different repositories ({first_id[:8]} and {other_id[:8]});"
                " point every target of this config at the same repository, or a new one at an empty location"
            )

    # ---- writing -------------------------------------------------------------------------

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        def put_one(store: Store) -> ObjectInfo:
            return store.put(handle, data, mode=mode, retain_until=retain_until, storage_class=storage_class)

        return self._write(self.up(), handle, data, put_one)

    def publish(self, handle: Handle, data: BytesLike, references: Collection[Handle]) -> list[str]:
        """Commit a snapshot manifest: to each target holding all of ``references``, after copying
        over what it lacks; the rest get it later from ``sync``.  Returns the targets that have it."""
        ready = [store for store in self.up() if self._complete(store, references)]
        if len(ready) < self.min_targets:
            for store in self.stores:
                if store not in ready:
                    self._lagging(store, handle, data)
            raise TargetError(self._quorum_message(len(ready), "holding every object of the snapshot"))

        def put_one(store: Store) -> ObjectInfo:
            return store.put(handle, data)

        try:
            self._write(ready, handle, data, put_one)
        except AlreadyExists:
            pass  # a retry after the first attempt landed: the name is the hash of these very bytes
        return [s.name for s in ready if s.name not in self.down]

    def _write(
        self, targets: list[Store], handle: Handle, data: BytesLike, put_one: Callable[[Store], ObjectInfo]
    ) -> ObjectInfo:
        def put_and_record(store: Store) -> ObjectInfo | AlreadyExists:
            try:
                outcome: ObjectInfo | AlreadyExists = put_one(store)
            except AlreadyExists as exc:
                outcome = exc  # names are content hashes: a target that has the name has the bytes
            if self.journal is not None:  # each target as soon as it answers, so a crash forgets little
                self.journal.record_stored([(store.name, handle.path, len(data))])
            return outcome

        outcomes = self._on_each(targets, put_and_record)
        holders = existed = 0
        info = ObjectInfo(handle, len(data))
        for store in self.stores:
            outcome = outcomes.get(store.name)
            if isinstance(outcome, ObjectInfo | AlreadyExists):
                holders += 1
                existed += isinstance(outcome, AlreadyExists)
                info = outcome if isinstance(outcome, ObjectInfo) else info
                continue
            if isinstance(outcome, TargetError):
                self.mark_down(store, outcome)
            elif outcome is not None:
                raise outcome  # a bug, not a target's failure
            self._lagging(store, handle, data)
        if holders < self.min_targets:
            raise TargetError(self._quorum_message(holders, f"holding {handle}"))
        if existed == holders:
            raise AlreadyExists(f"{handle} already exists on every target")
        return info

    def _lagging(self, store: Store, handle: Handle, data: BytesLike) -> None:
        if self.journal is not None:
            self.journal.record_pending(store.name, handle.path, len(data))
        if self.staging is not None:
            self.staging.save(handle, data)

    def _complete(self, store: Store, references: Collection[Handle]) -> bool:
        """Does the target hold every referenced object, once what it lacks is copied to it?"""
        try:
            missing = self.missing(store, references)
        except TargetError as exc:
            self.mark_down(store, exc)
            return False
        # The config last: it is what makes a new target a repository.
        for batch in ([h for h in missing if h.kind is not Kind.CONFIG], [h for h in missing if h.kind is Kind.CONFIG]):
            failures = [e for e in self._pool.map(lambda h: self._try_copy(h, store), batch) if e is not None]
            if failures:
                # The object's own trouble (nowhere, offline, damaged) says nothing about this target.
                broken = [e for e in failures if not isinstance(e, NotFound | Archived | IntegrityError)]
                if broken:
                    self.mark_down(store, broken[0])
                return False
        return True

    def _try_copy(self, handle: Handle, to: Store) -> TargetError | IntegrityError | None:
        try:
            self.copy(handle, to)
        except (TargetError, IntegrityError) as exc:
            if self.journal is not None:
                self.journal.record_pending(to.name, handle.path, 0)
            return exc
        return None

    def missing(self, store: Store, handles: Collection[Handle]) -> list[Handle]:
        """Which of ``handles`` the target lacks: the journal first, then a HEAD each or one listing."""
        known = self.journal.stored_paths(store.name) if self.journal is not None else set()
        unknown = [h for h in handles if h.path not in known]
        found: list[tuple[str, str, int]] = []
        missing = []
        if len(unknown) > _LISTING_THRESHOLD:
            present = {info.handle: info.size for kind in {h.kind for h in unknown} for info in store.list(kind)}
            found = [(store.name, h.path, size) for h, size in present.items()]
            missing = [h for h in unknown if h not in present]
        else:
            for handle in unknown:
                try:
                    found.append((store.name, handle.path, store.head(handle).size))
                except NotFound:
                    missing.append(handle)
        if self.journal is not None:
            self.journal.record_stored(found)
        return missing

    def copy(self, handle: Handle, to: Store, *, mode: PutMode = PutMode.CREATE) -> int:
        """Copy verified bytes of an object to ``to`` from the staging area or another target; the size copied."""
        data = self.fetch(handle, exclude=to)
        try:
            to.put(handle, data, mode=mode)
        except AlreadyExists:
            pass  # same name, same bytes
        if self.journal is not None:
            self.journal.record_stored([(to.name, handle.path, len(data))])
        if self.staging is not None and not (self.journal and self.journal.pending_anywhere(handle.path)):
            self.staging.drop(handle)
        return len(data)

    def fetch(self, handle: Handle, *, exclude: Store | None = None) -> bytes:
        """The object's bytes, proven by their hash: from the staging area, else from the first target with a
        good copy.  The config object has no hash name; any target's copy is taken as it is."""
        if self.staging is not None:
            data = self.staging.load(handle)
            if data is not None:
                return data
        error: TargetError = NotFound(f"{handle} is on no reachable target")
        for store in self.up():
            if store is exclude:
                continue
            try:
                data = store.get(handle)
            except NotFound:
                continue
            except Archived as exc:
                error = exc
                continue
            except TargetError as exc:
                self.mark_down(store, exc)
                continue
            if handle.kind is Kind.CONFIG or object_name(data) == handle.name:
                return data
            error = IntegrityError(f"{handle} is corrupt on {store.name}, and no other target has a good copy")
        raise error

    # ---- reading -------------------------------------------------------------------------

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        """A whole object is checked against its name and, where a copy is damaged, taken from the next
        target; a range cannot be checked here (the reader authenticates it, and on failure reads the
        whole object, see Repository.read_blob)."""
        if offset or length is not None or handle.kind is Kind.CONFIG:
            return self._first(handle, lambda s: s.get(handle, offset=offset, length=length))
        return self._first(handle, lambda s: self._get_good(s, handle))

    def _get_good(self, store: Store, handle: Handle) -> bytes:
        data = store.get(handle)
        if object_name(data) != handle.name:
            raise DamagedObject(f"{handle} is corrupt on {store.name}: its content does not match its name")
        return data

    def head(self, handle: Handle) -> ObjectInfo:
        return self._first(handle, lambda s: s.head(handle))

    def list(self, kind: Kind) -> Iterator[ObjectInfo]:
        """The union of every reachable target's listing; where copies differ, a readable one is described."""
        seen: dict[Handle, ObjectInfo] = {}
        answered = 0
        for store in self.up():
            try:
                infos = list(store.list(kind))
            except TargetError as exc:
                self.mark_down(store, exc)
                continue
            answered += 1
            for info in infos:
                if info.handle not in seen or (seen[info.handle].archived and not info.archived):
                    seen[info.handle] = info
        if not answered:
            raise self._nobody()
        return iter(sorted(seen.values(), key=lambda i: i.handle.name))

    def delete(self, handle: Handle) -> None:
        """Delete everywhere; a target that already lacks the object is fine, unless every target does."""
        self._everywhere(handle, lambda s: s.delete(handle))

    def retain(self, handle: Handle, until: datetime) -> ObjectInfo:
        """Extend the lock everywhere; a target that lacks the object is fine, unless every target does."""
        return self._everywhere(handle, lambda s: s.retain(handle, until))

    def _everywhere(self, handle: Handle, action: Callable[[Store], T]) -> T:
        outcomes = self._on_each(self.up(), action)
        errors = [e for e in outcomes.values() if isinstance(e, BaseException)]
        for error in errors:
            if not isinstance(error, NotFound):
                raise error
        done = [o for o in outcomes.values() if not isinstance(o, BaseException)]
        if not done:
            raise NotFound(f"{handle} does not exist on any target")
        return done[0]

    def warmup(self, handles: Iterable[Handle]) -> None:
        handles = list(handles)
        for store in self.up():
            if store.capabilities.needs_warmup:
                store.warmup(handles)

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]:
        """Ready when some target holding the object can serve it now."""
        status = {}
        for handle in handles:
            status[handle] = False
            for store in self.up():
                try:
                    if store.warmup_status([handle])[handle]:
                        status[handle] = True
                        break
                except NotFound:
                    continue
        return status

    # ---- internals -----------------------------------------------------------------------

    def _first(self, handle: Handle, action: Callable[[Store], T]) -> T:
        error: TargetError | IntegrityError | None = None
        damaged: list[str] = []
        for store in self.up():
            try:
                done = action(store)
            except NotFound:
                continue
            except IntegrityError as exc:
                error = error or exc  # a damaged copy: another target's may be good
                damaged.append(store.name)
            except Archived as exc:
                error = error or exc  # another target may hold a copy that is online
            except TargetError as exc:
                self.mark_down(store, exc)
                error = error or exc
            else:
                if damaged:
                    self.damaged.append(
                        f"the copy of {handle} on {' and '.join(damaged)} is damaged ({store.name}'s was used)"
                    )
                return done
        if error is not None:
            raise error
        if self.down:
            raise NotFound(f"{handle} is on no reachable target ({self._down_summary()})")
        raise NotFound(f"{handle} does not exist on any target")

    def _on_each(self, stores: list[Store], action: Callable[[Store], T]) -> dict[str, T | BaseException]:
        """Run ``action`` on every store at once; each store's result or exception, by name."""
        futures = {store.name: self._pool.submit(action, store) for store in stores}
        outcomes: dict[str, T | BaseException] = {}
        for name, future in futures.items():
            try:
                outcomes[name] = future.result()
            except TargetError as exc:
                # Kept bare: its traceback, and the SDK exception behind it, pin the frames of the
                # failed call and with them views of a buffer the caller reuses once this returns.
                exc.__context__ = None
                outcomes[name] = exc.with_traceback(None)
            except BaseException as exc:  # noqa: BLE001 - a bug; the caller re-raises it
                outcomes[name] = exc
        return outcomes

    def _nobody(self) -> TargetError:
        return TargetError(f"no target is reachable: {self._down_summary()}")

    def _down_summary(self) -> str:
        return "; ".join(self.down.values())

    def _quorum_message(self, count: int, what: str) -> str:
        message = (
            f"only {count} of {len(self.stores)} targets {what}, and repository.min_targets requires {self.min_targets}"
        )
        if self.down:
            message += f" ({self._down_summary()})"
        return message + "; fix the target, then run the backup again: it resumes where this one stopped"
