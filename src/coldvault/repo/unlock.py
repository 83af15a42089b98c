"""What is read of a repository before any key is known: its id and format version from the config
object, and its key slots, in the order an unlock tries them.  Kept apart from coldvault.repo.repository,
and light to import, so that a key can be derived ahead while the rest is imported (coldvault.key_ahead)."""

from __future__ import annotations

import base64
import json

from coldvault.config.secret import Secret
from coldvault.errors import IntegrityError, NotFound, RepositoryError, WrongKey
from coldvault.repo.keys import DEFAULT_KDF, DerivedAhead, KeySlot
from coldvault.storage.handle import Handle, Kind, verify_object
from coldvault.storage.protocol import ObjectInfo, Store

FORMAT_VERSION = 1
CONFIG = Handle(Kind.CONFIG)


def read_repository_id(store: Store) -> str:
    """The repository's id from its config, without unlocking it."""
    return read_config_header(store)[0]


def read_config_header(store: Store) -> tuple[str, bytes]:
    """The repository's id and its sealed config (which only the master key opens and proves)."""
    try:
        data = store.get(CONFIG)
    except NotFound:
        raise RepositoryError(
            f"target {store.name!r} holds no coldvault repository; run 'coldvault init' or fix the target in the config"
        ) from None
    return _parse_config_header(data, store.name)


def held_repository_id(store: Store) -> str | None:
    """The id of the repository on ``store``, or None where it holds none yet (a new target)."""
    try:
        data = store.get(CONFIG)
    except NotFound:
        return None
    return _parse_config_header(data, store.name)[0]


def _parse_config_header(data: bytes, target: str) -> tuple[str, bytes]:
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != "coldvault":
            raise ValueError("format")
        if doc["version"] != FORMAT_VERSION:
            raise RepositoryError(
                f"target {target!r} has repository format {doc['version']!r}; this coldvault reads {FORMAT_VERSION}"
            )
        repository_id = doc["repository_id"]
        if not isinstance(repository_id, str) or len(bytes.fromhex(repository_id)) != 16:
            raise ValueError("repository_id")
        return repository_id, base64.b64decode(doc["sealed"], validate=True)
    except RepositoryError:
        raise
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(f"the repository config on target {target!r} is corrupt") from None


def first_key_slot(store: Store) -> KeySlot | None:
    """The slot an unlock of the repository on ``store`` tries first, if any."""
    repository_id, _ = read_config_header(store)
    candidates, _ = _key_candidates(store, repository_id)
    return candidates[0][1] if candidates else None


def _key_candidates(store: Store, repository_id: str) -> tuple[list[tuple[ObjectInfo, KeySlot]], list[str]]:
    """The repository's intact key slots in the order an unlock tries them, and the damaged ones."""
    slots = list(store.list(Kind.KEY))
    if not slots:
        raise WrongKey(f"target {store.name!r} has no key slots; open it with the recovery key and add one")
    damaged = []
    candidates = []
    for info in slots:
        data = store.get(info.handle)
        try:
            verify_object(info.handle.name, data, "key slot")
            slot = KeySlot.decode(data, what="key slot")
        except IntegrityError:
            damaged.append(str(info.handle))  # a damaged slot must not lock us out if another one works
            continue
        if slot.repository_id == repository_id:
            candidates.append((info, slot))
    # Slots coldvault wrote itself use the default parameters: try them before anything costlier
    # that someone may have planted to slow every unlock down.
    candidates.sort(key=lambda pair: pair[1].kdf != DEFAULT_KDF)
    return candidates, damaged


def unlock(store: Store, repository_id: str, passphrase: Secret, ahead: DerivedAhead | None) -> tuple[Secret, str]:
    """The master key from the first slot that opens with ``passphrase``, and that slot's name."""
    candidates, damaged = _key_candidates(store, repository_id)
    for info, slot in candidates:
        kek = ahead.kek_for(passphrase, slot) if ahead is not None else None
        try:
            return slot.unwrap(passphrase, kek=kek), info.handle.name
        except WrongKey:
            continue
    if damaged:
        raise IntegrityError(
            f"key slot {', '.join(damaged)} is corrupt and no other slot opens with this passphrase;"
            " open the repository with --recovery-key-file and add a new slot"
        )
    raise WrongKey("wrong passphrase: no key slot opens with it; check the passphrase file or COLDVAULT_PASSPHRASE")
