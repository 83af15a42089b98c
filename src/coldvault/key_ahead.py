"""A head start on unlocking the repository: the key slot is read and its Argon2id run (~0.13 s) in a
thread while the config is validated and the command's modules are imported (~0.15 s together).
Argon2id releases the interpreter lock, so the two overlap, and every command that opens the
repository starts that much sooner.

It starts from the config file's TOML as read, before pydantic is even imported (coldvault.config):
the target and passphrase file are taken from it as the validated config will name them, and a
file the model would refuse at most derives a key nobody asks for.  The unlock takes the key derived
here only for the slot, parameters and passphrase it was derived for (see KeyAhead.kek_for), whatever
file the slot was read from; anything else, or anything that went wrong here, and it derives its own.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coldvault.config.expand import expand_path
from coldvault.config.secret import Secret, configured_passphrase
from coldvault.errors import ColdvaultError
from coldvault.repo.keys import KeySlot
from coldvault.repo.unlock import first_key_slot
from coldvault.storage.local import LocalStore


class KeyAhead:
    """The key-encryption key of the slot an unlock tries first, derived in a thread (see the module)."""

    def __init__(self, repository: Path, passphrase: Secret) -> None:
        self._passphrase = passphrase
        self._derived: tuple[KeySlot, bytes] | None = None
        self._thread = threading.Thread(
            target=self._derive, args=(repository,), name="coldvault-key-ahead", daemon=True
        )
        self._thread.start()

    @classmethod
    def start(cls, config: Mapping[str, Any], *, target: str | None) -> KeyAhead | None:
        """A head start for a command reading ``target`` (None: every target, the first one's slots are
        read first) of the config file's TOML ``config`` (coldvault.config.read_config_file).  Only from
        a local directory: a cloud's slots would be requested twice, and its SDK imported in two threads
        at once, which Python allows only for modules without import cycles.  Only with a passphrase from
        the config's file or the environment: a prompt waits for the user anyway."""
        try:
            chosen = _target(config, target)
            path = expand_path(chosen.get("path")) if chosen.get("type") == "local" else None
            passphrase_file = expand_path(_table(config, "repository").get("passphrase_file"))
            if not isinstance(path, str) or not isinstance(passphrase_file, str | None):
                return None
            passphrase = configured_passphrase(Path(passphrase_file) if passphrase_file else None)
        except (ColdvaultError, ValueError):
            return None  # what the model refuses, it reports in its place; an unreadable file, the unlock
        if passphrase is None:
            return None
        return cls(Path(path), passphrase)

    def _derive(self, repository: Path) -> None:
        # Everything used here is imported by this module, before the thread starts: nothing is
        # imported in two threads at once.  A LocalStore of its own rather than storage.factory's,
        # which needs the model (pydantic).
        try:
            slot = first_key_slot(LocalStore(repository))
            if slot is not None:
                self._derived = (slot, slot.derive_kek(self._passphrase))
        except (ColdvaultError, OSError):
            pass  # a head start only: the unlock reads the slots again and says what is wrong

    def kek_for(self, passphrase: Secret, slot: KeySlot) -> bytes | None:
        """The key derived here if it is ``slot``'s for ``passphrase``; waits for the thread."""
        self._thread.join()
        if self._derived is None:
            return None
        derived_slot, kek = self._derived
        same_slot = derived_slot.salt == slot.salt and derived_slot.kdf == slot.kdf
        if same_slot and hmac.compare_digest(passphrase.reveal(), self._passphrase.reveal()):
            return kek
        return None


def _target(config: Mapping[str, Any], name: str | None) -> Mapping[str, Any]:
    """The target named ``name``, else the first; an empty table where the TOML has none."""
    targets = config.get("targets")
    if not isinstance(targets, list):
        return {}
    tables = [t for t in targets if isinstance(t, dict)]
    if name is None:
        return tables[0] if tables else {}
    return next((t for t in tables if t.get("name") == name), {})


def _table(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    table = config.get(key)
    return table if isinstance(table, dict) else {}
