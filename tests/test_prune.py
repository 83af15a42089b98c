"""Prune on two locked memory targets and a fake clock: only unreferenced, unlocked objects go; a
backup running across a prune keeps what it reuses; the lease excludes a second prune; and, over
random histories of backups, forgets, lock maintenance and prunes, every retained snapshot restores."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prune_world import LOCK_DAYS, World

from coldvault.engine.lease import Lease
from coldvault.engine.locks import References
from coldvault.engine.prune import RepackOptions
from coldvault.engine.replicas import Replicas
from coldvault.engine.retention import Policy
from coldvault.errors import RepositoryError
from coldvault.repo.session import RUNNING, SessionMarker
from coldvault.storage.handle import Kind


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_only_unreferenced_objects_whose_lock_ended_are_deleted(world: World) -> None:
    world.write("old")
    first = world.backup()
    world.clock.advance(days=1)
    (world.tree / "old").unlink()
    world.write("new")
    second = world.backup()
    only_first = References(world.fresh()).packs(first) - References(world.fresh()).packs(second)
    assert only_first
    world.forget(Policy(last=1))

    world.clock.advance(hours=2)
    early = world.prune()  # the packs are garbage but still locked: refused, and said so
    assert early.garbage == len(only_first) and early.kept_locked == len(only_first) and not early.deleted
    assert {h.name for h in only_first} <= world.objects(Kind.DATA) | world.objects(Kind.TREE)

    world.clock.advance(days=LOCK_DAYS)
    late = world.prune()
    deleted = set(late.deleted["a"])
    assert deleted == set(late.deleted["b"])
    assert {str(h) for h in only_first} <= deleted and f"snapshots/{first.id}" in deleted
    assert not world.objects(Kind.SNAPSHOT) - {second.id} and not world.objects(Kind.FORGET)
    world.assert_sound()
    world.clock.advance(hours=2)
    again = world.prune()  # the superseded index object goes one run later, then nothing is left to do
    world.clock.advance(hours=2)
    assert not world.prune().deleted and again.index_written is None
    world.assert_sound()


def test_a_backup_running_across_a_prune_keeps_the_packs_it_reuses(world: World) -> None:
    world.write("shared")
    first = world.backup()
    world.clock.advance(days=1)
    world.forget(Policy(last=0, within=timedelta(seconds=1)))  # nothing forgotten yet: one snapshot
    # A second backup starts (its marker written, the index read) while the first snapshot is
    # forgotten and pruned after its lock ends; it then commits a snapshot reusing the old packs.
    world.clock.advance(days=LOCK_DAYS + 1)
    running = world.fresh()
    running.write_session_marker(SessionMarker("1" * 32, "other", 1, world.clock(), RUNNING))
    assert len(running.index)  # read before prune rewrites it
    world.clock.advance(minutes=1)
    world.repo.forget([first.id], host="h", username="u")
    world.clock.advance(hours=2)
    running.write_session_marker(SessionMarker("1" * 32, "other", 1, world.clock(), RUNNING))  # its refresh
    pruned = world.prune()
    assert pruned.kept_in_use > 0 and not any(k.startswith("data/") for k in pruned.deleted.get("a", []))
    second = world.backup(running)  # deduplicated against the index it read
    assert References(world.fresh()).packs(second) & References(world.fresh()).packs(first)
    world.assert_sound()
    world.clock.advance(hours=2)
    world.prune()  # the packs are referenced again: indexed anew, kept
    world.assert_sound()


def test_garbage_goes_while_a_backup_has_reached_one_target_only(world: World) -> None:
    world.write("old")
    first = world.backup()
    (world.tree / "old").unlink()
    world.write("new")
    world.clock.advance(days=LOCK_DAYS + 1)
    # The prune lists the targets while a backup is storing its snapshot target by target.
    second = world.backup(replicas=Replicas(world.stores[:1]))
    world.repo.forget([first.id], host="h", username="u")
    only_first = References(world.fresh()).packs(first) - References(world.fresh()).packs(second)
    world.clock.advance(minutes=1)

    pruned = world.prune()

    for target in ("a", "b"):
        assert {str(h) for h in only_first} | {f"snapshots/{first.id}"} <= set(pruned.deleted[target])
    assert f"snapshots/{second.id}" not in pruned.deleted["a"]
    world.assert_sound()


def test_a_second_prune_is_refused_while_the_lease_is_held(world: World) -> None:
    with Lease(world.stores, world.clock), pytest.raises(RepositoryError, match="another prune holds the lease"):
        with Lease(world.stores, world.clock):
            pass
    abandoned = Lease(world.stores, world.clock).__enter__()  # a prune killed while holding it
    assert abandoned
    world.clock.advance(minutes=31)
    with Lease(world.stores, world.clock):  # expired: taken over
        pass
    assert not world.objects(Kind.LEASE)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["add", "change", "remove", "keep"]),
            st.integers(min_value=0, max_value=6),  # days to advance
            st.booleans(),  # forget, maintain and prune after this backup
        ),
        min_size=3,
        max_size=10,
    ),
    unused=st.sampled_from([0.1, 0.5, 1.0]),  # how eagerly prune repacks
)
def test_prune_never_breaks_a_retained_snapshot(tmp_path_factory: pytest.TempPathFactory, steps, unused) -> None:  # type: ignore[no-untyped-def]
    world = World(tmp_path_factory.mktemp("history"))
    repack = RepackOptions(unused=unused)
    world.write("base")
    policy = Policy(last=2, daily=2, weekly=1)
    for n, (edit, days, tidy) in enumerate(steps):
        files = sorted(p.name for p in world.tree.iterdir())
        if edit == "add" or not files:
            world.write(f"f{n}")
        elif edit == "change":
            world.write(files[n % len(files)])
        elif edit == "remove" and len(files) > 1:
            (world.tree / files[n % len(files)]).unlink()
        world.backup()
        world.clock.advance(days=days, hours=2)
        if tidy:
            world.forget(policy)
            world.maintain()
            world.prune(repack)
            world.assert_sound()
    world.forget(policy)
    world.maintain()
    world.clock.advance(days=LOCK_DAYS + 2)
    world.prune(repack)
    world.clock.advance(hours=2)
    world.prune(repack)
    world.assert_sound()
    referenced = {h.name for s in world.fresh().snapshots() for h in References(world.fresh()).packs(s)}
    assert world.objects(Kind.DATA) | world.objects(Kind.TREE) == referenced  # nothing unreferenced is left


def test_two_simulated_years_of_daily_backups_under_a_gfs_policy(world: World) -> None:
    """The issue's bar: after two years of daily backups, forgets and lock maintenance, with a
    weekly prune (which repacks what the daily changes leave mostly garbage), the repository
    checks, every retained snapshot restores, every object one needs is locked at least as long
    as it, and no unreferenced pack older than its lock is left."""
    policy = Policy(last=3, daily=7, weekly=4, monthly=12, yearly=2)
    world.write("base", 50_000)
    repacked = 0
    for day in range(730):
        world.write(f"day{day % 5}", 3_000)  # a small daily change on top of a large, shared base
        world.backup()
        world.forget(policy)
        world.maintain()
        if day % 7 == 6:
            repacked += world.prune().repacked
        world.clock.advance(days=1)
    world.prune()
    assert repacked  # packs the daily changes left mostly garbage were rewritten
    repo = world.fresh()
    retained = repo.snapshots()
    assert 20 <= len(retained) <= 3 + 7 + 4 + 12 + 2
    world.assert_sound()
    references = References(repo)
    now = world.clock()
    for snapshot in retained:
        until = snapshot.time + timedelta(days=LOCK_DAYS)
        for handle in references.objects(snapshot):
            for store in world.raw:
                locked = store.head(handle).retain_until
                assert locked is not None and locked >= until, (handle, snapshot.time)
    referenced = {h.name for s in retained for h in references.packs(s)}
    for store in world.raw:
        for kind in (Kind.DATA, Kind.TREE):
            for info in store.list(kind):
                if info.handle.name not in referenced:
                    assert info.retain_until is not None and info.retain_until > now  # still locked: not yet due
