"""Run tasks in a thread pool and consume their results in submission order on the caller's thread.

Memory stays bounded: the number of tasks submitted but not yet consumed is
at most ``max_items``, and their weight (bytes) at most ``max_bytes`` when
given; a submitter over a bound consumes the oldest results first.  Consuming on the
caller's thread keeps the consumer single-threaded (the listing, file
descriptors) while hashing, sealing and I/O run in parallel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Generic, TypeVar

Tag = TypeVar("Tag")


class OrderedPipeline(Generic[Tag]):
    def __init__(
        self,
        executor: Executor,
        consume: Callable[[object, Tag], None],
        *,
        max_items: int,
        max_bytes: int | None = None,
    ) -> None:
        self._executor = executor
        self._consume = consume
        self._max_bytes = max_bytes if max_bytes is not None else float("inf")
        self._max_items = max_items
        self._queue: deque[tuple[Future[object], int, Tag]] = deque()
        self._bytes = 0

    def has_room(self, weight: int) -> bool:
        """Whether a task of ``weight`` would be submitted without waiting for an older one."""
        return not self._queue or (self._bytes + weight <= self._max_bytes and len(self._queue) < self._max_items)

    def submit(self, fn: Callable[..., object], *args: object, tag: Tag, weight: int = 0) -> None:
        while not self.has_room(weight):
            self.consume_oldest()
        self._queue.append((self._executor.submit(fn, *args), weight, tag))
        self._bytes += weight

    def put(self, value: object, tag: Tag) -> None:
        """Queue a result that is already known, so it is consumed in its turn."""
        future: Future[object] = Future()
        future.set_result(value)
        while self._queue and len(self._queue) >= self._max_items:
            self.consume_oldest()
        self._queue.append((future, 0, tag))
        self.poll()

    def __len__(self) -> int:
        """Results submitted and not yet consumed."""
        return len(self._queue)

    def poll(self) -> None:
        """Consume every result at the head that is ready, without waiting."""
        while self._queue and self._queue[0][0].done():
            self.consume_oldest()

    def drain(self) -> None:
        while self._queue:
            self.consume_oldest()

    def cancel(self) -> list[Tag]:
        """Drop everything queued (after a failure); returns the tags so their resources can be released."""
        tags = []
        while self._queue:
            future, _, tag = self._queue.popleft()
            future.cancel()
            tags.append(tag)
        self._bytes = 0
        return tags

    def consume_oldest(self) -> None:
        """Wait for the oldest result and consume it."""
        future, weight, tag = self._queue.popleft()
        self._bytes -= weight
        self._consume(future.result(), tag)
