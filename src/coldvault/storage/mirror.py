"""Several stores behind one: every write goes to all of them, reads come from the first that answers.

This is the simple, strict form of replication: a put succeeds only when every
store has the object, so a snapshot is complete on every target or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from coldvault.errors import AlreadyExists, NotFound, TargetError
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import BytesLike, Capabilities, ObjectInfo, PutMode, Store


class MirrorStore:
    def __init__(self, stores: list[Store]) -> None:
        if not stores:
            raise ValueError("a mirror needs at least one store")
        self.stores = stores

    @property
    def name(self) -> str:
        return "+".join(s.name for s in self.stores)

    @property
    def capabilities(self) -> Capabilities:
        caps = [s.capabilities for s in self.stores]
        return Capabilities(
            object_lock=all(c.object_lock for c in caps),
            storage_classes=frozenset.intersection(*(c.storage_classes for c in caps)),
            needs_warmup=any(c.needs_warmup for c in caps),
            conditional_create=all(c.conditional_create for c in caps),
            max_object_size=min(c.max_object_size for c in caps),
        )

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        existed = 0
        info = ObjectInfo(handle, len(data))
        for store in self.stores:
            try:
                info = store.put(handle, data, mode=mode, retain_until=retain_until, storage_class=storage_class)
            except AlreadyExists:
                existed += 1  # a retried write: objects are named by content, so the bytes are the same
        if existed == len(self.stores):
            raise AlreadyExists(f"{handle} already exists on every target")
        return info

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        return self._first(lambda s: s.get(handle, offset=offset, length=length), handle)

    def head(self, handle: Handle) -> ObjectInfo:
        return self._first(lambda s: s.head(handle), handle)

    def list(self, kind: Kind) -> Iterator[ObjectInfo]:
        seen: dict[Handle, ObjectInfo] = {}
        for store in self.stores:
            for info in store.list(kind):
                seen.setdefault(info.handle, info)
        return iter(sorted(seen.values(), key=lambda i: i.handle.name))

    def delete(self, handle: Handle) -> None:
        """Delete everywhere; a target that already lacks the object is fine, unless every target does."""
        missing = 0
        for store in self.stores:
            try:
                store.delete(handle)
            except NotFound:
                missing += 1
        if missing == len(self.stores):
            raise NotFound(f"{handle} does not exist on any target")

    def warmup(self, handles: Iterable[Handle]) -> None:
        handles = list(handles)
        for store in self.stores:
            store.warmup(handles)

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]:
        return self.stores[0].warmup_status(handles)

    def _first(self, action, handle: Handle):  # type: ignore[no-untyped-def]
        error: TargetError = NotFound(f"{handle} does not exist on any target")
        for store in self.stores:
            try:
                return action(store)
            except NotFound:
                continue
            except TargetError as exc:
                error = exc  # unreachable or refused: the next target may still answer
        raise error
