"""Build the store for the configured targets, and check that each can do what its config asks."""

from __future__ import annotations

import importlib

from coldvault.config.model import CloudTarget, Target
from coldvault.errors import ConfigError, TargetError
from coldvault.storage.limit import LimitedStore
from coldvault.storage.local import LocalStore
from coldvault.storage.policy import PolicyStore
from coldvault.storage.protocol import Store
from coldvault.storage.retry import RetryingStore, RetryPolicy

# Imported on first use: each SDK costs a few hundred milliseconds to import.
_ADAPTERS = {"s3": "coldvault.storage.s3", "gcs": "coldvault.storage.gcs", "azure": "coldvault.storage.azure"}


def open_store(target: Target) -> Store:
    """A target's stack: adapter → retry → concurrency limit → lock and tier policy.

    The adapter and the retry wrapper share one retry policy: the adapter retries each request of an
    upload in parts with it (a part, a block, a chunk), the wrapper every other request.
    """
    if target.type == "local":
        return LocalStore(target.path, name=target.name)
    policy = RetryPolicy(target.retries)
    adapter = importlib.import_module(_ADAPTERS[target.type]).connect(target, retry=policy)
    return PolicyStore(
        LimitedStore(RetryingStore(adapter, policy), target.max_in_flight),
        lock_days=target.lock.days if target.lock else None,
        pack_storage_class=target.storage_class,
    )


def check_target(target: Target, store: Store) -> None:
    """Before writing: a cloud target's bucket exists, is reachable (else TargetError), and supports
    the lock it is configured with (else ConfigError)."""
    if target.type == "local":
        if target.path.exists() and not target.path.is_dir():
            raise TargetError(f"{target.name}: {target.path} is not a directory; check the target's 'path'")
    else:
        _check_cloud(target, store)


def _check_cloud(target: CloudTarget, store: Store) -> None:
    capabilities = store.capabilities  # the first request: a missing bucket or bad credentials show here
    if target.lock is not None and not capabilities.object_lock:
        where = f"bucket {target.bucket!r}" if target.type != "azure" else f"container {target.container!r}"
        feature = {
            "s3": "Object Lock",
            "gcs": "object retention",
            "azure": "version-level immutability",
        }[target.type]
        raise ConfigError(
            f"target {target.name}: {where} does not have {feature} enabled, but the config asks for"
            f" lock = {{ mode = {target.lock.mode!r}, days = {target.lock.days} }}; enable it"
            " (docs/OPERATIONS.md, 'Cloud setup') or set lock = false to write unlocked objects"
        )
