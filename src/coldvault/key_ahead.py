"""A head start on unlocking the repository: the key slot is read and its Argon2id run (~0.13 s) in a
thread while the command's modules are imported (~0.06–0.09 s).  Argon2id releases the interpreter
lock, so the two overlap, and every command that opens the repository starts that much sooner.

The unlock takes the key derived here only for the slot, parameters and passphrase it was derived
for (see KeyAhead.kek_for); anything else, or anything that went wrong here, and it derives its own.
"""

from __future__ import annotations

import hmac
import threading

from coldvault.config import Config, LocalTarget, Secret, configured_passphrase
from coldvault.errors import ColdvaultError
from coldvault.repo.keys import KeySlot
from coldvault.repo.unlock import first_key_slot
from coldvault.storage.factory import open_store


class KeyAhead:
    """The key-encryption key of the slot an unlock tries first, derived in a thread (see the module)."""

    def __init__(self, target: LocalTarget, passphrase: Secret) -> None:
        self._passphrase = passphrase
        self._derived: tuple[KeySlot, bytes] | None = None
        self._thread = threading.Thread(target=self._derive, args=(target,), name="coldvault-key-ahead", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, config: Config, *, target: str | None) -> KeyAhead | None:
        """A head start for a command reading ``target`` (None: every target, the first one's slots
        are read first).  Only from a local directory: a cloud's slots would be requested twice, and
        its SDK imported in two threads at once, which Python allows only for modules without import
        cycles.  Only with a passphrase from the config's file or the environment: a prompt waits for
        the user anyway, and a file that cannot be read is reported by the unlock."""
        try:
            chosen = config.target(target) if target else config.targets[0]
            passphrase = configured_passphrase(config.repository.passphrase_file)
        except ColdvaultError:
            return None  # reported by the command, in its place
        if not isinstance(chosen, LocalTarget) or passphrase is None:
            return None
        return cls(chosen, passphrase)

    def _derive(self, target: LocalTarget) -> None:
        # Everything used here is imported by this module, before the thread starts: nothing is
        # imported in two threads at once.
        try:
            slot = first_key_slot(open_store(target))
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
