"""The base of store wrappers: everything goes to the wrapped store unless a wrapper says otherwise."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import BytesLike, Capabilities, ObjectInfo, PutMode, Store


class ForwardingStore:
    def __init__(self, inner: Store) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        return self.inner.put(handle, data, mode=mode, retain_until=retain_until, storage_class=storage_class)

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        return self.inner.get(handle, offset=offset, length=length)

    def head(self, handle: Handle) -> ObjectInfo:
        return self.inner.head(handle)

    def list(self, kind: Kind) -> Iterator[ObjectInfo]:
        return self.inner.list(kind)

    def delete(self, handle: Handle) -> None:
        self.inner.delete(handle)

    def retain(self, handle: Handle, until: datetime) -> ObjectInfo:
        return self.inner.retain(handle, until)

    def warmup(self, handles: Iterable[Handle]) -> None:
        self.inner.warmup(handles)

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]:
        return self.inner.warmup_status(handles)
