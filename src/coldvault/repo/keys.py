"""Key slots (the master key wrapped by a passphrase) and the paper recovery key.

A key slot is plaintext JSON, because it must be readable before any key is
known.  The master key inside is wrapped with AES-256-GCM under a key-encryption
key from Argon2id(passphrase, salt, parameters recorded in the slot).  The
slot's parameters and the repository id are the associated data, so an
attacker who edits the parameters (to weaken them) breaks the wrap.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass
from typing import Protocol

import blake3
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from coldvault.config.secret import Secret
from coldvault.errors import IntegrityError, WrongKey
from coldvault.repo.crypto import KEY_SIZE, seal, unseal

SLOT_VERSION = 1
# OWASP's first Argon2id recommendation is m=46 MiB, t=1, p=1; a backup key is
# unlocked rarely, so spend more: 64 MiB, 3 passes (about 0.15 s here).
DEFAULT_KDF = {"algorithm": "argon2id", "memory_kib": 65536, "iterations": 3, "lanes": 4}
# Anyone can plant a key slot (slots are plaintext), and an unlock may try every slot: the
# limits keep a hostile slot to about a second of work (256 MiB, 4 passes measured 1.1 s here).
_KDF_LIMITS = {"memory_kib": (8192, 256 << 10), "iterations": (1, 4), "lanes": (1, 8)}
_SALT_SIZE = 16
# cryptography's Argon2id runs on OpenSSL's thread pool, and two at once in one process hang or fail
# with "not enough memory" (cryptography 50.0.2; test_keys shows it): one at a time.
_ONE_DERIVATION = threading.Lock()
_RECOVERY_PREFIX = "cvrk1"


def new_master_key() -> Secret:
    return Secret(os.urandom(KEY_SIZE))


@dataclass(frozen=True)
class KeySlot:
    repository_id: str
    kdf: dict[str, object]
    salt: bytes
    wrapped: bytes
    label: str
    created: str

    @classmethod
    def create(cls, master: Secret, passphrase: Secret, *, repository_id: str, label: str, created: str) -> KeySlot:
        kdf = dict(DEFAULT_KDF)
        salt = os.urandom(_SALT_SIZE)
        kek = _derive_kek(passphrase, salt, kdf)
        wrapped = seal(kek, master.reveal(), _slot_aad(repository_id, kdf, salt))
        return cls(repository_id, kdf, salt, wrapped, label, created)

    def derive_kek(self, passphrase: Secret) -> bytes:
        """The key-encryption key: Argon2id, which releases the interpreter lock while it works."""
        return _derive_kek(passphrase, self.salt, self.kdf)

    def unwrap(self, passphrase: Secret, *, kek: bytes | None = None) -> Secret:
        """The master key; ``kek`` is this slot's derive_kek(passphrase) when the caller has it already."""
        if kek is None:
            kek = self.derive_kek(passphrase)
        try:
            return Secret(
                unseal(kek, self.wrapped, _slot_aad(self.repository_id, self.kdf, self.salt), what="key slot")
            )
        except IntegrityError:
            raise WrongKey("wrong passphrase") from None

    def encode(self) -> bytes:
        doc = {
            "version": SLOT_VERSION,
            "repository_id": self.repository_id,
            "kdf": self.kdf,
            "salt": base64.b64encode(self.salt).decode(),
            "wrapped_master_key": base64.b64encode(self.wrapped).decode(),
            "label": self.label,
            "created": self.created,
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes, *, what: str) -> KeySlot:
        try:
            doc = json.loads(data)
            if doc["version"] != SLOT_VERSION:
                raise IntegrityError(f"{what} has unsupported version {doc['version']!r}; upgrade coldvault")
            kdf = doc["kdf"]
            _check_kdf(kdf)
            salt = base64.b64decode(doc["salt"], validate=True)
            if len(salt) != _SALT_SIZE:
                raise ValueError("salt size")
            return cls(
                repository_id=str(doc["repository_id"]),
                kdf=kdf,
                salt=salt,
                wrapped=base64.b64decode(doc["wrapped_master_key"], validate=True),
                label=str(doc.get("label", "")),
                created=str(doc.get("created", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{what} is not a valid key slot ({exc.__class__.__name__})") from None


class DerivedAhead(Protocol):
    """Key-encryption keys derived before an unlock asks for them (see coldvault.key_ahead)."""

    def kek_for(self, passphrase: Secret, slot: KeySlot) -> bytes | None:
        """The slot's key-encryption key for ``passphrase`` if it was derived ahead, else None."""


def _check_kdf(kdf: object) -> None:
    """Refuse hostile parameters: a slot asking for 1 TiB of memory must not hang or kill us."""
    if not isinstance(kdf, dict) or kdf.get("algorithm") != "argon2id":
        raise ValueError("unsupported kdf")
    for name, (low, high) in _KDF_LIMITS.items():
        value = kdf.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"kdf {name} out of range")


def _derive_kek(passphrase: Secret, salt: bytes, kdf: dict[str, object]) -> bytes:
    with _ONE_DERIVATION:
        return Argon2id(
            salt=salt,
            length=KEY_SIZE,
            iterations=int(kdf["iterations"]),  # type: ignore[call-overload]
            lanes=int(kdf["lanes"]),  # type: ignore[call-overload]
            memory_cost=int(kdf["memory_kib"]),  # type: ignore[call-overload]
        ).derive(passphrase.reveal())


def _slot_aad(repository_id: str, kdf: dict[str, object], salt: bytes) -> bytes:
    return b"coldvault key slot v1\0" + json.dumps([repository_id, kdf, salt.hex()], sort_keys=True).encode()


def encode_recovery_key(master: Secret) -> str:
    """The master key for paper: base32 in groups of 4, with a 4-character checksum to catch typos.

    Format: ``cvrk1-XXXX-XXXX-…-CCCC`` (13 groups of key, 1 of checksum); case-insensitive.
    """
    key = master.reveal()
    body = base64.b32encode(key).decode().rstrip("=")
    check = base64.b32encode(blake3.blake3(key).digest()[:5]).decode()[:4]
    groups = [body[i : i + 4] for i in range(0, len(body), 4)]
    return "-".join([_RECOVERY_PREFIX, *groups, check])


def decode_recovery_key(text: str) -> Secret:
    cleaned = "".join(text.split()).upper().replace("-", "")
    prefix = _RECOVERY_PREFIX.upper()
    if not cleaned.startswith(prefix):
        raise WrongKey(f"a recovery key starts with '{_RECOVERY_PREFIX}-'; check what was typed")
    cleaned = cleaned[len(prefix) :]
    body, check = cleaned[:-4], cleaned[-4:]
    try:
        key = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise WrongKey("the recovery key contains characters that are not base32; check what was typed") from None
    if len(key) != KEY_SIZE or base64.b32encode(blake3.blake3(key).digest()[:5]).decode()[:4] != check:
        raise WrongKey("the recovery key's checksum does not match; a group was mistyped")
    return Secret(key)
