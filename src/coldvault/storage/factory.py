"""Build the store for the configured targets."""

from __future__ import annotations

from coldvault.config.model import Target
from coldvault.storage.local import LocalStore
from coldvault.storage.mirror import MirrorStore
from coldvault.storage.protocol import Store


def open_store(target: Target) -> Store:
    return LocalStore(target.path, name=target.name)


def open_targets(targets: list[Target]) -> Store:
    """One store for one target; a mirror over all of them otherwise."""
    stores = [open_store(t) for t in targets]
    return stores[0] if len(stores) == 1 else MirrorStore(stores)
