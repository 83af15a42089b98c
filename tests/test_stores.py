"""The Store contract, run against every store, plus each store's own semantics."""

from __future__ import annotations

import hashlib
import os
import random
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import CloudBucket

from coldvault.clock import FakeClock
from coldvault.errors import AlreadyExists, Archived, IntegrityError, Locked, NotFound, TargetError
from coldvault.storage import direct_io
from coldvault.storage.faults import Faults, FaultyStore
from coldvault.storage.handle import Handle, Kind, object_name, verify_object
from coldvault.storage.local import LocalStore
from coldvault.storage.memory import MemoryStore
from coldvault.storage.protocol import PutMode, Store
from coldvault.storage.retry import RetryingStore, RetryPolicy


def name(i: int | str) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


NAMED_KINDS = [k for k in Kind if k is not Kind.CONFIG]


@dataclass
class Case:
    """A store under test, and what the contract may expect of it."""

    store: Store
    tamper: Callable[[Handle], None]  # flips a byte behind the store's back, as bit rot would
    enforces_lock: bool  # False where only a real cloud can show it (see OPERATIONS.md)
    archive_class: str | None  # a storage class that holds objects offline, if the store has one


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def _memory_case() -> Case:
    memory = MemoryStore()
    return Case(memory, memory.corrupt, enforces_lock=True, archive_class="DEEP_ARCHIVE")


def _local_case(root: Path) -> Case:
    def tamper(handle: Handle) -> None:
        path = root / handle.path
        path.chmod(0o644)
        path.write_bytes(_flip(path.read_bytes()))

    return Case(LocalStore(root), tamper, enforces_lock=False, archive_class=None)


def _cloud_case(bucket: CloudBucket) -> Case:
    # As in production, a dropped keep-alive connection (Transient) is retried; nothing else is.
    adapter = RetryingStore(bucket.adapter(), RetryPolicy(2, base_delay=0.05))
    prefix = bucket.target.get("prefix", "")

    def tamper(handle: Handle) -> None:
        bucket.raw_put(prefix + handle.path, _flip(adapter.get(handle)))

    # Of the emulators only moto enforces retention; Azurite and fake-gcs-server accept it and do nothing.
    real = bucket.target["name"].startswith("real-")
    archive_class = {"s3": "DEEP_ARCHIVE", "gcs": "ARCHIVE", "azure": "Archive"}[bucket.type]
    if real and bucket.type != "gcs":
        archive_class = None  # a real warm-up takes hours: restore tests cover it on emulators
    return Case(adapter, tamper, enforces_lock=real or bucket.type == "s3", archive_class=archive_class)


CLOUD_FIXTURES = {
    "s3": "s3_bucket",
    "gcs": "gcs_bucket",
    "azure": "azure_container",
    "real-s3": "real_s3_bucket",
    "real-gcs": "real_gcs_bucket",
    "real-azure": "real_azure_container",
}


REAL_CLOUDS = {
    "real-s3": "COLDVAULT_TEST_S3_BUCKET",
    "real-gcs": "COLDVAULT_TEST_GCS_BUCKET",
    "real-azure": "COLDVAULT_TEST_AZURE_CONTAINER",
}
STORES = [
    "memory",
    "local",
    *(pytest.param(name, marks=pytest.mark.emulator) for name in ("s3", "gcs", "azure")),
    *(name for name, variable in REAL_CLOUDS.items() if os.environ.get(variable)),  # only when named
]


@pytest.fixture(params=STORES)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    if request.param == "memory":
        return _memory_case()
    if request.param == "local":
        return _local_case(tmp_path / "repo")
    return _cloud_case(request.getfixturevalue(CLOUD_FIXTURES[request.param]))


@pytest.fixture
def store(case: Case) -> Store:
    return case.store


# ---- the contract --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
def test_put_get_head_round_trip(store: Store, kind: Kind) -> None:
    handle = Handle(kind) if kind is Kind.CONFIG else Handle(kind, name(kind.value))
    data = os.urandom(1234)
    info = store.put(handle, data)
    assert info.handle == handle and info.size == 1234
    assert store.get(handle) == data
    head = store.head(handle)
    assert head.handle == handle and head.size == 1234
    assert [i.handle for i in store.list(kind)] == [handle]


def test_empty_object(store: Store) -> None:
    handle = Handle(Kind.KEY, name(0))
    store.put(handle, b"")
    assert store.get(handle) == b""
    assert store.head(handle).size == 0


def test_create_only_refuses_to_replace(store: Store) -> None:
    handle = Handle(Kind.INDEX, name(1))
    store.put(handle, b"first")
    with pytest.raises(AlreadyExists):
        store.put(handle, b"second")
    with pytest.raises(AlreadyExists):
        store.put(handle, b"second", mode=PutMode.CREATE)
    assert store.get(handle) == b"first"


def test_overwrite_mode_replaces(store: Store) -> None:
    handle = Handle(Kind.CONFIG)
    store.put(handle, b"first")
    store.put(handle, b"second, longer", mode=PutMode.OVERWRITE)
    assert store.get(handle) == b"second, longer"
    assert store.head(handle).size == len(b"second, longer")
    # Overwrite also creates.
    fresh = Handle(Kind.KEY, name(2))
    store.put(fresh, b"new", mode=PutMode.OVERWRITE)
    assert store.get(fresh) == b"new"


@pytest.mark.parametrize(
    "offset, length, expected",
    [
        (0, None, slice(0, None)),
        (0, 10, slice(0, 10)),
        (5, None, slice(5, None)),
        (5, 10, slice(5, 15)),
        (995, 10, slice(995, 1000)),  # past the end: what there is
        (1000, None, slice(1000, None)),
        (2000, 5, slice(2000, 2005)),
        (7, 0, slice(7, 7)),
    ],
)
def test_range_reads(store: Store, offset: int, length: int | None, expected: slice) -> None:
    handle = Handle(Kind.DATA, name(3))
    data = os.urandom(1000)
    store.put(handle, data)
    assert store.get(handle, offset=offset, length=length) == data[expected]


@pytest.mark.parametrize("kind", list(Kind))
def test_missing_objects_are_not_found(store: Store, kind: Kind) -> None:
    handle = Handle(kind) if kind is Kind.CONFIG else Handle(kind, name("missing"))
    with pytest.raises(NotFound):
        store.get(handle)
    with pytest.raises(NotFound):
        store.get(handle, offset=10, length=10)
    with pytest.raises(NotFound):
        store.head(handle)
    with pytest.raises(NotFound):
        store.delete(handle)


def test_not_found_is_a_target_error(store: Store) -> None:
    with pytest.raises(TargetError):
        store.get(Handle(Kind.SNAPSHOT, name(4)))


def test_delete(store: Store) -> None:
    keep, gone = Handle(Kind.SNAPSHOT, name(5)), Handle(Kind.SNAPSHOT, name(6))
    store.put(keep, b"k")
    store.put(gone, b"g")
    store.delete(gone)
    with pytest.raises(NotFound):
        store.get(gone)
    with pytest.raises(NotFound):
        store.delete(gone)
    assert [i.handle for i in store.list(Kind.SNAPSHOT)] == [keep]
    store.put(gone, b"again")  # a deleted name can be created anew
    assert store.get(gone) == b"again"


@pytest.mark.parametrize("kind, count", [(Kind.DATA, 1100), (Kind.INDEX, 30)])
def test_listing_returns_all_sorted_and_only_that_kind(store: Store, kind: Kind, count: int) -> None:
    """More than 1,000 objects: every provider pages its listings at 1,000 or fewer."""
    names = [name(i) for i in range(count)]
    for n in names:
        store.put(Handle(kind, n), n[:3].encode())
    others = [k for k in NAMED_KINDS if k is not kind]
    for i, other in enumerate(others):
        store.put(Handle(other, name(f"other-{i}")), b"x")
    store.put(Handle(Kind.CONFIG), b"{}")

    listed = list(store.list(kind))
    assert [i.handle.name for i in listed] == sorted(names)
    assert all(i.handle.kind is kind and i.size == 3 for i in listed)
    for i, other in enumerate(others):
        assert [info.handle.name for info in store.list(other)] == [name(f"other-{i}")]
    assert [info.handle for info in store.list(Kind.CONFIG)] == [Handle(Kind.CONFIG)]


@pytest.mark.parametrize("kind", list(Kind))
def test_listing_an_empty_store_yields_nothing(store: Store, kind: Kind) -> None:
    assert list(store.list(kind)) == []


def test_listing_a_store_whose_root_does_not_exist_yields_nothing(tmp_path: Path) -> None:
    missing = LocalStore(tmp_path / "no" / "such" / "dir")
    for kind in Kind:
        assert list(missing.list(kind)) == []
    assert not (tmp_path / "no").exists()  # listing creates nothing


def test_put_leaves_other_objects_alone(store: Store) -> None:
    a, b = Handle(Kind.TREE, "aa" + name(7)[2:]), Handle(Kind.TREE, "aa" + name(8)[2:])  # same fan-out folder
    store.put(a, b"a")
    store.put(b, b"b")
    store.delete(a)
    assert store.get(b) == b"b"


def test_warmup_of_a_standard_object_is_a_no_op(store: Store) -> None:
    handle = Handle(Kind.DATA, name(9))
    store.put(handle, b"hot")
    store.warmup([handle])
    assert store.warmup_status([handle]) == {handle: True}
    assert store.get(handle) == b"hot"


def test_lock_refuses_delete_and_overwrite(case: Case) -> None:
    if not case.enforces_lock:
        pytest.skip("this store or its emulator does not enforce retention; see OPERATIONS.md")
    handle = Handle(Kind.DATA, name("locked"))
    until = datetime.now(UTC) + timedelta(days=1)
    info = case.store.put(handle, b"kept", retain_until=until)
    assert info.retain_until == until
    head = case.store.head(handle)
    assert head.lock_mode == "compliance" and abs(head.retain_until - until) < timedelta(seconds=1)
    with pytest.raises(Locked):
        case.store.delete(handle)
    with pytest.raises(AlreadyExists):
        case.store.put(handle, b"evil")
    # An OVERWRITE (which coldvault never issues) is refused by the memory store, and on S3 adds a
    # version while the locked one stays: test_s3.py shows that version cannot be deleted.
    assert case.store.get(handle) == b"kept"


def test_retain_lengthens_a_lock_and_never_shortens_it(case: Case) -> None:
    if not case.enforces_lock:
        pytest.skip("this store or its emulator does not enforce retention; see OPERATIONS.md")
    handle = Handle(Kind.DATA, name("extended"))
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    case.store.put(handle, b"kept", retain_until=first)
    later = first + timedelta(days=2)
    assert case.store.retain(handle, later).retain_until == later
    assert case.store.head(handle).retain_until == later
    case.store.retain(handle, first)  # earlier: nothing changes, nothing is refused
    head = case.store.head(handle)
    assert head.retain_until == later and head.lock_mode == "compliance"
    with pytest.raises(Locked):
        case.store.delete(handle)
    with pytest.raises(NotFound):
        case.store.retain(Handle(Kind.DATA, name("absent")), later)


def test_objects_carry_the_time_the_store_created_them(store: Store) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)  # emulators and file systems round their clocks
    handle = Handle(Kind.INDEX, name("dated"))
    store.put(handle, b"x")
    after = datetime.now(UTC) + timedelta(minutes=5)
    for info in (store.head(handle), *store.list(Kind.INDEX)):
        assert info.created is not None and before <= info.created <= after


def test_archived_object_is_readable_after_warmup(case: Case) -> None:
    if case.archive_class is None:
        pytest.skip("this store has no archive tier")
    handle = Handle(Kind.DATA, name("cold"))
    case.store.put(handle, b"frozen", storage_class=case.archive_class)
    assert case.store.head(handle).storage_class == case.archive_class
    if case.store.capabilities.needs_warmup:
        with pytest.raises(Archived):
            case.store.get(handle)
        assert case.store.warmup_status([handle]) == {handle: False}
        case.store.warmup([handle])
        case.store.warmup([handle])  # asking twice is harmless
        assert case.store.warmup_status([handle]) == {handle: True}  # emulators rehydrate at once
    assert case.store.get(handle) == b"frozen"
    assert case.store.get(handle, offset=1, length=3) == b"roz"


def test_a_tampered_object_fails_its_name_check(case: Case) -> None:
    data = os.urandom(4096)
    handle = Handle(Kind.INDEX, object_name(data))
    case.store.put(handle, data)
    verify_object(handle.name, case.store.get(handle), "index")
    case.tamper(handle)
    with pytest.raises(IntegrityError):
        verify_object(handle.name, case.store.get(handle), "index")


def test_transient_errors_are_retried(store: Store) -> None:
    faulty = FaultyStore(store, Faults(error_rate=0.3), rng=random.Random(7))
    retrying = RetryingStore(faulty, RetryPolicy(8, rng=random.Random(7), sleep=lambda _: None))
    handles = [Handle(Kind.SNAPSHOT, name(f"retry-{i}")) for i in range(12)]
    for i, handle in enumerate(handles):
        retrying.put(handle, b"%d" % i)
    assert [retrying.get(h) for h in handles] == [b"%d" % i for i in range(12)]
    assert [i.handle for i in retrying.list(Kind.SNAPSHOT)] == sorted(handles, key=lambda h: h.name)
    assert faulty.injected > 0


def test_a_corrupted_read_is_caught_by_the_name_check(store: Store) -> None:
    data = os.urandom(1000)
    handle = Handle(Kind.KEY, object_name(data))
    store.put(handle, data)
    faulty = FaultyStore(store, Faults(corrupt_rate=1.0))
    with pytest.raises(IntegrityError):
        verify_object(handle.name, faulty.get(handle), "key slot")


# ---- memory store: object lock and archive tiers --------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_locked_object_refuses_delete_and_overwrite_until_retention_ends(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    handle = Handle(Kind.DATA, name(10))
    until = clock() + timedelta(days=30)
    info = store.put(handle, b"v1", retain_until=until)
    assert info.retain_until == until and info.lock_mode == "compliance"
    assert store.head(handle).retain_until == until

    clock.advance(days=29, hours=23)
    with pytest.raises(Locked):
        store.delete(handle)
    with pytest.raises(Locked):
        store.put(handle, b"v2", mode=PutMode.OVERWRITE)
    with pytest.raises(AlreadyExists):
        store.put(handle, b"v2")
    assert store.get(handle) == b"v1"

    clock.advance(hours=1)  # exactly at retain_until: the lock has ended
    store.put(handle, b"v2", mode=PutMode.OVERWRITE)
    assert store.get(handle) == b"v2"
    store.delete(handle)
    with pytest.raises(NotFound):
        store.head(handle)


def test_lock_error_is_a_target_error(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    handle = Handle(Kind.SNAPSHOT, name(11))
    store.put(handle, b"x", retain_until=clock() + timedelta(seconds=1))
    with pytest.raises(TargetError):
        store.delete(handle)


def test_unlocked_objects_can_be_deleted_at_once(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    handle = Handle(Kind.SNAPSHOT, name(12))
    store.put(handle, b"x")
    assert store.head(handle).retain_until is None
    store.delete(handle)


def test_archived_object_needs_warmup(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock, warmup_delay=timedelta(hours=12))
    cold, hot = Handle(Kind.DATA, name(13)), Handle(Kind.DATA, name(14))
    info = store.put(cold, b"frozen", storage_class="DEEP_ARCHIVE")
    store.put(hot, b"warm", storage_class="STANDARD")
    assert info.archived and info.storage_class == "DEEP_ARCHIVE"
    assert not store.head(hot).archived

    with pytest.raises(Archived):
        store.get(cold)
    with pytest.raises(Archived):
        store.get(cold, offset=1, length=2)
    assert store.warmup_status([cold, hot]) == {cold: False, hot: True}
    assert store.get(hot) == b"warm"
    assert store.head(cold).size == 6  # head works without warm-up
    assert [i.handle for i in store.list(Kind.DATA)] == sorted([cold, hot], key=lambda h: h.name)

    clock.advance(hours=1)
    store.warmup([cold])
    assert store.warmup_status([cold]) == {cold: False}
    clock.advance(hours=11, minutes=59)
    with pytest.raises(Archived):
        store.get(cold)
    clock.advance(minutes=1)
    assert store.warmup_status([cold]) == {cold: True}
    assert store.get(cold) == b"frozen"
    assert store.get(cold, offset=1, length=3) == b"roz"


def test_warming_up_twice_does_not_restart_the_clock(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock, warmup_delay=timedelta(hours=5))
    cold = Handle(Kind.DATA, name(15))
    store.put(cold, b"x", storage_class="GLACIER")
    store.warmup([cold])
    clock.advance(hours=4)
    store.warmup([cold])
    clock.advance(hours=1)
    assert store.get(cold) == b"x"


def test_warmup_status_of_a_missing_object_is_not_found(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    with pytest.raises(NotFound):
        store.warmup_status([Handle(Kind.DATA, name(16))])
    store.warmup([Handle(Kind.DATA, name(16))])  # warming up nothing is harmless


def test_archive_error_is_a_target_error(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    cold = Handle(Kind.DATA, name(17))
    store.put(cold, b"x", storage_class="ARCHIVE")
    with pytest.raises(TargetError):
        store.get(cold)


def test_memory_store_keeps_its_own_copy() -> None:
    store = MemoryStore()
    data = bytearray(b"mutable")
    handle = Handle(Kind.KEY, name(18))
    store.put(handle, data)  # type: ignore[arg-type]
    data[0:1] = b"M"
    assert store.get(handle) == b"mutable"


def test_memory_store_capabilities() -> None:
    caps = MemoryStore().capabilities
    assert caps.object_lock and caps.needs_warmup
    assert {"GLACIER", "DEEP_ARCHIVE"} <= caps.storage_classes


# ---- local store -----------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "repo", name="disk")


def test_local_layout_and_read_only_files(local: LocalStore, tmp_path: Path) -> None:
    handles = [Handle(Kind.CONFIG)] + [Handle(k, name(k.value)) for k in NAMED_KINDS]
    for handle in handles:
        local.put(handle, b"content")
    root = tmp_path / "repo"
    for handle in handles:
        path = root / handle.path
        assert path.read_bytes() == b"content"
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert (root / "data" / name("data")[:2] / name("data")).is_file()
    assert (root / "keys" / name("keys")).is_file()


def test_local_reads_whole_packs_around_the_page_cache_and_ranges_of_them_through_it(
    local: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * 4096)
    handle = Handle(Kind.DATA, name("pack"))
    local.put(handle, data)
    real_fcntl = direct_io.fcntl.fcntl
    made_direct = []

    def watching_fcntl(fd: int, command: int, arg: int = 0) -> object:
        if command == direct_io.fcntl.F_SETFL and arg & direct_io._O_DIRECT:
            made_direct.append(fd)
        return real_fcntl(fd, command, arg)

    # Mocked: which reads bypass the page cache is not visible from outside the process.
    monkeypatch.setattr(direct_io.fcntl, "fcntl", watching_fcntl)
    assert local.get(handle) == data
    assert len(made_direct) == 1  # check, scrub and drills verify what the device holds
    assert local.get(handle, offset=4096, length=100) == data[4096:4196]
    assert len(made_direct) == 1  # a restore's run of chunks: the kernel reads ahead


def test_local_overwrite_keeps_files_read_only(local: LocalStore, tmp_path: Path) -> None:
    local.put(Handle(Kind.CONFIG), b"a")
    local.put(Handle(Kind.CONFIG), b"b", mode=PutMode.OVERWRITE)
    path = tmp_path / "repo" / "config"
    assert path.read_bytes() == b"b" and stat.S_IMODE(path.stat().st_mode) == 0o444


def test_local_puts_leave_no_temporary_files(local: LocalStore, tmp_path: Path) -> None:
    for i in range(20):
        local.put(Handle(Kind.DATA, name(i)), b"x" * i)
    local.put(Handle(Kind.CONFIG), b"1")
    local.put(Handle(Kind.CONFIG), b"2", mode=PutMode.OVERWRITE)
    with pytest.raises(AlreadyExists):
        local.put(Handle(Kind.DATA, name(3)), b"dup")
    leftovers = [p for p in (tmp_path / "repo").rglob("*") if p.is_file() and p.name.startswith(".tmp")]
    assert leftovers == []
    assert sum(1 for p in (tmp_path / "repo").rglob("*") if p.is_file()) == 21


def test_local_list_ignores_foreign_files(local: LocalStore, tmp_path: Path) -> None:
    good = Handle(Kind.DATA, name(20))
    local.put(good, b"x")
    root = tmp_path / "repo"
    n = name(21)
    foreign = [
        root / "data" / n[:2] / n.upper(),
        root / "data" / "zz" / n,
        root / "data" / n[:2] / ".tmp-deadbeef",
        root / "data" / n,  # not fanned out
        root / "data" / n[:2] / "notes.txt",
        root / "data" / good.name[:2] / (good.name + "x"),
    ]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"junk")
    assert [i.handle for i in local.list(Kind.DATA)] == [good]


def test_local_store_cannot_extend_a_lock(local: LocalStore) -> None:
    handle = Handle(Kind.DATA, name("plain"))
    local.put(handle, b"x")
    with pytest.raises(TargetError, match="cannot lock"):
        local.retain(handle, datetime.now(UTC))


def test_local_store_rejects_lock_and_storage_classes(local: LocalStore, clock: FakeClock) -> None:
    with pytest.raises(TargetError):
        local.put(Handle(Kind.DATA, name(22)), b"x", retain_until=clock() + timedelta(days=1))
    with pytest.raises(TargetError):
        local.put(Handle(Kind.DATA, name(22)), b"x", storage_class="GLACIER")
    with pytest.raises(NotFound):
        local.head(Handle(Kind.DATA, name(22)))


def test_local_errors_name_the_store(local: LocalStore) -> None:
    with pytest.raises(NotFound, match="disk"):
        local.get(Handle(Kind.INDEX, name(23)))


def test_local_store_with_a_file_as_root_raises_target_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    store = LocalStore(tmp_path / "file")
    with pytest.raises(TargetError):
        store.put(Handle(Kind.KEY, name(24)), b"x")
    with pytest.raises(TargetError):
        store.get(Handle(Kind.KEY, name(24)))


# ---- handles ---------------------------------------------------------------------------------


def test_handle_paths_round_trip() -> None:
    for kind in Kind:
        handle = Handle(kind) if kind is Kind.CONFIG else Handle(kind, name(kind.value))
        assert Handle.from_path(handle.path) == handle
    assert Handle(Kind.TREE, name(1)).path == f"tree/{name(1)[:2]}/{name(1)}"
    assert Handle(Kind.SNAPSHOT, name(1)).path == f"snapshots/{name(1)}"


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "../" + name(1),
        "/data/" + name(1)[:2] + "/" + name(1),
        "data/zz/abc",
        "data/zz/" + name(1),  # wrong fan-out prefix
        "data/" + name(1),  # missing fan-out folder
        "data/" + name(1)[:2] + "/" + name(1).upper(),
        "keys/" + name(1).upper(),
        "keys/" + name(1)[:63],
        "keys/" + name(1) + "0",
        "keys/" + name(1)[:2] + "/" + name(1),  # keys are not fanned out
        "snapshots/" + name(1) + "/x",
        "snapshots/.tmp-" + name(1)[:16],
        "config/" + name(1),
        "Config",
        "",
        "unknown/" + name(1),
        "data/" + name(1)[:2] + "/../" + name(1),
    ],
)
def test_handle_from_path_rejects_foreign_names(path: str) -> None:
    assert Handle.from_path(path) is None


@pytest.mark.parametrize("bad", ["", "abc", name(1).upper(), name(1)[:63], name(1) + "a", "../" + name(1)[3:]])
def test_handle_rejects_bad_names(bad: str) -> None:
    with pytest.raises(ValueError):
        Handle(Kind.DATA, bad)


def test_config_handle_has_no_name() -> None:
    with pytest.raises(ValueError):
        Handle(Kind.CONFIG, name(1))
