"""A store in a local directory: create-only, atomic, durable.

A put writes a temporary file in the destination folder, fsyncs it, then
hard-links it to its final name.  link(2) fails when the name exists, which makes
create-only atomic without a check-then-act race; rename(2) would silently
replace.  The folder is fsynced afterwards so the new name survives power loss.
Stored files are made read-only (0444) as a guard against accidents.

Packs are written and read with direct I/O where the filesystem allows it
(storage.direct_io): they are written once and read rarely, so caching them would
only evict the host's own working set, and verification would read the cache
instead of the device.  A range of a pack (the chunks a restore fetches) is the
exception: it is read through the page cache, with the kernel reading ahead.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from coldvault.errors import AlreadyExists, NotFound, PermissionDenied, TargetError
from coldvault.storage.direct_io import DirectFiles, read_on
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import BytesLike, Capabilities, ObjectInfo, PutMode

_TMP_PREFIX = ".tmp-"


class LocalStore:
    def __init__(self, root: Path, *, name: str = "local") -> None:
        self._root = Path(root)
        self._name = name
        self._files = DirectFiles()

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        if retain_until is not None or storage_class is not None:
            raise TargetError(f"{self._name}: a local directory supports neither object lock nor storage classes")
        final = self._root / handle.path
        with self._errors(handle, writing=True):
            _make_folders(final.parent)
            tmp = final.parent / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
            try:
                self._files.write_new(tmp, data, 0o444, direct=handle.kind.fans_out)
                if mode is PutMode.CREATE:
                    os.link(tmp, final)
                else:
                    os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(final.parent)
            created = _mtime(final.stat())
        return ObjectInfo(handle, len(data), created=created)

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        path = self._root / handle.path
        with self._errors(handle):
            if length is not None and handle.kind.fans_out:
                return read_on(path, offset, length)
            return self._files.read(path, offset, length, direct=handle.kind.fans_out)

    def head(self, handle: Handle) -> ObjectInfo:
        with self._errors(handle):
            status = (self._root / handle.path).stat()
        return ObjectInfo(handle, status.st_size, created=_mtime(status))

    def list(self, kind: Kind) -> Iterator[ObjectInfo]:
        if kind is Kind.CONFIG:
            path = self._root / "config"
            if path.is_file():
                yield ObjectInfo(Handle(Kind.CONFIG), path.stat().st_size)
            return
        top = self._root / kind.value
        if not top.is_dir():
            return
        with self._errors(None):
            for folder, dirs, files in os.walk(top, onerror=_raise):
                dirs.sort()
                for file in sorted(files):
                    relative = os.path.relpath(os.path.join(folder, file), self._root)
                    handle = Handle.from_path(relative.replace(os.sep, "/"))
                    if handle is not None and handle.kind is kind:
                        status = os.stat(os.path.join(folder, file))
                        yield ObjectInfo(handle, status.st_size, created=_mtime(status))

    def delete(self, handle: Handle) -> None:
        path = self._root / handle.path
        with self._errors(handle):
            path.unlink()
            _fsync_dir(path.parent)

    def retain(self, handle: Handle, until: datetime) -> ObjectInfo:
        raise TargetError(f"{self._name}: a local directory cannot lock objects; nothing to extend")

    def warmup(self, handles: Iterable[Handle]) -> None:
        """Nothing to warm up: local files are always readable."""

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]:
        return {handle: True for handle in handles}

    def _errors(self, handle: Handle | None, *, writing: bool = False) -> _ErrorMapping:
        return _ErrorMapping(self._name, self._root, handle, writing)


class _ErrorMapping:
    """Translate OSError into the typed errors at this adapter's edge, and nowhere else."""

    def __init__(self, store: str, root: Path, handle: Handle | None, writing: bool) -> None:
        self._store, self._root, self._handle, self._writing = store, root, handle, writing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if not isinstance(exc, OSError):
            return False
        what = f"{self._store}: {self._handle or self._root}"
        if exc.errno == errno.EEXIST:
            raise AlreadyExists(f"{what} already exists") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR) and self._writing:
            # A write has no object to miss: the target's folder itself cannot be made or used.
            raise TargetError(
                f"{self._store}: cannot write below {self._root} ({exc.strerror}); check the target's 'path'"
            ) from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise NotFound(f"{what} does not exist") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise PermissionDenied(f"{what}: {exc.strerror}; check the directory's owner and mode") from None
        raise TargetError(f"{what}: {exc.strerror or exc}") from None


def _make_folders(folder: Path) -> None:
    """Create missing folders, fsyncing each parent: on some filesystems a new folder is lost in a
    power cut unless its parent is synced, which would take the fsynced file inside it along."""
    if folder.is_dir():
        return
    _make_folders(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:
        return  # another writer made it
    _fsync_dir(folder.parent)


def _mtime(status: os.stat_result) -> datetime:
    """Stored files are written once and never touched, so their modification time is their creation."""
    return datetime.fromtimestamp(status.st_mtime, UTC)


def _raise(error: OSError) -> None:
    """os.walk skips folders it cannot read unless told otherwise: a listing must not be silently short."""
    raise error


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
