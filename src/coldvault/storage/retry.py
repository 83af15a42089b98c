"""Retry transient failures with capped exponential backoff and full jitter, honouring Retry-After.

Only ``Transient`` is retried: a refusal (Locked, PermissionDenied, AlreadyExists) or a
missing object does not get better by asking again.  A listing cut short resumes after
the last name it yielded, so a long listing survives a dropped connection without
repeating or skipping objects (listings come in name order, see the Store protocol).

The policy (``RetryPolicy``) is one object per target, shared by ``RetryingStore`` and by the
cloud adapters: an upload in parts retries each part's request alone with it, since retrying
the whole object would send every part already stored again.  A failure already retried as
often as the policy allows comes out as ``RetriesExhausted``, which no enclosing retry tries
again: otherwise a part given up after its retries would be retried once more with the whole
object, multiplying the attempts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import ParamSpec, TypeVar

from coldvault.errors import Transient
from coldvault.storage.forwarding import ForwardingStore
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import BytesLike, Capabilities, ObjectInfo, PutMode, Store

T = TypeVar("T")
P = ParamSpec("P")


class RetriesExhausted(Transient):
    """A transient failure that was retried as often as the policy allows, and failed every time.

    Still ``Transient`` (same message, same exit code: a later run may well succeed), but a retry
    around a larger operation (the whole object around one of its parts) does not try it again.
    """


class RetryPolicy:
    """When a failed request is tried again, and how long to wait first; holds no state between calls."""

    def __init__(
        self,
        retries: int = 5,
        *,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retries = retries
        self._base = base_delay
        self._max = max_delay
        self._rng = rng or random.Random()
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"RetryPolicy(retries={self.retries}, base_delay={self._base}, max_delay={self._max})"

    def call(self, action: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``action(*args, **kwargs)``, tried again after each ``Transient`` until it succeeds or retries run out."""
        failures = 0
        while True:
            try:
                return action(*args, **kwargs)
            except RetriesExhausted:
                raise  # a request inside ``action`` was retried already; doing it all again would multiply that
            except Transient as exc:
                failures += 1
                self.wait_or_raise(failures, exc)

    def wait_or_raise(self, failures: int, exc: Transient) -> None:
        """After the ``failures``-th failure in a row: sleep before the next try, or give up by raising.

        Giving up after retrying raises ``RetriesExhausted``; with nothing retried (``retries`` = 0) the
        failure is raised as it came, so a retry around a larger operation still applies.
        """
        if failures <= self.retries:
            self._sleep(self.delay(failures, exc))
        elif failures > 1:
            raise RetriesExhausted(exc.message, retry_after=exc.retry_after) from exc
        else:
            raise exc

    def delay(self, failures: int, exc: Transient) -> float:
        """Full jitter (spreads a burst of clients apart), but never sooner than the service asked."""
        ceiling = min(self._max, self._base * 2 ** (failures - 1))
        delay = self._rng.uniform(0, ceiling)
        return max(delay, min(exc.retry_after, self._max)) if exc.retry_after else delay


SEND_ONCE = RetryPolicy(retries=0)
"""No retries: for an adapter used on its own, whose failures are left to whatever wraps it."""


class RetryingStore(ForwardingStore):
    def __init__(self, inner: Store, policy: RetryPolicy | None = None) -> None:
        """``policy``: the one the adapter below also uses for the parts of an upload (default: 5 retries)."""
        super().__init__(inner)
        self.policy = policy or RetryPolicy()

    @property
    def capabilities(self) -> Capabilities:
        return self.policy.call(lambda: self.inner.capabilities)

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
        # An upload in parts retries each part inside the adapter; only a part that ran out of
        # retries (RetriesExhausted, not tried again here) or a failure to start or finish the
        # upload reaches this retry, which then sends the whole object again.
        return self.policy.call(
            self.inner.put, handle, data, mode=mode, retain_until=retain_until, storage_class=storage_class
        )

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        return self.policy.call(self.inner.get, handle, offset=offset, length=length)

    def head(self, handle: Handle) -> ObjectInfo:
        return self.policy.call(self.inner.head, handle)

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
            except RetriesExhausted:
                raise
            except Transient as exc:
                failures += 1
                self.policy.wait_or_raise(failures, exc)

    def delete(self, handle: Handle) -> None:
        self.policy.call(self.inner.delete, handle)

    def retain(self, handle: Handle, until: datetime) -> ObjectInfo:
        return self.policy.call(self.inner.retain, handle, until)

    def warmup(self, handles: Iterable[Handle]) -> None:
        handles = list(handles)
        self.policy.call(self.inner.warmup, handles)

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]:
        handles = list(handles)
        return self.policy.call(self.inner.warmup_status, handles)
