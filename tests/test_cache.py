"""The local object cache: only an optimisation, never a source of wrong data."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldvault.errors import NotFound
from coldvault.storage.cache import CachingStore
from coldvault.storage.handle import Handle, Kind, object_name
from coldvault.storage.memory import MemoryStore


class CountingStore(MemoryStore):
    """A fake that counts full reads, to tell cache hits from downloads."""

    def __init__(self) -> None:
        super().__init__("counting")
        self.reads = 0

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        self.reads += 1
        return super().get(handle, offset=offset, length=length)


def named(kind: Kind, data: bytes) -> Handle:
    return Handle(kind, object_name(data))


@pytest.fixture
def stores(tmp_path: Path) -> tuple[CountingStore, CachingStore]:
    inner = CountingStore()
    return inner, CachingStore(inner, tmp_path / "cache")


def test_an_index_is_downloaded_once(stores: tuple[CountingStore, CachingStore]) -> None:
    inner, cached = stores
    data = b"an index object"
    handle = named(Kind.INDEX, data)
    inner.put(handle, data)
    assert cached.get(handle) == data and cached.get(handle) == data
    assert inner.reads == 1
    assert cached.get(handle, offset=3, length=5) == data[3:8]


def test_objects_written_through_the_cache_are_served_from_it(stores: tuple[CountingStore, CachingStore]) -> None:
    inner, cached = stores
    data = b"a snapshot manifest"
    handle = named(Kind.SNAPSHOT, data)
    cached.put(handle, data)
    assert cached.get(handle) == data and inner.reads == 0


def test_a_damaged_cached_copy_is_replaced_by_a_good_one(
    stores: tuple[CountingStore, CachingStore], tmp_path: Path
) -> None:
    inner, cached = stores
    data = b"an index object"
    handle = named(Kind.INDEX, data)
    cached.put(handle, data)
    (tmp_path / "cache" / handle.path).write_bytes(b"rotten")
    assert cached.get(handle) == data
    assert inner.reads == 1
    assert (tmp_path / "cache" / handle.path).read_bytes() == data


def test_a_bad_download_is_not_cached(stores: tuple[CountingStore, CachingStore], tmp_path: Path) -> None:
    inner, cached = stores
    handle = named(Kind.INDEX, b"the real bytes")
    inner.put(handle, b"something else")  # the provider serves the wrong bytes under this name
    assert cached.get(handle) == b"something else"  # the repository layer rejects it, naming the object
    assert not (tmp_path / "cache" / handle.path).exists()


def test_packs_are_not_cached_and_a_deleted_cache_costs_only_downloads(
    stores: tuple[CountingStore, CachingStore], tmp_path: Path
) -> None:
    inner, cached = stores
    pack = b"pack bytes"
    pack_handle = named(Kind.DATA, pack)
    cached.put(pack_handle, pack)
    assert cached.get(pack_handle) == pack and inner.reads == 1
    assert not (tmp_path / "cache" / pack_handle.path).exists()
    index = b"index"
    index_handle = named(Kind.INDEX, index)
    cached.put(index_handle, index)
    for path in sorted((tmp_path / "cache").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    assert cached.get(index_handle) == index and inner.reads == 2


def test_deleting_through_the_cache_removes_the_copy(stores: tuple[CountingStore, CachingStore]) -> None:
    inner, cached = stores
    data = b"snapshot"
    handle = named(Kind.SNAPSHOT, data)
    cached.put(handle, data)
    cached.delete(handle)
    with pytest.raises(NotFound):
        cached.get(handle)


def test_cache_files_are_private(stores: tuple[CountingStore, CachingStore], tmp_path: Path) -> None:
    _, cached = stores
    data = b"index"
    handle = named(Kind.INDEX, data)
    cached.put(handle, data)
    path = tmp_path / "cache" / handle.path
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
