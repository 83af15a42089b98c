"""Retry transient failures with capped exponential backoff and full jitter, honouring Retry-After.

Only ``Transient`` is retried: a refusal (Locked, PermissionDenied, AlreadyExists) or a
missing object does not get better by asking again.  A listing cut short resumes after
the last name it yielded, so a long listing survives a dropped connection without
repeating or skipping objects (listings come in name order, see the Store protocol).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TypeVar

from coldvault.errors import Transient
from coldvault.storage.forwarding import ForwardingStore
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import BytesLike, Capabilities, ObjectInfo, PutMode, Store

T = TypeVar("T")


class RetryingStore(ForwardingStore):
    def __init__(
        self,
        inner: Store,
        *,
        retries: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(inner)
        self.retries = retries
        self._base = base_delay
        self._max = max_delay
        self._rng = rng or random.Random()
        self._sleep = sleep

    @property
    def capabilities(self) -> Capabilities:
        return self._retry(lambda: self.inner.capabilities)

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        # A create retried after its first attempt landed fails with AlreadyExists; names are
        # hashes of content, so callers already treat that as "the same bytes are stored".
        return self._retry(
            lambda: self.inner.put(handle, data, mode=mode, retain_until=retain_until, storage_class=storage_class)
        )

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        return self._retry(lambda: self.inner.get(handle, offset=offset, length=length))

    def head(self, handle: Handle) -> ObjectInfo:
        return self._retry(lambda: self.inner.head(handle))

    def list(self, kind: Kind) -> Iterator[ObjectInfo]:
        last: str | None = None
        failures = 0
        while True:
            try:
                for info in self.inner.list(kind):
                    if last is not None and info.handle.name <= last:
                        continue  # already yielded before the listing was cut
                    yield info
                    last = info.handle.name
                    failures = 0
                return
            except Transient as exc:
                failures += 1
                self._wait_or_raise(failures, exc)

    def delete(self, handle: Handle) -> None:
        self._retry(lambda: self.inner.delete(handle))

    def warmup(self, handles: Iterable[Handle]) -> None:
        handles = list(handles)
        self._retry(lambda: self.inner.warmup(handles))

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]:
        handles = list(handles)
        return self._retry(lambda: self.inner.warmup_status(handles))

    def _retry(self, action: Callable[[], T]) -> T:
        failures = 0
        while True:
            try:
                return action()
            except Transient as exc:
                failures += 1
                self._wait_or_raise(failures, exc)

    def _wait_or_raise(self, failures: int, exc: Transient) -> None:
        if failures > self.retries:
            raise exc
        self._sleep(self._delay(failures, exc))

    def _delay(self, failures: int, exc: Transient) -> float:
        """Full jitter (spreads a burst of clients apart), but never sooner than the service asked."""
        ceiling = min(self._max, self._base * 2 ** (failures - 1))
        delay = self._rng.uniform(0, ceiling)
        return max(delay, min(exc.retry_after, self._max)) if exc.retry_after else delay
