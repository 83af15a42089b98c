"""check --read-data reads packs side by side: the same verdict and the same errors, in the same order,
whatever the number of workers, and never more packs in memory than workers."""

from __future__ import annotations

import random
import threading
import time

import pytest

from coldvault.config import Secret
from coldvault.config.model import FormatConfig, Source
from coldvault.engine import check as check_module
from coldvault.engine.backup import BackupOptions, backup
from coldvault.engine.check import check
from coldvault.engine.progress import SilentProgress
from coldvault.repo.repository import PACK_KINDS, Repository
from coldvault.storage.forwarding import ForwardingStore
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.memory import MemoryStore

# Small chunks and packs: a few hundred KiB make a dozen packs.
FORMAT = FormatConfig(chunk_min_size=256, chunk_avg_size=1024, chunk_max_size=4096, pack_size=32 << 10)


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> tuple[MemoryStore, Repository]:
    """A repository whose data fills many packs: incompressible files, so nothing shrinks."""
    source = tmp_path_factory.mktemp("source")
    for number in range(8):
        (source / f"file-{number}").write_bytes(random.Random(number).randbytes(48 << 10))
    store = MemoryStore()
    repo = Repository.init(store, Secret(b"pw"), FORMAT)
    backup(repo, Source(name="files", paths=[source]), BackupOptions(workers=2, compression_level=3), SilentProgress())
    return store, repo


def reopened(store: MemoryStore | ForwardingStore, repo: Repository) -> Repository:
    return Repository.open(store, recovery_key=repo.master_key)


def pack_handles(repo: Repository) -> list[Handle]:
    return sorted((Handle(PACK_KINDS[p.kind], p.name) for p in repo.index.packs()), key=lambda h: h.name)


@pytest.mark.parametrize("workers", [1, 3])
def test_every_damaged_pack_is_named_in_pack_order_whatever_the_workers(
    backed_up: tuple[MemoryStore, Repository], workers: int
) -> None:
    store, repo = backed_up
    packs = pack_handles(repo)
    data_packs = [handle for handle in packs if handle.kind is Kind.DATA]  # a damaged listing fails earlier too
    assert len(data_packs) >= 10
    damaged = [data_packs[1], data_packs[4], data_packs[-1]]
    for handle in damaged:
        store.corrupt(handle, position=len(store.get(handle)) // 2)
    try:
        result = check(
            reopened(store, repo), read_fraction=1.0, progress=SilentProgress(), rng=random.Random(0), workers=workers
        )
    finally:
        for handle in damaged:
            store.corrupt(handle, position=len(store.get(handle)) // 2)  # flip it back
    assert len(result.errors) == len(damaged), result.errors
    assert all(str(handle) in error for handle, error in zip(damaged, result.errors, strict=True)), result.errors
    assert result.packs_read == len(packs) - len(damaged)
    damaged_names = {handle.name for handle in damaged}
    assert result.bytes_read == sum(p.length for p in repo.index.packs() if p.name not in damaged_names)


class PackReadsAtOnce(ForwardingStore):
    """Counts the pack reads in progress at once; each lingers a moment, so that more overlaps than allowed show."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        self._reading = 0
        self.most = 0
        self._started_since_armed: int | None = None  # None: no read waits
        self._second_started = threading.Event()

    def first_read_waits_for_a_second(self) -> None:
        """From now on, the first pack read goes on only once a second one has started, so that reads side by
        side overlap however late the machine runs the other workers.  Reads one at a time never start a second
        while the first waits: it gives up after 30 s, and ``most`` stays 1."""
        with self._lock:
            self._started_since_armed = 0

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        if handle.kind not in PACK_KINDS.values():
            return super().get(handle, offset=offset, length=length)
        with self._lock:
            self._reading += 1
            self.most = max(self.most, self._reading)
            waits = False
            if self._started_since_armed is not None:
                self._started_since_armed += 1
                waits = self._started_since_armed == 1
                if self._started_since_armed == 2:
                    self._second_started.set()
        try:
            if waits:
                self._second_started.wait(timeout=30)
            time.sleep(0.01)
            return super().get(handle, offset=offset, length=length)
        finally:
            with self._lock:
                self._reading -= 1


def test_packs_are_read_side_by_side_never_more_than_the_workers(backed_up: tuple[MemoryStore, Repository]) -> None:
    store, repo = backed_up
    counting = PackReadsAtOnce(store)
    result = check(
        reopened(counting, repo),
        read_fraction=1.0,
        progress=SilentProgress(),
        rng=random.Random(0),
        workers=3,
        # Armed as the packs' reading starts: the structure checks before it read tree packs one at a time.
        before_reading=lambda _: counting.first_read_waits_for_a_second(),
    )
    assert result.ok, result.errors
    assert result.packs_read == len(pack_handles(repo))
    assert 1 < counting.most <= 3


def test_every_pack_read_hands_its_memory_back(
    backed_up: tuple[MemoryStore, Repository], monkeypatch: pytest.MonkeyPatch
) -> None:
    # After each whole pack, not once at the end: the heaps grew while packs were read (see engine.heap).
    given_back = []
    monkeypatch.setattr(check_module, "give_back_freed_memory", lambda: given_back.append(1))
    store, repo = backed_up
    result = check(reopened(store, repo), read_fraction=1.0, progress=SilentProgress(), rng=random.Random(0), workers=2)
    assert result.ok and len(given_back) == result.packs_read == len(pack_handles(repo))


def test_a_sample_reads_only_its_share(backed_up: tuple[MemoryStore, Repository]) -> None:
    store, repo = backed_up
    result = check(
        reopened(store, repo), read_fraction=0.25, progress=SilentProgress(), rng=random.Random(0), workers=2
    )
    assert result.ok and result.packs_read == round(len(pack_handles(repo)) * 0.25)


def test_large_packs_are_read_fewer_at_a_time(
    backed_up: tuple[MemoryStore, Repository], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Here every pack is larger than the bytes allowed in flight: one at a time, as large packs would be."""
    store, repo = backed_up
    monkeypatch.setattr(check_module, "_PACK_BYTES_IN_FLIGHT", 1)
    counting = PackReadsAtOnce(store)
    result = check(
        reopened(counting, repo), read_fraction=1.0, progress=SilentProgress(), rng=random.Random(0), workers=3
    )
    assert result.ok and result.packs_read == len(pack_handles(repo))
    assert counting.most == 1


def test_a_damaged_index_object_is_named_once_and_blamed_for_the_packs_it_leaves_unindexed(
    backed_up: tuple[MemoryStore, Repository],
) -> None:
    store, repo = backed_up
    handle = next(info.handle for info in store.list(Kind.INDEX))
    store.corrupt(handle, position=len(store.get(handle)) // 2)
    try:
        result = check(
            reopened(store, repo), read_fraction=0, progress=SilentProgress(), rng=random.Random(0), workers=1
        )
    finally:
        store.corrupt(handle, position=len(store.get(handle)) // 2)  # flip it back
    index_errors = [error for error in result.errors if handle.name[:12] in error]
    assert len(index_errors) == 1 and index_errors[0].count(handle.name[:12]) == 1, result.errors
    assert any("damaged" in warning and "not in any readable index" in warning for warning in result.warnings)
