"""What a target's config asks of every write: retention at upload, and the archive class for packs."""

from __future__ import annotations

from datetime import datetime, timedelta

from coldvault.clock import Clock, system_clock
from coldvault.storage.forwarding import ForwardingStore
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import BytesLike, ObjectInfo, PutMode, Store

# Only data packs go to an archive class.  Everything `snapshots`, `ls` and `check` read
# (config, key slots, indexes, manifests, listing packs) stays readable without warm-up.
ARCHIVABLE = frozenset({Kind.DATA})
# Prune's lease must be deleted when prune ends, and taken over when it expires: never locked.
UNLOCKED = frozenset({Kind.LEASE})


class PolicyStore(ForwardingStore):
    def __init__(
        self,
        inner: Store,
        *,
        lock_days: int | None,
        pack_storage_class: str | None,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(inner)
        self.lock_days = lock_days
        self.pack_storage_class = pack_storage_class
        self._clock = clock

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        if retain_until is None and self.lock_days is not None and handle.kind not in UNLOCKED:
            retain_until = self._clock() + timedelta(days=self.lock_days)
        if storage_class is None and handle.kind in ARCHIVABLE:
            storage_class = self.pack_storage_class
        return super().put(handle, data, mode=mode, retain_until=retain_until, storage_class=storage_class)
