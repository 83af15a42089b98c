"""Sealing, key derivation, object names, blobs and envelopes."""

from __future__ import annotations

import os
import random
import tracemalloc
from pathlib import Path

import pytest
import zstandard

from coldvault.config.secret import Secret
from coldvault.errors import IntegrityError
from coldvault.repo import envelope
from coldvault.repo.blob import BlobKind, decode_blob, seal_blob
from coldvault.repo.crypto import SEAL_OVERHEAD, Subkeys, seal, unseal
from coldvault.repo.envelope import EnvelopeType
from coldvault.storage.handle import object_name, verify_object

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
REPO_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
MASTER = Secret(b"m" * 32)


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.fixture(scope="module")
def subkeys() -> Subkeys:
    return Subkeys.derive(MASTER, REPO_ID)


@pytest.fixture
def compressor() -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(level=3)


# ---- seal / unseal ------------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", [b"", b"x", b"hello world" * 100, os.urandom(70_000)])
def test_seal_round_trip(plaintext: bytes) -> None:
    sealed = seal(KEY, plaintext, b"aad")
    assert len(sealed) == len(plaintext) + SEAL_OVERHEAD
    assert unseal(KEY, sealed, b"aad", what="t") == plaintext
    assert unseal(KEY, memoryview(sealed), b"aad", what="t") == plaintext


def test_seal_is_randomised_and_hides_the_plaintext() -> None:
    plaintext = b"secret payload " * 4
    a, b = seal(KEY, plaintext, b""), seal(KEY, plaintext, b"")
    assert a != b
    assert plaintext not in a and b"secret" not in a


def test_seal_with_a_given_random_is_deterministic() -> None:
    r = bytes(32)
    assert seal(KEY, b"abc", b"x", random=r) == seal(KEY, b"abc", b"x", random=r)
    assert seal(KEY, b"abc", b"x", random=r)[:32] == r


def test_every_single_bit_flip_is_detected() -> None:
    sealed = seal(KEY, b"sixteen bytes!!!", b"aad")
    for bit in range(len(sealed) * 8):
        with pytest.raises(IntegrityError):
            unseal(KEY, flip(sealed, bit), b"aad", what="t")


@pytest.mark.parametrize("cut", [0, 1, SEAL_OVERHEAD - 1, SEAL_OVERHEAD, SEAL_OVERHEAD + 2])
def test_truncated_or_extended_sealed_data_fails(cut: int) -> None:
    sealed = seal(KEY, b"abc", b"")
    with pytest.raises(IntegrityError):
        unseal(KEY, sealed[:cut], b"", what="t")
    with pytest.raises(IntegrityError):
        unseal(KEY, sealed + b"\0", b"", what="t")


def test_wrong_aad_fails() -> None:
    sealed = seal(KEY, b"abc", b"index")
    for aad in (b"", b"indey", b"index\0", b"snapshot"):
        with pytest.raises(IntegrityError):
            unseal(KEY, sealed, aad, what="t")


def test_wrong_key_fails() -> None:
    sealed = seal(KEY, b"abc", b"")
    with pytest.raises(IntegrityError):
        unseal(OTHER_KEY, sealed, b"", what="t")


def test_integrity_error_names_the_object_and_not_the_key() -> None:
    with pytest.raises(IntegrityError) as info:
        unseal(OTHER_KEY, seal(KEY, b"abc", b""), b"", what="pack 1234")
    assert "pack 1234" in str(info.value)
    assert KEY.hex() not in str(info.value)


# ---- subkeys and ids ------------------------------------------------------------------------


def test_subkeys_are_deterministic_per_master_and_repository(subkeys: Subkeys) -> None:
    again = Subkeys.derive(Secret(b"m" * 32), REPO_ID)
    assert (again.data, again.meta, again.id_key, again.chunker) == (
        subkeys.data,
        subkeys.meta,
        subkeys.id_key,
        subkeys.chunker,
    )
    other_repo = Subkeys.derive(MASTER, bytes(16))
    other_master = Subkeys.derive(Secret(b"n" * 32), REPO_ID)
    for other in (other_repo, other_master):
        assert {other.data, other.meta, other.id_key, other.chunker}.isdisjoint(
            {subkeys.data, subkeys.meta, subkeys.id_key, subkeys.chunker}
        )


def test_subkeys_differ_per_purpose(subkeys: Subkeys) -> None:
    keys = [subkeys.data, subkeys.meta, subkeys.id_key, subkeys.chunker]
    assert len(set(keys)) == 4
    assert all(len(k) == 32 for k in keys)
    assert MASTER.reveal() not in keys


def test_subkeys_never_print_their_bytes(subkeys: Subkeys) -> None:
    text = repr(subkeys) + str(subkeys)
    assert subkeys.data.hex() not in text and "***" in text


def test_chunker_seed_fits_a_signed_64_bit_integer(subkeys: Subkeys) -> None:
    for master in (MASTER, Secret(b"\xff" * 32), Secret(bytes(32))):
        seed = Subkeys.derive(master, REPO_ID).chunker_seed
        assert 0 <= seed < 2**63


def test_chunk_ids_are_keyed(subkeys: Subkeys) -> None:
    data = b"the same plaintext"
    assert subkeys.chunk_id(data) == subkeys.chunk_id(memoryview(data))
    assert len(subkeys.chunk_id(data)) == 32
    assert Subkeys.derive(Secret(b"n" * 32), REPO_ID).chunk_id(data) != subkeys.chunk_id(data)
    assert Subkeys.derive(MASTER, bytes(16)).chunk_id(data) != subkeys.chunk_id(data)
    assert subkeys.chunk_id(data) != subkeys.chunk_id(data + b"!")
    assert subkeys.chunk_id(data).hex() != object_name(data)  # not the public, unkeyed hash


def test_object_name_is_public_blake3() -> None:
    # BLAKE3("") from the reference test vectors: anyone can verify a name without a key.
    assert object_name(b"") == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert object_name(b"abc") == object_name(bytearray(b"abc")) == object_name(memoryview(b"abc"))
    assert len(object_name(b"abc")) == 64


def test_verify_object() -> None:
    data = os.urandom(1000)
    verify_object(object_name(data), data, "x")
    with pytest.raises(IntegrityError, match="pack ab"):
        verify_object(object_name(data), flip(data, 5), "pack ab")
    with pytest.raises(IntegrityError):
        verify_object(object_name(b"other"), data, "x")


# ---- blobs -----------------------------------------------------------------------------------


def test_blob_round_trip_compressible(subkeys: Subkeys, compressor: zstandard.ZstdCompressor) -> None:
    plaintext = b"compress me please " * 1000
    cid = subkeys.chunk_id(plaintext)
    blob = seal_blob(subkeys.data, BlobKind.DATA, cid, plaintext, compressor.compress(plaintext))
    assert len(blob) < len(plaintext) // 10
    assert decode_blob(subkeys.data, BlobKind.DATA, cid, blob, len(plaintext)) == plaintext


def test_blob_round_trip_incompressible_is_stored_raw(subkeys: Subkeys, compressor: zstandard.ZstdCompressor) -> None:
    plaintext = random.Random(3).randbytes(50_000)
    cid, view = subkeys.chunk_id(plaintext), memoryview(plaintext)
    blob = seal_blob(subkeys.data, BlobKind.DATA, cid, view, compressor.compress(view))
    assert len(blob) == len(plaintext) + SEAL_OVERHEAD  # the chunk itself, sealed: no zstd frame
    assert decode_blob(subkeys.data, BlobKind.DATA, cid, blob, len(plaintext)) == plaintext


def test_empty_blob_round_trip(subkeys: Subkeys, compressor: zstandard.ZstdCompressor) -> None:
    cid = subkeys.chunk_id(b"")
    blob = seal_blob(subkeys.data, BlobKind.TREE, cid, b"", compressor.compress(b""))
    assert decode_blob(subkeys.data, BlobKind.TREE, cid, blob, 0) == b""


def test_tampered_blob_fails(subkeys: Subkeys, compressor: zstandard.ZstdCompressor) -> None:
    plaintext = b"abc" * 100
    cid = subkeys.chunk_id(plaintext)
    blob = seal_blob(subkeys.data, BlobKind.DATA, cid, plaintext, compressor.compress(plaintext))
    for bit in range(0, len(blob) * 8, 7):
        with pytest.raises(IntegrityError):
            decode_blob(subkeys.data, BlobKind.DATA, cid, flip(blob, bit), len(plaintext))


def test_blob_bound_to_kind_and_chunk_id(subkeys: Subkeys, compressor: zstandard.ZstdCompressor) -> None:
    plaintext = b"listing line\n" * 10
    cid = subkeys.chunk_id(plaintext)
    blob = seal_blob(subkeys.data, BlobKind.TREE, cid, plaintext, compressor.compress(plaintext))
    with pytest.raises(IntegrityError):
        decode_blob(subkeys.data, BlobKind.DATA, cid, blob, len(plaintext))
    with pytest.raises(IntegrityError):
        decode_blob(subkeys.data, BlobKind.TREE, subkeys.chunk_id(b"another"), blob, len(plaintext))
    with pytest.raises(IntegrityError):
        decode_blob(subkeys.meta, BlobKind.TREE, cid, blob, len(plaintext))


@pytest.mark.parametrize("compressible", [True, False])
def test_blob_with_wrong_raw_length_fails(
    subkeys: Subkeys, compressor: zstandard.ZstdCompressor, compressible: bool
) -> None:
    plaintext = b"z" * 10_000 if compressible else random.Random(5).randbytes(10_000)
    cid = subkeys.chunk_id(plaintext)
    blob = seal_blob(subkeys.data, BlobKind.DATA, cid, plaintext, compressor.compress(plaintext))
    for raw_length in (0, 100, 9_999, 10_001):
        with pytest.raises(IntegrityError):
            decode_blob(subkeys.data, BlobKind.DATA, cid, blob, raw_length)


def test_blob_whose_payload_is_longer_than_the_chunk_fails(subkeys: Subkeys) -> None:
    # Only a payload shorter than raw_length is a zstd frame; a longer one is never valid.
    cid = bytes(32)
    forged = seal(subkeys.data, b"payload!", bytes((BlobKind.DATA,)) + cid)
    with pytest.raises(IntegrityError, match="longer than the index"):
        decode_blob(subkeys.data, BlobKind.DATA, cid, forged, 7)


def test_blob_with_a_corrupt_zstd_frame_fails(subkeys: Subkeys) -> None:
    cid = bytes(32)
    forged = seal(subkeys.data, b"this is not zstd", bytes((BlobKind.DATA,)) + cid)
    with pytest.raises(IntegrityError):
        decode_blob(subkeys.data, BlobKind.DATA, cid, forged, 100)


def test_decompression_memory_is_bounded_by_raw_length(subkeys: Subkeys) -> None:
    # A (key-holding) attacker's zip bomb: 64 MiB of zeros compress to ~2 KiB.  (Regression: python-zstandard
    # ignores max_output_size when the frame declares its size, so that alone did not bound memory.)
    bomb = zstandard.ZstdCompressor(level=3).compress(bytes(64 << 20))
    cid = bytes(32)
    forged = seal(subkeys.data, b"\x01" + bomb, bytes((BlobKind.DATA,)) + cid)
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError):
            decode_blob(subkeys.data, BlobKind.DATA, cid, forged, 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"decoding a 1000-byte chunk allocated {peak >> 20} MiB"


# ---- envelopes -------------------------------------------------------------------------------


def test_envelope_round_trip() -> None:
    data = envelope.wrap(KEY, EnvelopeType.INDEX, b"body")
    assert data[:4] == b"CVLT" and data[4] == 1 and data[5] == EnvelopeType.INDEX
    assert envelope.unwrap(KEY, EnvelopeType.INDEX, data, what="t") == b"body"


@pytest.mark.parametrize("stored", list(EnvelopeType))
def test_envelope_type_confusion_is_rejected(stored: EnvelopeType) -> None:
    data = envelope.wrap(KEY, stored, b"body")
    for expected in EnvelopeType:
        if expected is stored:
            continue
        with pytest.raises(IntegrityError):
            envelope.unwrap(KEY, expected, data, what="t")
        # Relabelling the header does not help: the header is authenticated.
        relabelled = data[:5] + bytes((expected,)) + data[6:]
        with pytest.raises(IntegrityError):
            envelope.unwrap(KEY, expected, relabelled, what="t")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: b"XVLT" + d[4:],
        lambda d: d[:4] + b"\x02" + d[5:],
        lambda d: d[:6],
        lambda d: b"",
        lambda d: d[:-1],
        lambda d: flip(d, 60),
    ],
    ids=["magic", "version", "header-only", "empty", "truncated", "bitflip"],
)
def test_malformed_envelopes_are_rejected(mangle) -> None:  # type: ignore[no-untyped-def]
    data = envelope.wrap(KEY, EnvelopeType.SNAPSHOT, b"body")
    with pytest.raises(IntegrityError):
        envelope.unwrap(KEY, EnvelopeType.SNAPSHOT, mangle(data), what="t")


@pytest.mark.parametrize("data", [b"CVLT\x01", b"CVLT", b"CVLT\x01\x03"])
def test_short_envelopes_are_integrity_errors(data: bytes) -> None:
    # Regression: a 5-byte object (which anyone with store access can plant under its BLAKE3 name)
    # raised IndexError instead of IntegrityError.
    with pytest.raises(IntegrityError):
        envelope.unwrap(KEY, EnvelopeType.SNAPSHOT, data, what="t")


def test_envelope_with_wrong_key_fails() -> None:
    data = envelope.wrap(KEY, EnvelopeType.CONFIG, b"body")
    with pytest.raises(IntegrityError):
        envelope.unwrap(OTHER_KEY, EnvelopeType.CONFIG, data, what="t")


def test_blob_matches_the_vector_in_format_md() -> None:
    # docs/FORMAT.md §14 publishes this blob so a second implementation can check itself against it.
    keys = Subkeys.derive(Secret(bytes(range(32))), bytes(range(16)))
    cid = keys.chunk_id(b"hello world\n")
    assert cid.hex() == "46046c5e59373316bf3f579e47d26a904124c0c4d1790a37e03b6d2d72ef5dc9"
    blob = seal(keys.data, b"hello world\n", bytes((BlobKind.DATA,)) + cid, random=b"\x42" * 32)
    assert bytes(blob) == b"\x42" * 32 + bytes.fromhex("854be07ec7b63a0d79772cf0d70c4a24aafb87f8dd2d191d42a4399a")
    path = Path(__file__).resolve().parents[1] / "docs" / "FORMAT.md"
    assert "854be07ec7b63a0d79772cf0d70c4a24aafb87f8dd2d191d42a4399a" in path.read_text()
