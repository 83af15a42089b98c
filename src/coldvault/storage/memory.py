"""An in-memory store with object-lock and archive-tier semantics, for tests and dry runs."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from coldvault.clock import Clock, system_clock
from coldvault.errors import AlreadyExists, Archived, Locked, NotFound
from coldvault.storage.cloud import lengthened
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import BytesLike, Capabilities, ObjectInfo, PutMode

ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE", "ARCHIVE"})


@dataclass
class _Entry:
    data: bytes
    info: ObjectInfo
    readable_from: datetime | None  # set by warmup for archived objects


class MemoryStore:
    """Behaves like a locked, create-only bucket: retention refuses delete and overwrite until it ends.

    Archived objects (storage classes in ARCHIVE_CLASSES) raise Archived on get until
    ``warmup`` was called and ``warmup_delay`` has passed on the injected clock.
    """

    def __init__(
        self,
        name: str = "memory",
        *,
        clock: Clock = system_clock,
        warmup_delay: timedelta = timedelta(0),
    ) -> None:
        self._name = name
        self._clock = clock
        self._warmup_delay = warmup_delay
        self._objects: dict[Handle, _Entry] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(object_lock=True, storage_classes=ARCHIVE_CLASSES, needs_warmup=True)

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        info = ObjectInfo(
            handle,
            len(data),
            retain_until=retain_until,
            lock_mode="compliance" if retain_until else None,
            storage_class=storage_class,
            archived=storage_class in ARCHIVE_CLASSES,
            created=self._clock(),
        )
        with self._lock:
            existing = self._objects.get(handle)
            if existing is not None:
                if mode is PutMode.CREATE:
                    raise AlreadyExists(f"{self._name}: {handle} already exists")
                self._refuse_if_locked(existing, "overwrite")
            self._objects[handle] = _Entry(bytes(data), info, None)
        return info

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        entry = self._entry(handle)
        if entry.info.archived and (entry.readable_from is None or self._clock() < entry.readable_from):
            raise Archived(f"{self._name}: {handle} is in archive storage; warm it up first")
        end = None if length is None else offset + length
        return entry.data[offset:end]

    def head(self, handle: Handle) -> ObjectInfo:
        return self._entry(handle).info

    def list(self, kind: Kind) -> Iterator[ObjectInfo]:
        with self._lock:
            infos = [e.info for h, e in self._objects.items() if h.kind is kind]
        return iter(sorted(infos, key=lambda i: i.handle.name))

    def delete(self, handle: Handle) -> None:
        with self._lock:
            entry = self._objects.get(handle)
            if entry is None:
                raise NotFound(f"{self._name}: {handle} does not exist")
            self._refuse_if_locked(entry, "delete")
            del self._objects[handle]

    def retain(self, handle: Handle, until: datetime) -> ObjectInfo:
        with self._lock:
            entry = self._objects.get(handle)
            if entry is None:
                raise NotFound(f"{self._name}: {handle} does not exist")
            wanted = lengthened(entry.info, until, "compliance")
            if wanted is not None:
                entry.info = wanted
            return entry.info

    def warmup(self, handles: Iterable[Handle]) -> None:
        ready = self._clock() + self._warmup_delay
        with self._lock:
            for handle in handles:
                entry = self._objects.get(handle)
                if entry is not None and entry.info.archived and entry.readable_from is None:
                    entry.readable_from = ready

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]:
        now = self._clock()
        status = {}
        for handle in handles:
            entry = self._entry(handle)
            status[handle] = not entry.info.archived or (entry.readable_from is not None and now >= entry.readable_from)
        return status

    # Test helpers: a real provider's bytes can rot or vanish behind our back.
    def corrupt(self, handle: Handle, position: int = 0) -> None:
        with self._lock:
            entry = self._objects[handle]
            data = bytearray(entry.data)
            data[position % len(data)] ^= 0x01
            entry.data = bytes(data)

    def remove_silently(self, handle: Handle) -> None:
        with self._lock:
            del self._objects[handle]

    def _entry(self, handle: Handle) -> _Entry:
        with self._lock:
            entry = self._objects.get(handle)
        if entry is None:
            raise NotFound(f"{self._name}: {handle} does not exist")
        return entry

    def _refuse_if_locked(self, entry: _Entry, action: str) -> None:
        until = entry.info.retain_until
        if until is not None and self._clock() < until:
            raise Locked(f"{self._name}: cannot {action} {entry.info.handle}: locked until {until.isoformat()}")
