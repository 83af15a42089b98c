"""Bound the requests in flight to one target, whatever the number of threads asking."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime

from coldvault.storage.forwarding import ForwardingStore
from coldvault.storage.handle import Handle
from coldvault.storage.protocol import BytesLike, ObjectInfo, PutMode, Store


class LimitedStore(ForwardingStore):
    """Listings are not limited: they are lazy, and holding a slot across a generator could starve the rest."""

    def __init__(self, inner: Store, max_in_flight: int) -> None:
        super().__init__(inner)
        self.max_in_flight = max_in_flight
        self._slots = threading.BoundedSemaphore(max_in_flight)

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        with self._slots:
            return super().put(handle, data, mode=mode, retain_until=retain_until, storage_class=storage_class)

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        with self._slots:
            return super().get(handle, offset=offset, length=length)

    def head(self, handle: Handle) -> ObjectInfo:
        with self._slots:
            return super().head(handle)

    def delete(self, handle: Handle) -> None:
        with self._slots:
            super().delete(handle)

    def retain(self, handle: Handle, until: datetime) -> ObjectInfo:
        with self._slots:
            return super().retain(handle, until)

    def warmup(self, handles: Iterable[Handle]) -> None:
        with self._slots:
            super().warmup(handles)

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]:
        with self._slots:
            return super().warmup_status(handles)
