"""Lock maintenance on a fake clock: shared packs extended to what the newest snapshot needs, never
shortened, forgotten snapshots needing nothing, and the drill catching a lock that falls short."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coldvault.clock import FakeClock
from coldvault.config import Secret
from coldvault.config.model import FormatConfig, Source
from coldvault.engine.backup import BackupOptions, backup
from coldvault.engine.drill import Coverage, Sampling, drill_target
from coldvault.engine.locks import LockPolicy, References, TargetLocks, maintain_target, required_locks
from coldvault.engine.progress import SilentProgress
from coldvault.repo.manifest import Snapshot
from coldvault.repo.repository import Repository
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.memory import MemoryStore
from coldvault.storage.policy import PolicyStore

FORMAT = FormatConfig(chunk_min_size=256, chunk_avg_size=1024, chunk_max_size=4096, pack_size=16 << 10)
AHEAD = timedelta(days=7)
LOCK = LockPolicy("compliance", 30, AHEAD)


class Repo:
    """A repository on one locked memory store, backed up on a fake clock."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(datetime(2026, 1, 1, 2, tzinfo=UTC))
        self.store = MemoryStore(clock=self.clock)
        locked = PolicyStore(self.store, lock_days=LOCK.days, pack_storage_class=None, clock=self.clock)
        self.repo = Repository.init(locked, Secret(b"pw"), FORMAT, clock=self.clock)
        self.tree = tmp_path / "src"
        self.tree.mkdir()
        (self.tree / "big").write_bytes(random.Random(1).randbytes(200_000))
        self.source = Source(name="files", paths=[self.tree])

    def backup(self, *, change: bytes = b"") -> Snapshot:
        if change:
            (self.tree / "small").write_bytes(change)
        return backup(self.repo, self.source, BackupOptions(workers=2, compression_level=3), SilentProgress()).snapshot

    def maintain(self, *, dry_run: bool = False) -> TargetLocks:
        snapshots = self.repo.snapshots()
        references = References(self.repo)
        needs = {s.id: references.objects(s) for s in snapshots}
        return maintain_target("mem", self.store, LOCK, snapshots, needs, now=self.clock(), dry_run=dry_run)

    def shortfalls(self) -> list[str]:
        """Every object a retained snapshot needs that is locked less long than that snapshot."""
        snapshots = self.repo.snapshots()
        references = References(self.repo)
        required = required_locks(snapshots, {s.id: references.objects(s) for s in snapshots}, LOCK.days)
        return [str(h) for h, (need, _) in required.items() if (self.store.head(h).retain_until or need) < need]


@pytest.fixture
def r(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


def test_a_snapshot_sharing_old_packs_gets_their_locks_extended(r: Repo) -> None:
    first = r.backup()
    r.clock.advance(days=20)
    second = r.backup(change=b"new")
    shared = References(r.repo).packs(first) & References(r.repo).packs(second)
    assert shared and r.shortfalls()
    for handle in shared:  # written on day 0: locked to day 30, while the day-20 snapshot needs day 50
        assert r.store.head(handle).retain_until == first.time + timedelta(days=30)

    dry = r.maintain(dry_run=True)
    assert set(dry.extended) >= {str(h) for h in shared} and r.shortfalls()  # a dry run changes nothing
    done = r.maintain()
    assert done.ok and done.extended == dry.extended and not r.shortfalls()
    for handle in shared:
        assert r.store.head(handle).retain_until == second.time + timedelta(days=30) + AHEAD
    config = r.store.head(Handle(Kind.CONFIG)).retain_until
    assert config is not None and config >= second.time + timedelta(days=30)

    again = r.maintain()
    assert again.extended == [] and again.checked == done.checked  # extended ahead: nothing to do tomorrow


def test_locks_are_never_shortened(r: Repo) -> None:
    r.backup()
    r.clock.advance(days=20)
    r.backup(change=b"new")
    r.maintain()
    before = {info.handle: r.store.head(info.handle).retain_until for info in r.store.list(Kind.DATA)}
    r.clock.advance(days=1)
    r.repo.forget([s.id for s in r.repo.snapshots()[1:]], host="h", username="u")  # the newest goes
    assert r.maintain().extended == []
    assert {h: r.store.head(h).retain_until for h in before} == before


def test_forgotten_snapshots_need_no_locks(r: Repo) -> None:
    r.backup()
    r.clock.advance(days=20)
    second = r.backup(change=b"new")
    r.repo.forget([second.id], host="h", username="u")
    assert r.shortfalls() == [] and r.maintain().extended == []


def test_a_missing_object_is_reported_not_extended(r: Repo) -> None:
    snapshot = r.backup()
    (pack, *_) = sorted(References(r.repo).packs(snapshot), key=str)
    r.store.remove_silently(pack)
    result = r.maintain()
    assert not result.ok and result.missing == [f"{pack} (needed by snapshot {snapshot.id[:12]})"]


def test_the_drill_fails_on_a_shared_pack_locked_too_short_until_maintain(r: Repo) -> None:
    r.backup()
    r.clock.advance(days=20)
    newest = r.backup(change=b"new")

    def drill() -> list[str]:
        alone = Repository.open(r.store, recovery_key=r.repo.master_key, clock=r.clock)
        result = drill_target(
            "mem", alone, r.store, [newest.id], 1, Sampling(files=4), LOCK, r.clock(), Coverage(30, {}, 1.0),
            report=lambda _: None, workers=2,
        )  # fmt: skip
        assert not result.errors
        return result.lock_violations

    violations = drill()
    assert violations and all("shorter than what a snapshot that shares it needs" in v for v in violations)
    assert all("run 'coldvault maintain'" in v for v in violations)
    r.maintain()
    assert drill() == []
