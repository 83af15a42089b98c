"""A local cache in front of a store, for objects that never change: indexes and snapshot manifests.

Those objects are named by the BLAKE3 hash of their bytes, so a cached copy is
verified on every read and can never be stale; a copy that fails is dropped
and fetched again.  The cache is only an optimisation: deleted, it costs
downloads, never correctness.  Listings always come from the store, which is
the source of truth.  One cache can serve several repositories, since equal
names mean equal bytes.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path

from coldvault.storage.forwarding import ForwardingStore
from coldvault.storage.handle import Handle, Kind, object_name
from coldvault.storage.private_file import write_private_file
from coldvault.storage.protocol import BytesLike, ObjectInfo, PutMode, Store

CACHED_KINDS = frozenset({Kind.INDEX, Kind.SNAPSHOT})


class CachingStore(ForwardingStore):
    def __init__(self, store: Store, root: Path) -> None:
        super().__init__(store)
        self._root = Path(root)

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        info = super().put(handle, data, mode=mode, retain_until=retain_until, storage_class=storage_class)
        if handle.kind in CACHED_KINDS:
            self._save(handle, data)
        return info

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        if handle.kind not in CACHED_KINDS:
            return super().get(handle, offset=offset, length=length)
        data = self._load(handle)
        if data is None:
            data = super().get(handle)
            if object_name(data) == handle.name:  # never cache what the reader is about to reject
                self._save(handle, data)
        end = None if length is None else offset + length
        return data[offset:end] if offset or length is not None else data

    def delete(self, handle: Handle) -> None:
        super().delete(handle)
        with contextlib.suppress(FileNotFoundError):
            self._path(handle).unlink()

    def _path(self, handle: Handle) -> Path:
        return self._root / handle.path

    def _load(self, handle: Handle) -> bytes | None:
        path = self._path(handle)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if object_name(data) != handle.name:
            with contextlib.suppress(OSError):
                path.unlink()  # damaged on disk: fetch a good copy
            return None
        return data

    def _save(self, handle: Handle, data: BytesLike) -> None:
        """Best effort: a cache that cannot be written (disk full, read-only) only costs speed."""
        with contextlib.suppress(OSError):
            write_private_file(self._path(handle), data)
