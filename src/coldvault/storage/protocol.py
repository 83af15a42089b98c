"""The Store protocol: five verbs, a capabilities value, and warm-up for archive tiers.

Guarantees every implementation gives:
- ``put`` is atomic: a reader sees the whole object or nothing, never a prefix.
- ``put(mode=CREATE)`` never replaces an existing object; it raises AlreadyExists.
- Read-after-write: once ``put`` returns, ``get``, ``head`` and ``list`` see the object.
- An object put with ``retain_until`` cannot be deleted or overwritten before then (Locked),
  on stores whose capabilities include object_lock.
- ``retain`` only ever lengthens an object's retention: asked for an earlier date, it leaves the
  lock as it is and sends nothing.
- ``created`` in an ObjectInfo is the provider's own clock (when it stored the object), not ours:
  prune compares it across hosts.
- Errors are the typed ones of coldvault.errors; no SDK or OS exception escapes.
- ``put`` takes any bytes-like value and keeps no reference to it after returning
  (callers reuse their buffers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Protocol

from coldvault.storage.handle import Handle, Kind

BytesLike = bytes | bytearray | memoryview


class PutMode(Enum):
    CREATE = "create"
    OVERWRITE = "overwrite"


@dataclass(frozen=True)
class ObjectInfo:
    handle: Handle
    size: int
    retain_until: datetime | None = None
    lock_mode: str | None = None
    storage_class: str | None = None
    archived: bool = False
    created: datetime | None = None


@dataclass(frozen=True)
class Capabilities:
    object_lock: bool = False
    storage_classes: frozenset[str] = field(default_factory=frozenset)
    needs_warmup: bool = False
    conditional_create: bool = True
    max_object_size: int = 5 << 40


class Store(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo: ...

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes: ...

    def head(self, handle: Handle) -> ObjectInfo: ...

    def list(self, kind: Kind) -> Iterator[ObjectInfo]: ...

    def delete(self, handle: Handle) -> None: ...

    def retain(self, handle: Handle, until: datetime) -> ObjectInfo: ...

    def warmup(self, handles: Iterable[Handle]) -> None: ...

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]: ...
