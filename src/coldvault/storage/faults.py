"""Inject the failures real networks and providers produce, for tests and drills of the retry path.

Every decision comes from a seeded random generator, so a failing run can be replayed.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from coldvault.errors import Transient
from coldvault.storage.forwarding import ForwardingStore
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import BytesLike, ObjectInfo, PutMode, Store


@dataclass(frozen=True)
class Faults:
    error_rate: float = 0.0  # share of calls that fail with Transient before reaching the store
    latency: float = 0.0  # seconds added to every call
    corrupt_rate: float = 0.0  # share of reads that come back with one bit flipped
    cut_after: int | None = None  # transfers longer than this may fail part-way, as a dropped connection does
    cut_rate: float = 1.0  # share of those transfers that are cut
    retry_after: float | None = None  # what the injected errors ask for, like a 503 with Retry-After


class FaultyStore(ForwardingStore):
    def __init__(
        self,
        inner: Store,
        faults: Faults,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(inner)
        self.faults = faults
        self.injected = 0  # how many failures were injected, for tests to assert the path was taken
        self._rng = rng or random.Random(0)
        self._sleep = sleep
        self._lock = threading.Lock()

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        self._before_call(f"store {handle}")
        self._cut(len(data), f"store {handle}")  # an upload cut short stores nothing: puts are atomic
        return super().put(handle, data, mode=mode, retain_until=retain_until, storage_class=storage_class)

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        self._before_call(f"read {handle}")
        data = super().get(handle, offset=offset, length=length)
        self._cut(len(data), f"read {handle}")
        if data and self._roll(self.faults.corrupt_rate):
            damaged = bytearray(data)
            damaged[self._rng.randrange(len(damaged))] ^= 1 << self._rng.randrange(8)
            return bytes(damaged)
        return data

    def head(self, handle: Handle) -> ObjectInfo:
        self._before_call(f"look up {handle}")
        return super().head(handle)

    def list(self, kind: Kind) -> Iterator[ObjectInfo]:
        self._before_call(f"list {kind.value}")
        for info in super().list(kind):
            self._before_call(f"list {kind.value}")  # a listing can also break between pages
            yield info

    def delete(self, handle: Handle) -> None:
        self._before_call(f"delete {handle}")
        super().delete(handle)

    def retain(self, handle: Handle, until: datetime) -> ObjectInfo:
        self._before_call(f"extend the lock of {handle}")
        return super().retain(handle, until)

    def warmup(self, handles: Iterable[Handle]) -> None:
        self._before_call("warm up")
        super().warmup(handles)

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]:
        self._before_call("warm-up status")
        return super().warmup_status(handles)

    def _before_call(self, action: str) -> None:
        if self.faults.latency:
            self._sleep(self.faults.latency)
        if self._roll(self.faults.error_rate):
            self._inject(f"{self.name}: could not {action}: injected failure")

    def _cut(self, size: int, action: str) -> None:
        if self.faults.cut_after is not None and size > self.faults.cut_after and self._roll(self.faults.cut_rate):
            self._inject(f"{self.name}: could not {action}: connection cut after {self.faults.cut_after} bytes")

    def _roll(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def _inject(self, message: str) -> None:
        with self._lock:
            self.injected += 1
        raise Transient(message, retry_after=self.faults.retry_after)
