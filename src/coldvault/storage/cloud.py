"""What the three cloud adapters share: object keys under a prefix, upload parts, lock settings.

The adapters themselves only translate between the Store protocol and one SDK;
anything that would otherwise be written three times lives here or in a wrapper.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import BytesLike, ObjectInfo

# GCS and Azure call the two strengths of retention by the same names.
PROVIDER_LOCK_MODES = {"compliance": "Locked", "governance": "Unlocked"}


def lock_mode_of(provider_mode: str | None) -> str | None:
    """coldvault's name for a GCS or Azure retention mode ("Locked" → "compliance"); None for no policy."""
    for ours, theirs in PROVIDER_LOCK_MODES.items():
        if (provider_mode or "").lower() == theirs.lower():
            return ours
    return None


def lengthened(current: ObjectInfo, until: datetime, lock_mode: str) -> ObjectInfo | None:
    """What ``retain`` makes of an object: its lock running to ``until``, in the object's own mode, else
    in ``lock_mode`` (coldvault's name); None when the lock already lasts that long, as retain never shortens."""
    until = utc(until)
    if current.retain_until is not None and current.retain_until >= until:
        return None
    return replace(current, retain_until=until, lock_mode=current.lock_mode or lock_mode)


@dataclass(frozen=True)
class ObjectKeys:
    """Maps handles to object keys under an optional prefix ("prod/"), and keys back to handles."""

    prefix: str = ""

    def key(self, handle: Handle) -> str:
        return self.prefix + handle.path

    def folder(self, kind: Kind) -> str:
        """The listing prefix of one kind; the config object is listed by its exact key."""
        return self.prefix + ("config" if kind is Kind.CONFIG else kind.value + "/")

    def handle(self, key: str, kind: Kind) -> Handle | None:
        """The handle of a listed key, or None for anything coldvault did not write (never trusted)."""
        if not key.startswith(self.prefix):
            return None
        handle = Handle.from_path(key[len(self.prefix) :])
        return handle if handle is not None and handle.kind is kind else None


def parts(data: BytesLike, part_size: int) -> Iterator[memoryview]:
    """Consecutive views of at most ``part_size`` bytes; no copies."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), part_size):
        yield view[start : start + part_size]


def seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds; an HTTP date (rare from object stores) is left to the backoff."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def one_line(value: object) -> str:
    return " ".join(str(value).split())


def utc(moment: datetime) -> datetime:
    """Providers answer in UTC, local time or naive UTC; compare and report in aware UTC only."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class ViewReader(io.RawIOBase):
    """A seekable file over the caller's buffer, for an SDK's request body: each read copies only
    what it returns, so several targets uploading one pack never hold a copy of it each."""

    def __init__(self, data: BytesLike) -> None:
        self._view = memoryview(data).cast("B")
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._position + size)
        chunk = bytes(self._view[self._position : end])
        self._position = max(self._position, end)
        return chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._view.release()  # the caller may reuse its buffer once the SDK is done with this file
        super().close()
