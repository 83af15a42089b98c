"""Keys, sealing and object names.  Pure: bytes in, bytes out.

Every encrypted unit (a chunk in a pack, a pack header, an index, a snapshot
manifest, the sealed config) is sealed the same way:

    sealed = r (32 random bytes) || AES-256-GCM(K_r, nonce = 12 zero bytes, plaintext, aad) || tag (16)
    K_r    = BLAKE3-keyed(key = purpose subkey, message = r)

Each K_r encrypts exactly one message, so the fixed nonce never repeats under a
key; two messages share a key only if two 256-bit random values collide
(probability ~ n^2 / 2^257: negligible even at 2^40 chunks).  Plain random
96-bit GCM nonces would reach the NIST limit (2^32 messages per key) at a few
billion chunks, which a large repository does reach.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from coldvault.config.secret import Secret
from coldvault.errors import IntegrityError

KEY_SIZE = 32
RANDOM_SIZE = 32
TAG_SIZE = 16
SEAL_OVERHEAD = RANDOM_SIZE + TAG_SIZE
_ZERO_NONCE = bytes(12)


@dataclass(frozen=True, repr=False)
class Subkeys:
    """Purpose-separated keys derived from the master key with HKDF-SHA256."""

    data: bytes  # seals chunk blobs (file data and tree listings)
    meta: bytes  # seals pack headers, indexes, snapshot manifests and the config
    id_key: bytes  # keys the BLAKE3 hash that names chunks, so ids reveal nothing
    chunker: bytes  # seeds the FastCDC gear table, so cut points reveal nothing

    def __repr__(self) -> str:
        return "Subkeys(***)"

    @classmethod
    def derive(cls, master: Secret, repository_id: bytes) -> Subkeys:
        def one(purpose: str) -> bytes:
            hkdf = HKDF(
                algorithm=hashes.SHA256(),
                length=KEY_SIZE,
                salt=repository_id,
                info=f"coldvault/v1/{purpose}".encode(),
            )
            return hkdf.derive(master.reveal())

        return cls(data=one("data"), meta=one("meta"), id_key=one("chunk-id"), chunker=one("chunker"))

    def chunk_id(self, plaintext: bytes | memoryview) -> bytes:
        return blake3.blake3(plaintext, key=self.id_key).digest()

    @property
    def chunker_seed(self) -> int:
        return int.from_bytes(self.chunker[:8], "little") >> 1  # keep it in the signed 64-bit range


def seal(key: bytes, plaintext: bytes | memoryview, aad: bytes, *, random: bytes | None = None) -> bytearray:
    """One allocation: r and the ciphertext are written into a single buffer (chunks are large)."""
    r = random if random is not None else os.urandom(RANDOM_SIZE)
    per_message_key = blake3.blake3(r, key=key).digest()
    sealed = bytearray(RANDOM_SIZE + len(plaintext) + TAG_SIZE)
    sealed[:RANDOM_SIZE] = r
    AESGCM(per_message_key).encrypt_into(_ZERO_NONCE, plaintext, aad, memoryview(sealed)[RANDOM_SIZE:])
    return sealed


def unseal(key: bytes, sealed: bytes | memoryview, aad: bytes, *, what: str) -> bytes:
    if len(sealed) < SEAL_OVERHEAD:
        raise IntegrityError(f"{what} is corrupt: too short to be encrypted data")
    sealed = memoryview(sealed)
    per_message_key = blake3.blake3(sealed[:RANDOM_SIZE], key=key).digest()
    try:
        return AESGCM(per_message_key).decrypt(_ZERO_NONCE, sealed[RANDOM_SIZE:], aad)
    except InvalidTag:
        raise IntegrityError(f"{what} is corrupt or was tampered with: authentication failed") from None
