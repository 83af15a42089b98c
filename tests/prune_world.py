"""A repository on two locked memory targets and a fake clock, for the prune and repack tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from coldvault.clock import FakeClock
from coldvault.config import Secret
from coldvault.config.model import FormatConfig, Source
from coldvault.engine.backup import BackupOptions, backup
from coldvault.engine.check import check
from coldvault.engine.lease import Lease
from coldvault.engine.locks import LockPolicy, References, maintain_target
from coldvault.engine.progress import SilentProgress
from coldvault.engine.prune import PruneResult, RepackOptions, prune
from coldvault.engine.replicas import Replicas
from coldvault.engine.retention import Policy, apply_policy
from coldvault.repo.blob import BlobKind
from coldvault.repo.manifest import Snapshot
from coldvault.repo.repository import Repository
from coldvault.repo.tree import FILE
from coldvault.storage.handle import Kind
from coldvault.storage.memory import MemoryStore
from coldvault.storage.policy import PolicyStore
from coldvault.storage.protocol import Store

FORMAT = FormatConfig(chunk_min_size=256, chunk_avg_size=1024, chunk_max_size=4096, pack_size=8 << 10)
LOCK_DAYS = 10
MARGIN = timedelta(hours=1)


class World:
    """Two locked memory targets behind one repository, a source tree, and the contents each
    snapshot must restore to."""

    def __init__(self, root: Path) -> None:
        self.clock = FakeClock(datetime(2026, 1, 1, 2, tzinfo=UTC))
        self.raw = [MemoryStore(name, clock=self.clock) for name in ("a", "b")]
        self.stores: list[Store] = [
            PolicyStore(s, lock_days=LOCK_DAYS, pack_storage_class=None, clock=self.clock) for s in self.raw
        ]
        self.replicas = Replicas(self.stores)
        self.repo = Repository.init(self.replicas, Secret(b"pw"), FORMAT, clock=self.clock)
        self.tree = root / "src"
        self.tree.mkdir()
        self.source = Source(name="files", paths=[self.tree])
        self.expected: dict[str, dict[str, bytes]] = {}
        self.rng = random.Random(7)

    def fresh(self) -> Repository:
        """The repository as a new process sees it: nothing cached."""
        return Repository.open(self.replicas, recovery_key=self.repo.master_key, clock=self.clock)

    def write(self, name: str, size: int = 20_000) -> None:
        (self.tree / name).write_bytes(self.rng.randbytes(size))

    def backup(self, repo: Repository | None = None, *, workers: int = 2, replicas: Replicas | None = None) -> Snapshot:
        """``workers=1`` stores chunks in the order of the walk, so a test can tell which share a pack;
        ``replicas`` are the targets it reaches (all by default)."""
        replicas = replicas or self.replicas
        repo = repo or Repository.open(replicas, recovery_key=self.repo.master_key, clock=self.clock)
        options = BackupOptions(workers=workers, compression_level=1)
        snapshot = backup(repo, self.source, options, SilentProgress(), replicas=replicas).snapshot
        self.expected[snapshot.id] = {p.name: p.read_bytes() for p in self.tree.iterdir()}
        return snapshot

    def forget(self, policy: Policy) -> None:
        repo = self.fresh()
        doomed = [d.snapshot.id for d in apply_policy(repo.snapshots(), policy) if not d.keep]
        if doomed:
            repo.forget(doomed, host="h", username="u")

    def maintain(self) -> None:
        repo = self.fresh()
        snapshots = repo.snapshots()
        references = References(repo)
        needs = {s.id: references.objects(s) for s in snapshots}
        policy = LockPolicy("compliance", LOCK_DAYS)
        for store in self.stores:
            result = maintain_target(store.name, store, policy, snapshots, needs, now=self.clock())
            assert result.ok, result

    def prune(self, repack: RepackOptions | None = None) -> PruneResult:
        with Lease(self.stores, self.clock) as lease:
            replicas = Replicas(self.stores)  # the stores as the test has them now, wrappers included
            repack = repack or RepackOptions()
            return prune(self.fresh(), replicas, lease, clock=self.clock, margin=MARGIN, repack=repack)

    def assert_sound(self) -> None:
        """check passes, and every retained snapshot restores to what was backed up, from each target."""
        for store in self.stores:
            repo = Repository.open(store, recovery_key=self.repo.master_key, clock=self.clock)
            result = check(repo, read_fraction=1.0, progress=SilentProgress(), rng=random.Random(0), workers=2)
            assert result.ok, result.errors
            for snapshot in repo.snapshots():
                restored = {
                    node.path.decode().rsplit("/", 1)[-1]: b"".join(
                        repo.read_blob(BlobKind.DATA, c) for c in node.chunks
                    )
                    for node in repo.listing(snapshot)
                    if node.type == FILE
                }
                assert restored == self.expected[snapshot.id]

    def objects(self, kind: Kind) -> set[str]:
        return {info.handle.name for store in self.raw for info in store.list(kind)}
