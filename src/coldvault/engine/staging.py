"""Local copies of objects a lagging target missed, so that catching it up costs no download.

Bounded by ``limit`` bytes: past it, objects are not staged and catching up copies them
from another target instead.  Staged files are named by the object's path and verified
against their content hash when read, like every other copy; a damaged one is dropped.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from coldvault.storage.handle import Handle, Kind, object_name
from coldvault.storage.private_file import write_private_file
from coldvault.storage.protocol import BytesLike


class Staging:
    def __init__(self, root: Path, limit: int) -> None:
        self._root = root
        self._limit = limit
        self._lock = threading.Lock()
        self._used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0

    def save(self, handle: Handle, data: BytesLike) -> bool:
        """Keep a copy if it fits; best effort, since another target also holds the object."""
        with self._lock:
            if self._used + len(data) > self._limit:
                return False
            self._used += len(data)
        try:
            write_private_file(self._root / handle.path, data)
        except OSError:
            with self._lock:
                self._used -= len(data)
            return False
        return True

    def load(self, handle: Handle) -> bytes | None:
        path = self._root / handle.path
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if handle.kind is not Kind.CONFIG and object_name(data) != handle.name:
            self.drop(handle)
            return None
        return data

    def drop(self, handle: Handle) -> None:
        path = self._root / handle.path
        with contextlib.suppress(OSError):
            size = path.stat().st_size
            path.unlink()
            with self._lock:
                self._used -= size

    def handles(self) -> list[Handle]:
        """Everything staged; files that are not objects (temporary files of a crash) are left alone."""
        if not self._root.is_dir():
            return []
        found = (Handle.from_path(p.relative_to(self._root).as_posix()) for p in self._root.rglob("*") if p.is_file())
        return [h for h in found if h is not None]
