"""Key slots (Argon2id-wrapped master key) and the paper recovery key."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from coldvault.config.secret import Secret
from coldvault.errors import ColdvaultError, IntegrityError, WrongKey
from coldvault.repo import keys
from coldvault.repo.keys import (
    DEFAULT_KDF,
    KeySlot,
    decode_recovery_key,
    encode_recovery_key,
    new_master_key,
)

REPO_ID = "00112233445566778899aabbccddeeff"
PASSPHRASE = Secret(b"correct horse battery staple")
MASTER = Secret(bytes(range(32)))


@pytest.fixture(scope="module")
def slot() -> KeySlot:
    return KeySlot.create(
        MASTER, PASSPHRASE, repository_id=REPO_ID, label="me@host", created="2026-01-01T00:00:00+00:00"
    )


def edited(slot: KeySlot, **changes: object) -> bytes:
    doc = json.loads(slot.encode())
    for key, value in changes.items():
        if key.startswith("kdf_"):
            doc["kdf"][key[4:]] = value
        else:
            doc[key] = value
    return json.dumps(doc).encode()


# ---- key slots -------------------------------------------------------------------------------


def test_slot_unwraps_with_its_passphrase(slot: KeySlot) -> None:
    assert slot.unwrap(Secret(b"correct horse battery staple")) == MASTER


def test_derivations_in_several_threads_at_once_all_finish(slot: KeySlot) -> None:
    """cryptography's Argon2id (on OpenSSL's thread pool) hangs when two run at once in one process;
    the key ahead (coldvault.key_ahead) runs one beside the main thread's."""
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(slot.derive_kek(PASSPHRASE)), daemon=True) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 3 and len(set(results)) == 1


def test_slot_uses_the_default_kdf_and_hides_the_master_key(slot: KeySlot) -> None:
    encoded = slot.encode()
    doc = json.loads(encoded)
    assert doc["kdf"] == DEFAULT_KDF
    assert doc["repository_id"] == REPO_ID and doc["label"] == "me@host"
    assert MASTER.reveal() not in base64.b64decode(doc["wrapped_master_key"])
    assert MASTER.reveal().hex().encode() not in encoded
    assert b"correct horse" not in encoded


def test_slot_encode_decode_round_trip(slot: KeySlot) -> None:
    assert KeySlot.decode(slot.encode(), what="slot") == slot


def test_two_slots_for_the_same_key_differ() -> None:
    fast = dict(DEFAULT_KDF)
    a = KeySlot.create(MASTER, PASSPHRASE, repository_id=REPO_ID, label="", created="")
    b = KeySlot.create(MASTER, PASSPHRASE, repository_id=REPO_ID, label="", created="")
    assert a.salt != b.salt and a.wrapped != b.wrapped
    assert a.kdf == b.kdf == fast


def test_wrong_passphrase_is_wrong_key(slot: KeySlot) -> None:
    with pytest.raises(WrongKey):
        slot.unwrap(Secret(b"correct horse battery stapl"))


@pytest.mark.parametrize(
    "change",
    [
        {"kdf_iterations": 1},
        {"kdf_memory_kib": 8192},
        {"kdf_lanes": 1},
        {"repository_id": "ffeeddccbbaa99887766554433221100"},
        {"salt": base64.b64encode(bytes(16)).decode()},
    ],
    ids=["fewer-iterations", "less-memory", "fewer-lanes", "other-repository", "other-salt"],
)
def test_editing_the_slot_breaks_the_wrap(slot: KeySlot, change: dict[str, object]) -> None:
    tampered = KeySlot.decode(edited(slot, **change), what="slot")  # still a well-formed slot...
    with pytest.raises(WrongKey):
        tampered.unwrap(PASSPHRASE)  # ...that no longer opens: weakened parameters are not silently used


def test_editing_the_wrapped_key_breaks_the_wrap(slot: KeySlot) -> None:
    wrapped = bytearray(slot.wrapped)
    wrapped[40] ^= 1
    tampered = KeySlot.decode(edited(slot, wrapped_master_key=base64.b64encode(bytes(wrapped)).decode()), what="s")
    with pytest.raises(WrongKey):
        tampered.unwrap(PASSPHRASE)


@pytest.mark.parametrize(
    "change",
    [
        {"kdf_memory_kib": 1 << 30},  # 1 TiB
        {"kdf_memory_kib": (4 << 20) + 1},
        {"kdf_memory_kib": 8191},
        {"kdf_iterations": 10**9},
        {"kdf_iterations": 0},
        {"kdf_lanes": 0},
        {"kdf_lanes": 1 << 24},
        {"kdf_algorithm": "argon2i"},
        {"kdf_algorithm": "pbkdf2"},
        {"kdf_memory_kib": "65536"},
        {"kdf_iterations": 3.0},
        {"kdf_iterations": True},
        {"kdf_lanes": None},
        {"kdf": [1, 2, 3]},
        {"kdf": "argon2id"},
    ],
)
def test_hostile_kdf_parameters_are_refused_at_decode_without_work(
    slot: KeySlot, change: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Without work" is checked at its source, not with a clock a loaded machine can slow down.
    def no_derivation(**parameters: object) -> None:
        pytest.fail(f"decode started an Argon2id derivation with {parameters}")

    monkeypatch.setattr(keys, "Argon2id", no_derivation)
    with pytest.raises(IntegrityError):
        KeySlot.decode(edited(slot, **change), what="slot")


@pytest.mark.parametrize("salt", [b"", b"abcd", b"1234567"])
def test_a_slot_with_a_short_salt_fails_cleanly(slot: KeySlot, salt: bytes) -> None:
    # Regression: Argon2id raised ValueError for salts under 8 bytes; anyone who can write keys/
    # could plant such a slot and break every passphrase unlock.
    with pytest.raises(ColdvaultError):
        KeySlot.decode(edited(slot, salt=base64.b64encode(salt).decode()), what="slot").unwrap(PASSPHRASE)


def test_kdf_without_a_parameter_is_refused(slot: KeySlot) -> None:
    doc = json.loads(slot.encode())
    del doc["kdf"]["memory_kib"]
    with pytest.raises(IntegrityError):
        KeySlot.decode(json.dumps(doc).encode(), what="slot")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"null",
        b'{"version": 1}',
    ],
)
def test_malformed_slot_documents_are_integrity_errors(data: bytes) -> None:
    with pytest.raises(IntegrityError):
        KeySlot.decode(data, what="slot")


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"salt": "not base64!"},
        {"wrapped_master_key": "@@@@"},
        {"salt": 12},
    ],
)
def test_malformed_slot_fields_are_integrity_errors(slot: KeySlot, change: dict[str, object]) -> None:
    with pytest.raises(IntegrityError):
        KeySlot.decode(edited(slot, **change), what="slot")


# ---- recovery keys ---------------------------------------------------------------------------

BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def test_recovery_key_round_trip() -> None:
    for _ in range(20):
        master = new_master_key()
        assert decode_recovery_key(encode_recovery_key(master)) == master


def test_recovery_key_format() -> None:
    text = encode_recovery_key(MASTER)
    groups = text.split("-")
    assert groups[0] == "cvrk1"
    assert len(groups) == 15 and all(len(g) == 4 for g in groups[1:])
    assert all(c in BASE32 for c in "".join(groups[1:]))


def test_recovery_key_is_case_insensitive_and_whitespace_tolerant() -> None:
    text = encode_recovery_key(MASTER)
    variants = [
        text.lower(),
        text.upper(),
        "  " + text + "\n",
        text.replace("-", " - "),
        text.replace("-", "\n"),
        text.replace("-", ""),
        "\t".join(text.split("-")[:7]) + "-" + "-".join(text.split("-")[7:]),
    ]
    for variant in variants:
        assert decode_recovery_key(variant) == MASTER, variant


def test_a_single_mistyped_character_is_caught() -> None:
    """Any one-character typo fails with WrongKey, never yielding a different key.

    The 13th group's last character carries one key bit and four padding bits that base32
    decoding ignores, so a typo in those padding bits still decodes to the right key: that
    is harmless (the key is correct), so it is allowed, but nowhere else.
    """
    master = Secret(bytes.fromhex("5ca1ab1e" * 8))
    text = encode_recovery_key(master)
    padding_position = len("cvrk1-") + 13 * 5 - 2  # last character of the last key group
    accepted_positions = set()
    for position, original in enumerate(text):
        if original == "-":
            continue
        for typo in BASE32 + "0189":
            if typo == original.upper():
                continue
            mistyped = text[:position] + typo + text[position + 1 :]
            try:
                decoded = decode_recovery_key(mistyped)
            except WrongKey:
                continue
            assert decoded == master, f"typo {typo!r} at {position} decoded to a different key"
            accepted_positions.add(position)
    assert accepted_positions <= {padding_position}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "cvrk1",
        "cvrk2-AAAA",
        "hello world",
        "cvrk1-" + "AAAA-" * 13 + "AAAA",
    ],
)
def test_garbage_recovery_keys_are_wrong_key(text: str) -> None:
    with pytest.raises(WrongKey):
        decode_recovery_key(text)


def test_recovery_key_with_a_group_missing_or_added_is_wrong_key() -> None:
    groups = encode_recovery_key(MASTER).split("-")
    for broken in (groups[:5] + groups[6:], groups[:5] + ["ABCD"] + groups[5:], groups[:-1], groups + ["ABCD"]):
        with pytest.raises(WrongKey):
            decode_recovery_key("-".join(broken))
