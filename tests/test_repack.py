"""Repack, on two locked memory targets and a fake clock: a pack that is mostly garbage has its
needed chunks copied into a new pack once its lock has ended everywhere, the old pack goes only
after the new one and its index are stored on every target, and each target stays restorable on
its own through every interruption."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from prune_world import LOCK_DAYS, MARGIN, World

from coldvault.engine.backup import ADOPT_WINDOW
from coldvault.engine.holdings import Holdings
from coldvault.engine.lease import Lease
from coldvault.engine.locks import References
from coldvault.engine.prune import RepackOptions, prune
from coldvault.engine.repack import Repack, mostly_garbage
from coldvault.engine.replicas import Replicas
from coldvault.engine.retention import Policy
from coldvault.errors import RepositoryError, TargetError
from coldvault.repo.blob import BlobKind
from coldvault.repo.index import PackRecord
from coldvault.repo.pack import PackEntry
from coldvault.repo.repository import PACK_KINDS, IndexObject
from coldvault.repo.session import RUNNING, SessionMarker
from coldvault.storage.forwarding import ForwardingStore
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.memory import MemoryStore
from coldvault.storage.protocol import BytesLike, ObjectInfo, PutMode, Store


class RefusesPuts(ForwardingStore):
    """A target that stops taking objects of some kinds: the outage (or the prune killed) between
    two of repack's steps.  A fake store, not a mock: everything else reaches the real one."""

    def __init__(self, inner: Store, *kinds: Kind) -> None:
        super().__init__(inner)
        self.kinds = kinds

    def put(self, handle: Handle, data: BytesLike, *, mode: PutMode = PutMode.CREATE, **kwargs: object) -> ObjectInfo:
        if handle.kind in self.kinds:
            raise TargetError(f"{self.name}: unreachable")
        return super().put(handle, data, mode=mode, **kwargs)  # type: ignore[arg-type]


class BeforeFirstPut(ForwardingStore):
    """Runs ``event`` once, just before the first pack is stored: something happening while prune
    repacks (a fake store around the real one, not a mock)."""

    def __init__(self, inner: Store, event: Callable[[], None]) -> None:
        super().__init__(inner)
        self.event: Callable[[], None] | None = event

    def put(self, handle: Handle, data: BytesLike, *, mode: PutMode = PutMode.CREATE, **kwargs: object) -> ObjectInfo:
        if handle.kind in (Kind.DATA, Kind.TREE) and self.event is not None:
            event, self.event = self.event, None
            event()
        return super().put(handle, data, mode=mode, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def make_mostly_garbage(world: World) -> list[Repack]:
    """A small file backed up between two large ones, then the large ones deleted and the first
    snapshot forgotten: the pack holding the small file is mostly the large ones' garbage."""
    world.write("a-drop", 30_000)
    world.write("b-keep", 1_000)
    world.write("c-drop", 30_000)
    first = world.backup(workers=1)  # one worker: chunks packed in the order of the walk
    world.clock.advance(days=1)
    (world.tree / "a-drop").unlink()
    (world.tree / "c-drop").unlink()
    second = world.backup()
    world.forget(Policy(last=1))
    repo = world.fresh()
    references = References(repo)
    assert references.packs(first) & references.packs(second)  # the pack they share
    candidates = mostly_garbage(repo.index.packs(), references.chunks(second), 0.5)
    assert candidates and all(r.unused >= 0.5 for r in candidates)
    return candidates


def packs(world: World, store: int) -> dict[str, ObjectInfo]:
    return {info.handle.name: info for kind in (Kind.DATA, Kind.TREE) for info in world.raw[store].list(kind)}


def pack_names(world: World, store: int) -> set[str]:
    return set(packs(world, store))


def test_a_mostly_garbage_pack_is_repacked_once_its_lock_ends_everywhere(world: World) -> None:
    candidates = make_mostly_garbage(world)
    old = {r.old.name for r in candidates}
    world.clock.advance(hours=2)
    early = world.prune()
    assert early.repacked == 0 and early.repack_locked == len(candidates)

    world.clock.advance(days=LOCK_DAYS + 1)  # every lock has ended ...
    for r in candidates:  # ... but on target b, where someone extended the old packs' locks
        world.raw[1].retain(Handle(PACK_KINDS[r.old.kind], r.old.name), world.clock() + timedelta(days=2))
    held = world.prune()
    assert held.repacked == 0 and held.repack_locked == len(candidates)
    assert all(old <= pack_names(world, n) for n in (0, 1))

    world.clock.advance(days=3)
    before = sum(info.size for info in packs(world, 0).values())
    done = world.prune()
    assert done.repacked == len(candidates) and done.repack_written
    assert done.repack_bytes == sum(e.length for r in candidates for e in r.keep)
    for n in (0, 1):
        names = pack_names(world, n)
        assert not old & names and set(done.repack_written) <= names
        for name in done.repack_written:  # the copy is locked as any new pack is
            assert packs(world, n)[name].retain_until == world.clock() + timedelta(days=LOCK_DAYS)
    assert sum(info.size for info in packs(world, 0).values()) < before
    world.assert_sound()
    world.clock.advance(hours=2)
    again = world.prune()  # the new pack is all needed data: nothing more to repack
    assert again.repacked == 0 and not again.repack_locked
    world.assert_sound()


def test_the_old_pack_goes_only_after_the_new_one_and_its_index_are_on_every_target(world: World) -> None:
    candidates = make_mostly_garbage(world)
    old = {r.old.name for r in candidates}
    world.clock.advance(days=LOCK_DAYS + 2)
    healthy = world.stores[1]

    world.stores[1] = RefusesPuts(healthy, Kind.DATA, Kind.TREE)  # the new pack reaches a only
    with pytest.raises(TargetError):
        world.prune()
    assert all(old <= pack_names(world, n) for n in (0, 1))
    orphans = pack_names(world, 0) - pack_names(world, 1)
    assert orphans
    world.assert_sound()

    world.stores[1] = RefusesPuts(healthy, Kind.INDEX)  # the new pack is everywhere, its index on a only
    with pytest.raises(TargetError):
        world.prune()
    assert all(old <= pack_names(world, n) for n in (0, 1))
    world.assert_sound()  # b still reads the old pack through its old index; a reads the new one

    world.stores[1] = healthy
    finished = world.prune()  # stores the interrupted index on b, and only then drops the old pack
    assert finished.completed == 1 and finished.repacked == 0
    assert all(not old & pack_names(world, n) for n in (0, 1))
    assert orphans <= pack_names(world, 0)  # unindexed, and young: a backup of its host might adopt it
    world.assert_sound()

    world.clock.advance(seconds=(ADOPT_WINDOW + 2 * MARGIN).total_seconds())
    assert world.prune().kept_locked == len(orphans)  # stored locked, as every pack is
    world.clock.advance(days=LOCK_DAYS)
    world.prune()
    assert not orphans & pack_names(world, 0)
    world.assert_sound()


def test_prune_refuses_while_a_target_lacks_a_new_pack_its_index_would_need(world: World) -> None:
    """The new index reached a only, and b has since lost the new pack (or is a target just added):
    the interrupted index cannot be completed there, so prune deletes nothing until sync has run."""
    candidates = make_mostly_garbage(world)
    old = {r.old.name for r in candidates}
    world.clock.advance(days=LOCK_DAYS + 2)
    before = pack_names(world, 1)
    healthy = world.stores[1]
    world.stores[1] = RefusesPuts(healthy, Kind.INDEX)
    with pytest.raises(TargetError):
        world.prune()
    world.stores[1] = healthy
    written = {info.handle for name, info in packs(world, 1).items() if name not in before}
    assert written
    world.clock.advance(days=LOCK_DAYS + 1)  # its lock ended: an insider may delete it now
    world.raw[1].delete(min(written, key=str))
    with pytest.raises(RepositoryError, match=r"^target b lacks 1 objects .* run 'coldvault sync' first"):
        world.prune()
    assert all(old <= pack_names(world, n) for n in (0, 1))
    world.assert_sound()


def test_each_target_keeps_the_packs_its_own_index_reads() -> None:
    """Two packs hold the same chunk (two racing backups stored it); the index object listing one
    is on a only.  The union of the index places the chunk there, but b's own index places it in
    the other pack, which therefore stays needed."""
    chunk = b"\x01" * 32
    entries = (PackEntry(BlobKind.DATA, chunk, 0, 48, 30),)
    first, second = (PackRecord.of(n * 64, BlobKind.DATA, 64, entries) for n in "ab")
    read_first = IndexObject("11" * 32, [first], [])
    read_second = IndexObject("00" * 32, [second], [])  # sorts first: the union reads the second pack
    stores = [MemoryStore(name) for name in ("a", "b")]
    for store in stores:
        for record in (first, second):
            store.put(Handle(Kind.DATA, record.name), b"pack")
        store.put(Handle(Kind.INDEX, read_first.name), b"index")
    stores[0].put(Handle(Kind.INDEX, read_second.name), b"index")
    holdings = Holdings(stores)
    objects = [read_second, read_first]
    assert holdings.needed(objects, lambda _: {(BlobKind.DATA, chunk)}) == {
        Handle(Kind.DATA, first.name),
        Handle(Kind.DATA, second.name),
    }
    stores[1].delete(Handle(Kind.DATA, first.name))
    with pytest.raises(RepositoryError, match=r"^target b lacks 1 packs retained snapshots need"):
        Holdings(stores).needed(objects, lambda _: {(BlobKind.DATA, chunk)})


def test_dry_run_and_limits(world: World) -> None:
    candidates = make_mostly_garbage(world)
    world.clock.advance(days=LOCK_DAYS + 2)
    before = [pack_names(world, n) for n in (0, 1)]

    dry = prune(world.fresh(), Replicas(world.stores), None, clock=world.clock, margin=MARGIN, dry_run=True)
    assert dry.repacked == len(candidates) and not dry.repack_written
    would_drop = {str(Handle(PACK_KINDS[r.old.kind], r.old.name)) for r in candidates}
    assert would_drop <= set(dry.deleted["a"])  # as a real run would
    assert [pack_names(world, n) for n in (0, 1)] == before and not world.objects(Kind.LEASE)

    off = world.prune(RepackOptions(unused=1.0))
    assert off.repacked == 0 and not off.repack_deferred
    world.clock.advance(hours=2)
    capped = world.prune(RepackOptions(limit=1))
    assert capped.repacked == 0 and capped.repack_deferred == len(candidates)
    world.clock.advance(hours=2)
    assert world.prune().repacked == len(candidates)
    world.assert_sound()


def test_a_backup_that_starts_while_prune_repacks_keeps_the_old_pack(world: World) -> None:
    """It read the index before the new one was stored, so it may deduplicate against the old
    pack: prune lists the sessions again once the new index is everywhere, and counts from then."""
    candidates = make_mostly_garbage(world)
    world.clock.advance(days=LOCK_DAYS + 2)

    def backup_starts() -> None:
        world.clock.advance(hours=2)  # a long repack: longer than the margin
        world.fresh().write_session_marker(SessionMarker("2" * 32, "other", 1, world.clock(), RUNNING))

    world.stores[0] = BeforeFirstPut(world.stores[0], backup_starts)
    result = world.prune()
    assert result.repacked == len(candidates) and result.kept_in_use >= len(candidates)
    assert all({r.old.name for r in candidates} <= pack_names(world, n) for n in (0, 1))
    world.assert_sound()


def test_a_prune_whose_lease_was_taken_over_while_it_repacked_stops_before_its_index(world: World) -> None:
    candidates = make_mostly_garbage(world)
    world.clock.advance(days=LOCK_DAYS + 2)
    index_before = world.objects(Kind.INDEX)

    def lease_lapses_and_is_taken() -> None:
        world.clock.advance(minutes=31)
        Lease(world.stores, world.clock).__enter__()  # a second prune, never released

    world.stores[0] = BeforeFirstPut(world.stores[0], lease_lapses_and_is_taken)
    with pytest.raises(RepositoryError, match="another prune took over the lease"):
        world.prune()
    assert world.objects(Kind.INDEX) == index_before
    assert all({r.old.name for r in candidates} <= pack_names(world, n) for n in (0, 1))
    world.assert_sound()


def test_a_damaged_pack_is_left_as_it_is_and_named(world: World) -> None:
    """Damaged on every target, its garbage can neither be repacked nor checked away: prune
    leaves it, does the rest, and says which pack; no run stores copies it cannot index."""
    candidates = make_mostly_garbage(world)
    world.clock.advance(days=LOCK_DAYS + 2)
    damaged = candidates[0].old
    handle = Handle(PACK_KINDS[damaged.kind], damaged.name)
    for store in world.raw:  # its lock has ended: rewrite it with one byte flipped
        data = bytearray(store.get(handle))
        data[len(data) // 2] ^= 1
        store.delete(handle)
        store.put(handle, bytes(data))
    world.clock.advance(hours=2)  # past the margin since that rewrite
    packs_before = [pack_names(world, n) for n in (0, 1)]
    for others in (len(candidates) - 1, 0):  # the rest are repacked at the first run
        result = world.prune()
        assert len(result.repack_damaged) == 1 and result.repack_damaged[0].startswith(str(handle))
        assert result.repacked == others
        world.clock.advance(hours=2)
    assert handle.name in pack_names(world, 0) & pack_names(world, 1)
    if len(candidates) == 1:  # nothing else to repack: no pack stored, garbage pruned as usual
        assert all(pack_names(world, n) < packs_before[n] for n in (0, 1))
