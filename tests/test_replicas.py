"""Replication over in-memory targets: fan-out, quorum, manifests only where complete, journal, sync, scrub.

A target is taken down by switching its FaultyStore to fail every call, and brought back
by switching it off again: the same thing an unreachable provider looks like after retries.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coldvault.config import Secret
from coldvault.config.model import FormatConfig, Source
from coldvault.engine.backup import BackupOptions, backup
from coldvault.engine.journal import Journal
from coldvault.engine.progress import SilentProgress
from coldvault.engine.replicas import Replicas
from coldvault.engine.restore import restore
from coldvault.engine.staging import Staging
from coldvault.engine.sync import scrub, survey, sync
from coldvault.errors import AlreadyExists, DamagedObject, IntegrityError, NotFound, TargetError
from coldvault.repo.repository import Repository
from coldvault.storage.faults import Faults, FaultyStore
from coldvault.storage.handle import Handle, Kind, object_name
from coldvault.storage.local import LocalStore
from coldvault.storage.memory import MemoryStore
from coldvault.storage.protocol import PutMode

FORMAT = FormatConfig(chunk_min_size=256, chunk_avg_size=1024, chunk_max_size=4096, pack_size=16 << 10)
OPTIONS = BackupOptions(workers=2, compression_level=3, uploads_in_flight=2)
DOWN = Faults(error_rate=1.0)
UP = Faults()


def targets(count: int = 3) -> list[FaultyStore]:
    return [FaultyStore(MemoryStore(f"t{i}"), UP) for i in range(count)]


def replicas_on(stores: list, tmp_path: Path, *, min_targets: int | None = None, limit: int = 1 << 30) -> Replicas:
    return Replicas(
        stores,
        min_targets=min_targets,
        journal=Journal(tmp_path / "journal.sqlite"),
        staging=Staging(tmp_path / "staging", limit),
    )


def blob(text: str) -> tuple[Handle, bytes]:
    data = text.encode()
    return Handle(Kind.DATA, object_name(data)), data


def names(store, kind: Kind = Kind.DATA) -> set[str]:  # type: ignore[no-untyped-def]
    return {info.handle.name for info in store.list(kind)}


def everything(store) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {info.handle.path: info.size for kind in Kind for info in store.list(kind)}


@pytest.fixture
def source(tmp_path: Path) -> Source:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    rng = random.Random(7)
    for i in range(12):
        (data / "sub" / f"f{i}").write_bytes(rng.randbytes(20_000))
    (data / "notes.txt").write_text("cold\n" * 3000)
    return Source(name="files", paths=[data])


# ---- fan-out and quorum --------------------------------------------------------------------


def test_a_put_lands_on_every_target_and_is_journalled_before_it_returns(tmp_path: Path) -> None:
    stores = targets()
    replicas = replicas_on(stores, tmp_path)
    handle, data = blob("pack")
    replicas.put(handle, data)
    for store in stores:
        assert store.get(handle) == data
        assert handle.path in replicas.journal.stored_paths(store.name)


def test_a_failing_target_is_skipped_recorded_as_lagging_and_staged_while_the_quorum_holds(tmp_path: Path) -> None:
    stores = targets()
    replicas = replicas_on(stores, tmp_path, min_targets=2)
    stores[1].faults = DOWN
    first, second = blob("one"), blob("two")
    replicas.put(*first)
    calls = stores[1].injected
    replicas.put(*second)
    assert stores[1].injected == calls, "a target that is down is not asked again in the same run"
    assert set(replicas.down) == {"t1"}
    assert [p for p, _ in replicas.journal.pending("t1")] == sorted([first[0].path, second[0].path])
    assert replicas.staging.load(first[0]) == first[1]


def test_below_the_quorum_a_put_fails_and_says_which_target_and_what_to_do(tmp_path: Path) -> None:
    stores = targets()
    replicas = replicas_on(stores, tmp_path, min_targets=2)
    stores[0].faults = stores[2].faults = DOWN
    with pytest.raises(TargetError) as error:
        replicas.put(*blob("x"))
    message = str(error.value)
    assert "only 1 of 3 targets" in message and "min_targets requires 2" in message
    assert "t0" in message and "run the backup again" in message
    assert blob("x")[0].path in replicas.journal.stored_paths("t1"), "what was stored is remembered"


def test_a_put_that_every_target_already_has_reports_already_exists(tmp_path: Path) -> None:
    replicas = replicas_on(targets(2), tmp_path)
    replicas.put(*blob("same"))
    with pytest.raises(AlreadyExists):
        replicas.put(*blob("same"))


def test_staging_stops_at_its_limit(tmp_path: Path) -> None:
    stores = targets(2)
    replicas = replicas_on(stores, tmp_path, min_targets=1, limit=5)
    stores[1].faults = DOWN
    small, large = blob("abc"), blob("too large for it")
    replicas.put(*small)
    replicas.put(*large)
    assert replicas.staging.load(small[0]) == small[1]
    assert replicas.staging.load(large[0]) is None


# ---- reads ---------------------------------------------------------------------------------


def test_reads_fall_over_to_the_next_target(tmp_path: Path) -> None:
    stores = targets(2)
    replicas = replicas_on(stores, tmp_path)
    handle, data = blob("only on the second")
    stores[1].put(handle, data)
    assert replicas.get(handle) == data
    stores[0].faults = DOWN
    assert replicas.head(handle).size == len(data)
    assert names(replicas) == {handle.name}


def test_a_damaged_copy_is_reported_only_where_a_good_one_was_read_instead(tmp_path: Path) -> None:
    stores = targets(3)
    handle, data = blob("read from the third")
    stores[0].put(handle, b"rot")  # the bytes no longer match the name
    stores[2].put(handle, data)
    replicas = replicas_on(stores, tmp_path)
    assert replicas.get(handle) == data
    assert replicas.damaged == [f"the copy of {handle} on t0 is damaged (t2's was used)"]

    alone = replicas_on(stores[:1], tmp_path / "alone")
    with pytest.raises(DamagedObject, match="on t0"):
        alone.get(handle)
    assert alone.damaged == []  # nothing made up for it: the error says it all


def test_deletes_where_the_object_exists_and_fails_only_if_it_exists_nowhere(tmp_path: Path) -> None:
    first, second = MemoryStore("a"), MemoryStore("b")
    replicas = replicas_on([first, second], tmp_path)
    handle = Handle(Kind.KEY, "ab" * 32)
    second.put(handle, b"slot")  # already gone from the first target
    replicas.delete(handle)
    with pytest.raises(NotFound):
        second.head(handle)
    with pytest.raises(NotFound):
        replicas.delete(handle)


# ---- backups across targets ----------------------------------------------------------------


def init(stores: list, tmp_path: Path, **kwargs) -> tuple[Replicas, Repository]:  # type: ignore[no-untyped-def]
    Repository.init(Replicas(stores), Secret(b"pw"), FORMAT)
    replicas = replicas_on(stores, tmp_path, **kwargs)
    return replicas, Repository.open(replicas, passphrase=Secret(b"pw"))


def test_a_backup_with_one_target_down_completes_on_the_quorum_and_sync_catches_up(
    tmp_path: Path, source: Source
) -> None:
    stores = targets()
    replicas, repo = init(stores, tmp_path, min_targets=2)
    stores[2].faults = DOWN
    result = backup(repo, source, OPTIONS, SilentProgress(), replicas=replicas)
    assert result.targets == ("t0", "t1")
    assert names(stores[0], Kind.SNAPSHOT) == {result.snapshot.id}
    assert not names(stores[2].inner, Kind.SNAPSHOT), "no manifest on the target that lacks its packs"
    assert replicas.journal.lag("t2").objects > 0

    stores[2].faults = UP
    later = replicas_on(stores, tmp_path / "again")  # a new run: nothing is down any more
    results = {r.name: r for r in sync(later, report=lambda _: None)}
    assert results["t2"].missing and set(results["t2"].repaired) == set(results["t2"].missing)
    assert everything(stores[0]) == everything(stores[1]) == everything(stores[2])
    restored = tmp_path / "restored"
    alone = Repository.open(stores[2].inner, passphrase=Secret(b"pw"))
    restore(alone, alone.snapshots()[0], restored, path=None, workers=2, progress=SilentProgress())
    assert (restored / str(source.paths[0]).lstrip("/") / "notes.txt").read_text() == "cold\n" * 3000


def test_the_next_backup_puts_what_a_returning_target_lacks_before_its_manifest(tmp_path: Path, source: Source) -> None:
    stores = targets()
    replicas, repo = init(stores, tmp_path, min_targets=2)
    stores[2].faults = DOWN
    backup(repo, source, OPTIONS, SilentProgress(), replicas=replicas)
    stores[2].faults = UP
    (Path(source.paths[0]) / "new.txt").write_text("more")
    replicas, repo = (
        replicas_on(stores, tmp_path),
        Repository.open(replicas_on(stores, tmp_path), passphrase=Secret(b"pw")),
    )
    replicas = repo.store
    second = backup(repo, source, OPTIONS, SilentProgress(), replicas=replicas)
    assert second.targets == ("t0", "t1", "t2")
    alone = Repository.open(stores[2].inner, passphrase=Secret(b"pw"))
    restored = tmp_path / "restored"
    restore(alone, alone.snapshots()[-1], restored, path=None, workers=2, progress=SilentProgress())
    assert (restored / str(source.paths[0]).lstrip("/") / "new.txt").read_text() == "more"
    assert len(alone.snapshots()) == 1, "the older manifest waits for sync"


def test_below_the_quorum_the_backup_fails_and_the_next_run_reuses_the_stored_packs(
    tmp_path: Path, source: Source
) -> None:
    stores = targets(2)
    replicas, repo = init(stores, tmp_path)
    stores[1].faults = Faults(cut_after=8 << 10)  # packs fail to reach it; small objects still do
    with pytest.raises(TargetError, match="min_targets"):
        backup(repo, source, OPTIONS, SilentProgress(), replicas=replicas)
    assert not names(stores[0], Kind.SNAPSHOT), "a failed backup exposes no snapshot"
    stored = names(stores[0])
    assert stored, "packs reached the healthy target before the failure"

    stores[1].faults = UP
    replicas = replicas_on(stores, tmp_path)
    repo = Repository.open(replicas, passphrase=Secret(b"pw"))
    assert replicas.journal.unindexed_packs(), "the journal remembers packs no index names yet"
    result = backup(repo, source, OPTIONS, SilentProgress(), replicas=replicas)
    assert result.targets == ("t0", "t1")
    assert not replicas.journal.unindexed_packs()
    referenced = {p.name for p in repo.index.packs()}
    assert stored <= referenced, "the packs of the failed run were adopted, not uploaded again"
    packs = [names(s) | names(s, Kind.TREE) for s in stores]
    assert packs[0] == referenced == packs[1]


# ---- scrub ---------------------------------------------------------------------------------


def test_scrub_finds_a_removed_and_a_corrupted_object_and_repairs_both(tmp_path: Path, source: Source) -> None:
    stores = [LocalStore(tmp_path / f"t{i}", name=f"t{i}") for i in range(2)]
    replicas, repo = init(stores, tmp_path)
    backup(repo, source, OPTIONS, SilentProgress(), replicas=replicas)
    removed, corrupted = sorted(names(stores[1]))[:2]
    (tmp_path / "t1" / Handle(Kind.DATA, removed).path).unlink()
    path = tmp_path / "t1" / Handle(Kind.DATA, corrupted).path
    path.chmod(0o644)
    data = path.read_bytes()
    # Flipped, not zeroed: a pack begins with its first blob's 32 random bytes, zero at first once in 256 runs.
    path.write_bytes(bytes([data[0] ^ 1]) + data[1:])

    results = {
        r.name: r for r in scrub(replicas_on(stores, tmp_path), read_fraction=1.0, rng=random.Random(1), report=print)
    }
    t1 = results["t1"]
    assert t1.missing == [Handle(Kind.DATA, removed).path]
    assert t1.damaged == [Handle(Kind.DATA, corrupted).path]
    assert set(t1.repaired) == {Handle(Kind.DATA, removed).path, Handle(Kind.DATA, corrupted).path}
    assert not t1.unrepaired and t1.ok
    assert everything(stores[0]) == everything(stores[1])
    alone = Repository.open(stores[1], passphrase=Secret(b"pw"))
    restore(alone, alone.snapshots()[0], tmp_path / "restored", path=None, workers=2, progress=SilentProgress())


def test_a_locked_damaged_copy_is_reported_as_not_repairable(tmp_path: Path) -> None:
    stores = [MemoryStore("a"), MemoryStore("b")]
    handle, data = blob("locked")
    stores[0].put(handle, data)
    stores[1].put(handle, b"XXXXXX", retain_until=datetime.now(UTC) + timedelta(days=1))
    results = {
        r.name: r for r in scrub(replicas_on(stores, tmp_path), read_fraction=1.0, rng=random.Random(1), report=print)
    }
    assert results["b"].damaged == [handle.path]
    assert "locked" in results["b"].unrepaired[handle.path]
    assert not results["b"].ok


def test_sync_holds_back_snapshots_while_a_pack_cannot_be_copied(tmp_path: Path) -> None:
    first, second = MemoryStore("a"), MemoryStore("b")
    pack, data = blob("archived pack")
    first.put(pack, data, storage_class="DEEP_ARCHIVE")
    snapshot = Handle(Kind.SNAPSHOT, object_name(b"manifest"))
    first.put(snapshot, b"manifest")
    results = {r.name: r for r in sync(replicas_on([first, second], tmp_path), report=print)}
    assert "archived" in results["b"].unrepaired[pack.path]
    assert "held back" in results["b"].unrepaired[snapshot.path]
    assert not names(second, Kind.SNAPSHOT)


def test_scrub_rotates_so_that_repeated_runs_read_every_object(tmp_path: Path) -> None:
    store = MemoryStore("a")
    for i in range(20):
        store.put(*blob(f"object {i}"))
    replicas = replicas_on([store], tmp_path)
    for _ in range(4):
        scrub(replicas, read_fraction=0.25, rng=random.Random(), report=lambda _: None)
    assert len(replicas.journal.last_verified("a")) == 20


def test_the_journal_is_rebuilt_from_the_targets_when_deleted(tmp_path: Path) -> None:
    stores = [MemoryStore("a"), MemoryStore("b")]
    replicas = replicas_on(stores, tmp_path)
    handle, data = blob("kept")
    replicas.put(handle, data)
    os.remove(tmp_path / "journal.sqlite")
    fresh = replicas_on(stores, tmp_path)
    assert not fresh.journal.stored_paths("a")
    survey(fresh)
    assert fresh.journal.stored_paths("a") == fresh.journal.stored_paths("b") == {handle.path}


def test_copy_overwrites_only_with_bytes_that_match_the_name(tmp_path: Path) -> None:
    good, bad = LocalStore(tmp_path / "good", name="good"), LocalStore(tmp_path / "bad", name="bad")
    handle, data = blob("content")
    good.put(handle, b"not the content")  # damaged at the only source
    replicas = replicas_on([good, bad], tmp_path)
    with pytest.raises(IntegrityError):
        replicas.copy(handle, bad, mode=PutMode.OVERWRITE)
    with pytest.raises(NotFound):
        bad.head(handle)
