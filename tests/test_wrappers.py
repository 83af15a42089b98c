"""The store wrappers on their own: retry, concurrency limit, lock and tier policy, fault injection."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from coldvault.clock import FakeClock
from coldvault.errors import Locked, NotFound, Transient
from coldvault.storage.faults import Faults, FaultyStore
from coldvault.storage.forwarding import ForwardingStore
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.limit import LimitedStore
from coldvault.storage.memory import MemoryStore
from coldvault.storage.policy import PolicyStore
from coldvault.storage.protocol import BytesLike, ObjectInfo, PutMode
from coldvault.storage.retry import SEND_ONCE, RetriesExhausted, RetryingStore, RetryPolicy


def handle(i: int | str, kind: Kind = Kind.DATA) -> Handle:
    return Handle(kind, hashlib.sha256(str(i).encode()).hexdigest())


class Flaky(ForwardingStore):
    """Fails the first ``failures`` calls of head with the given error; counts every call."""

    def __init__(self, inner: MemoryStore, failures: int, error: Exception) -> None:
        super().__init__(inner)
        self.failures, self.error, self.calls = failures, error, 0

    def head(self, h: Handle) -> ObjectInfo:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return super().head(h)


def test_retry_backs_off_with_jitter_and_honours_retry_after() -> None:
    memory = MemoryStore()
    memory.put(handle(1), b"x")
    flaky = Flaky(memory, 3, Transient("busy", retry_after=7.0))
    slept: list[float] = []
    store = RetryingStore(flaky, RetryPolicy(5, base_delay=0.5, max_delay=30, rng=random.Random(1), sleep=slept.append))
    assert store.head(handle(1)).size == 1
    assert flaky.calls == 4 and len(slept) == 3
    assert all(s >= 7.0 for s in slept)  # the service asked for 7 s: never sooner


def test_retry_delays_grow_and_stay_capped() -> None:
    flaky = Flaky(MemoryStore(), 100, Transient("down"))
    slept: list[float] = []
    store = RetryingStore(flaky, RetryPolicy(8, base_delay=1, max_delay=4, rng=random.Random(2), sleep=slept.append))
    with pytest.raises(Transient):
        store.head(handle(1))
    assert flaky.calls == 9 and len(slept) == 8
    assert all(0 <= s <= 4 for s in slept) and slept[0] <= 1


@pytest.mark.parametrize("error", [NotFound("gone"), Locked("locked")])
def test_refusals_are_not_retried(error: Exception) -> None:
    flaky = Flaky(MemoryStore(), 1, error)
    store = RetryingStore(flaky, RetryPolicy(sleep=lambda _: pytest.fail("slept")))
    with pytest.raises(type(error)):
        store.head(handle(1))
    assert flaky.calls == 1


class CutListing(ForwardingStore):
    """A listing that drops its connection after ``cut_every`` objects, the first few times."""

    def __init__(self, inner: MemoryStore, cut_every: int, cuts: int) -> None:
        super().__init__(inner)
        self.cut_every, self.cuts = cut_every, cuts

    def list(self, kind: Kind) -> Iterator[ObjectInfo]:
        for n, info in enumerate(self.inner.list(kind)):
            if n == self.cut_every and self.cuts:
                self.cuts -= 1
                raise Transient("connection reset")
            yield info


def test_a_cut_listing_resumes_without_repeating_or_skipping() -> None:
    memory = MemoryStore()
    names = sorted(handle(i).name for i in range(50))
    for name in names:
        memory.put(Handle(Kind.DATA, name), b"x")
    store = RetryingStore(CutListing(memory, cut_every=20, cuts=2), RetryPolicy(sleep=lambda _: None))
    assert [i.handle.name for i in store.list(Kind.DATA)] == names


def test_the_policy_retries_a_call_with_its_arguments_and_backs_off() -> None:
    failures = [Transient("busy", retry_after=3.0), Transient("busy")]
    calls: list[tuple[int, str]] = []

    def action(number: int, *, word: str) -> str:
        calls.append((number, word))
        if failures:
            raise failures.pop(0)
        return f"{word} {number}"

    slept: list[float] = []
    policy = RetryPolicy(5, base_delay=1, max_delay=4, rng=random.Random(3), sleep=slept.append)
    assert policy.call(action, 7, word="part") == "part 7"
    assert calls == [(7, "part")] * 3
    assert len(slept) == 2 and slept[0] >= 3.0 and 0 <= slept[1] <= 2  # Retry-After first, then jitter up to 2 s


def test_the_policy_gives_up_with_retries_exhausted() -> None:
    calls = 0
    first = Transient("SlowDown: reduce your request rate", retry_after=2.0)

    def action() -> None:
        nonlocal calls
        calls += 1
        raise first

    policy = RetryPolicy(2, sleep=lambda _: None)
    with pytest.raises(RetriesExhausted) as raised:
        policy.call(action)
    assert calls == 3
    error = raised.value
    assert isinstance(error, Transient) and error.exit_code == first.exit_code  # still transient, same exit code
    assert str(error) == str(first) and error.retry_after == 2.0 and error.__cause__ is first


@pytest.mark.parametrize("policy", [SEND_ONCE, RetryPolicy(0)], ids=["send-once", "no-retries"])
def test_without_retries_a_failure_comes_out_as_it_came(policy: RetryPolicy) -> None:
    """Nothing was retried, so a retry around a larger operation still applies."""
    error = Transient("busy")

    def action() -> None:
        raise error

    with pytest.raises(Transient) as raised:
        policy.call(action)
    assert raised.value is error and not isinstance(raised.value, RetriesExhausted)


def test_refusals_are_not_retried_by_the_policy() -> None:
    calls = 0

    def action() -> None:
        nonlocal calls
        calls += 1
        raise Locked("locked")

    with pytest.raises(Locked):
        RetryPolicy(5, sleep=lambda _: pytest.fail("slept")).call(action)
    assert calls == 1


class InParts(ForwardingStore):
    """An adapter that uploads in parts of 4 bytes, each request retried with ``policy`` as the cloud adapters do.

    ``failing`` maps a part number (or "start", "finish") to how many times its request fails with Transient.
    """

    def __init__(self, inner: MemoryStore, policy: RetryPolicy, failing: dict[int | str, int]) -> None:
        super().__init__(inner)
        self.policy, self.failing = policy, failing
        self.sent: list[int | str] = []  # every request, in order
        self.puts = 0

    def put(
        self,
        h: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        self.puts += 1
        self._request("start")
        for number in range(0, len(data), 4):
            self.policy.call(self._request, number // 4)
        self._request("finish")
        return super().put(h, data, mode=mode, retain_until=retain_until, storage_class=storage_class)

    def _request(self, what: int | str) -> None:
        self.sent.append(what)
        if self.failing.get(what, 0) > 0:
            self.failing[what] -= 1
            raise Transient(f"{what}: SlowDown")


def test_a_failed_part_is_retried_alone() -> None:
    slept: list[float] = []
    policy = RetryPolicy(3, sleep=slept.append)
    adapter = InParts(MemoryStore(), policy, {1: 2})
    RetryingStore(adapter, policy).put(handle(1), b"x" * 12)
    assert adapter.sent == ["start", 0, 1, 1, 1, 2, "finish"] and adapter.puts == 1
    assert len(slept) == 2
    assert adapter.get(handle(1)) == b"x" * 12


def test_a_part_out_of_retries_is_not_retried_again_with_the_whole_object() -> None:
    policy = RetryPolicy(2, sleep=lambda _: None)
    memory = MemoryStore()
    adapter = InParts(memory, policy, {1: 100})
    with pytest.raises(RetriesExhausted, match="1: SlowDown"):
        RetryingStore(adapter, policy).put(handle(1), b"x" * 12)
    assert adapter.sent == ["start", 0, 1, 1, 1] and adapter.puts == 1
    with pytest.raises(NotFound):
        memory.head(handle(1))


@pytest.mark.parametrize("step", ["start", "finish"])
def test_a_failure_to_start_or_finish_an_upload_in_parts_retries_the_whole(step: str) -> None:
    policy = RetryPolicy(2, sleep=lambda _: None)
    adapter = InParts(MemoryStore(), policy, {step: 1})
    RetryingStore(adapter, policy).put(handle(1), b"x" * 8)
    assert adapter.puts == 2
    assert adapter.get(handle(1)) == b"x" * 8


def test_the_retry_wrapper_uses_the_policy_it_is_given() -> None:
    memory = MemoryStore()
    memory.put(handle(1), b"x")
    flaky = Flaky(memory, 2, Transient("busy"))
    slept: list[float] = []
    store = RetryingStore(flaky, RetryPolicy(1, sleep=slept.append))
    with pytest.raises(RetriesExhausted):
        store.head(handle(1))
    assert flaky.calls == 2 and len(slept) == 1


def test_the_limit_bounds_requests_in_flight() -> None:
    in_flight = peak = started = 0
    lock = threading.Lock()
    # The first three requests wait for each other, so that the limit is reached however the threads are
    # scheduled; with a limit below three they never meet, the wait breaks after 30 s, and peak stays below.
    first_three = threading.Barrier(3, timeout=30)

    class Slow(ForwardingStore):
        def get(self, h: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
            nonlocal in_flight, peak, started
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
                started += 1
                among_the_first_three = started <= 3
            try:
                if among_the_first_three:
                    first_three.wait()
                time.sleep(0.01)  # each lingers, so that a request beyond the limit would show
            finally:
                with lock:
                    in_flight -= 1
            return super().get(h, offset=offset, length=length)

    memory = MemoryStore()
    memory.put(handle(1), b"x")
    store = LimitedStore(Slow(memory), max_in_flight=3)
    threads = [threading.Thread(target=lambda: [store.get(handle(1)) for _ in range(5)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 3


def test_policy_locks_every_object_and_archives_only_data_packs() -> None:
    clock = FakeClock()
    memory = MemoryStore(clock=clock)
    store = PolicyStore(memory, lock_days=90, pack_storage_class="DEEP_ARCHIVE", clock=clock)
    for kind in (Kind.DATA, Kind.TREE, Kind.INDEX, Kind.SNAPSHOT, Kind.KEY):
        info = store.put(handle(kind.value, kind), b"x")
        assert info.retain_until == clock() + timedelta(days=90)
        assert info.storage_class == ("DEEP_ARCHIVE" if kind is Kind.DATA else None)
    store.put(Handle(Kind.CONFIG), b"{}")
    assert memory.head(Handle(Kind.CONFIG)).retain_until == clock() + timedelta(days=90)


def test_policy_without_lock_writes_unlocked_objects() -> None:
    memory = MemoryStore()
    PolicyStore(memory, lock_days=None, pack_storage_class=None).put(handle(1), b"x")
    memory.delete(handle(1))


def test_faults_cut_long_transfers_and_add_latency() -> None:
    memory = MemoryStore()
    slept: list[float] = []
    store = FaultyStore(memory, Faults(cut_after=10, latency=0.25), sleep=slept.append)
    store.put(handle(1), b"short")
    with pytest.raises(Transient, match="connection cut after 10 bytes"):
        store.put(handle(2), b"much longer than ten bytes")
    with pytest.raises(NotFound):
        memory.head(handle(2))  # a cut upload stores nothing
    memory.put(handle(3), b"also longer than ten")
    with pytest.raises(Transient):
        store.get(handle(3))
    assert store.get(handle(3), length=5) == b"also "
    assert store.injected == 2 and slept == [0.25] * 4  # every call waited


def test_fault_decisions_replay_from_the_seed() -> None:
    def run() -> int:
        store = FaultyStore(MemoryStore(), Faults(error_rate=0.5), rng=random.Random(42))
        for i in range(40):
            try:
                store.put(handle(i), b"x")
            except Transient:
                pass
        return store.injected

    assert run() == run() > 0
