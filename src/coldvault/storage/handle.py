"""Typed object names: a store never sees a loose string it did not build itself."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import Enum

import blake3

from coldvault.errors import DamagedObject

_HEX_NAME = re.compile(r"^[0-9a-f]{64}$")
_hash_threads = blake3.blake3.AUTO  # large objects are hashed on every core, by Rayon's pool of threads


def _hash_alone() -> None:
    # A forked child (engine.forked) has none of its parent's threads, Rayon's included: a hash that
    # handed work to the pool would wait for ever.
    global _hash_threads
    _hash_threads = 1


os.register_at_fork(after_in_child=_hash_alone)


def object_name(data: bytes | bytearray | memoryview) -> str:
    """The name of a stored object: unkeyed BLAKE3-256 of its bytes, so anyone can verify it without a key."""
    return blake3.blake3(data, max_threads=_hash_threads).hexdigest()


def verify_object(name: str, data: bytes | bytearray | memoryview, what: str) -> None:
    if object_name(data) != name:
        raise DamagedObject(f"{what} is corrupt: its content does not match its name")


class Kind(Enum):
    """What an object is; the value is its folder in every store."""

    CONFIG = "config"
    KEY = "keys"
    SNAPSHOT = "snapshots"
    FORGET = "forget"  # records of forgotten snapshots; the manifests stay until prune
    SESSION = "sessions"  # markers of backups that may be running, for prune
    LEASE = "lease"  # prune's exclusive lease: one object, unlocked, under a fixed name
    INDEX = "index"
    DATA = "data"
    TREE = "tree"
    REPORT = "reports"  # signed drill reports, kept under lock beside the backups they vouch for

    @property
    def fans_out(self) -> bool:
        """Packs are numerous, so they sit one level deeper (data/ab/ab12…) to keep folders small."""
        return self in (Kind.DATA, Kind.TREE)


@dataclass(frozen=True, slots=True)
class Handle:
    """One object: its kind and, except for the single config object, a 64-hex-digit name."""

    kind: Kind
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind is Kind.CONFIG:
            if self.name:
                raise ValueError("the config object has no name")
        elif not _HEX_NAME.match(self.name):
            raise ValueError(f"object names are 64 lowercase hex digits, got {self.name!r}")

    @property
    def path(self) -> str:
        if self.kind is Kind.CONFIG:
            return "config"
        if self.kind.fans_out:
            return f"{self.kind.value}/{self.name[:2]}/{self.name}"
        return f"{self.kind.value}/{self.name}"

    @classmethod
    def from_path(cls, path: str) -> Handle | None:
        """Parse a stored path; None for anything coldvault did not write (never trusted)."""
        if path == "config":
            return cls(Kind.CONFIG)
        parts = path.split("/")
        try:
            kind = Kind(parts[0])
        except ValueError:
            return None
        expected = 3 if kind.fans_out else 2
        if kind is Kind.CONFIG or len(parts) != expected or not _HEX_NAME.match(parts[-1]):
            return None
        if kind.fans_out and parts[1] != parts[2][:2]:
            return None
        return cls(kind, parts[-1])

    def __str__(self) -> str:
        return self.path
