"""Restoring from archive tiers: warm-up is requested for exactly the packs needed, and waited for."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from coldvault.clock import FakeClock
from coldvault.config import Secret
from coldvault.config.model import FormatConfig, Source
from coldvault.engine.backup import BackupOptions, backup
from coldvault.engine.progress import SilentProgress
from coldvault.engine.restore import restore, select_nodes
from coldvault.engine.warmup import packs_needed, warm_up
from coldvault.repo.repository import Repository
from coldvault.storage.handle import Kind
from coldvault.storage.memory import MemoryStore
from coldvault.storage.policy import PolicyStore

FORMAT = FormatConfig(chunk_min_size=1024, chunk_avg_size=4096, chunk_max_size=16384, pack_size=32768)


def _archived_repo(tmp_path: Path, clock: FakeClock) -> tuple[Repository, MemoryStore]:
    memory = MemoryStore(clock=clock, warmup_delay=timedelta(hours=5))
    store = PolicyStore(memory, lock_days=30, pack_storage_class="DEEP_ARCHIVE", clock=clock)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        (data / f"f{i}").write_bytes(os.urandom(60_000))  # incompressible: each file fills packs of its own
    repo = Repository.init(store, Secret(b"pw"), FORMAT)
    backup(repo, Source(name="files", paths=[data]), BackupOptions(workers=2, compression_level=1), SilentProgress())
    return Repository.open(store, passphrase=Secret(b"pw")), memory


def test_only_data_packs_are_archived_and_all_of_them_locked(tmp_path: Path) -> None:
    clock = FakeClock()
    _, memory = _archived_repo(tmp_path, clock)
    for kind in Kind:
        for info in memory.list(kind):
            assert info.archived == (kind is Kind.DATA), info
            assert info.retain_until == clock() + timedelta(days=30)


def test_restore_waits_for_warmup_then_restores(tmp_path: Path) -> None:
    clock = FakeClock()
    repo, memory = _archived_repo(tmp_path, clock)
    snapshot = repo.snapshots()[0]
    needed = set(packs_needed(repo, repo.listing(snapshot)))
    assert needed and needed <= {i.handle for i in memory.list(Kind.DATA)}

    messages: list[str] = []
    waited = warm_up(
        repo,
        needed,
        report=messages.append,
        poll_interval=600,
        sleep=lambda seconds: clock.advance(seconds=seconds),
        monotonic=lambda: clock().timestamp(),
    )
    assert waited.packs == len(needed)
    assert waited.waited == timedelta(hours=5).total_seconds()
    assert "warmed up" in messages[-1] and "5.0h" in messages[-1]
    assert memory.warmup_status(needed) == dict.fromkeys(needed, True)

    result = restore(repo, snapshot, tmp_path / "out", path=None, workers=2, progress=SilentProgress())
    assert result.files == 4


def test_a_partial_restore_warms_up_only_what_it_reads(tmp_path: Path) -> None:
    clock = FakeClock()
    repo, memory = _archived_repo(tmp_path, clock)
    snapshot = repo.snapshots()[0]
    one_file = str(tmp_path / "data" / "f0")
    some = set(packs_needed(repo, select_nodes(repo.listing(snapshot), one_file)))
    everything = set(packs_needed(repo, repo.listing(snapshot)))
    assert some < everything
    warm_up(repo, some, report=lambda _: None, poll_interval=1, sleep=lambda s: clock.advance(hours=6))
    assert set(memory.warmup_status(everything).values()) == {True, False}


def test_nothing_to_wait_for_on_a_hot_store(tmp_path: Path) -> None:
    repo = Repository.init(MemoryStore(), Secret(b"pw"), FORMAT)
    assert warm_up(repo, set(), report=lambda _: None).packs == 0
