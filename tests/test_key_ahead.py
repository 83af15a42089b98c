"""The head start on the key (coldvault.key_ahead): taken only for the slot and passphrase it was derived
for, never an error of its own, and the repository opens the same with it or without it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from coldvault.config import Config, FormatConfig, Secret, parse_config
from coldvault.errors import WrongKey
from coldvault.key_ahead import KeyAhead
from coldvault.repo import keys
from coldvault.repo.repository import Repository
from coldvault.repo.unlock import first_key_slot
from coldvault.storage.local import LocalStore

PASSPHRASE = "correct horse battery staple"


def config_for(root: Path, *, first: str = "local", passphrase_file: Path | None = None) -> Config:
    local = f'[[targets]]\nname = "disk"\ntype = "local"\npath = "{root}/repo"\n'
    cloud = '[[targets]]\nname = "cloud"\ntype = "s3"\nbucket = "backups"\nregion = "eu-west-1"\n'
    repository = f'[repository]\npassphrase_file = "{passphrase_file}"\n' if passphrase_file else ""
    targets = local + cloud if first == "local" else cloud + local
    return parse_config(repository + targets + '[[sources]]\nname = "files"\npaths = ["/srv"]\n')


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "repo", name="disk")
    Repository.init(store, Secret(PASSPHRASE.encode()), FormatConfig())
    return store


@pytest.fixture
def passphrase_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDVAULT_PASSPHRASE", PASSPHRASE)


def test_the_key_derived_ahead_is_the_slots_key(tmp_path: Path, store: LocalStore, passphrase_in_env: None) -> None:
    ahead = KeyAhead.start(config_for(tmp_path), target=None)
    assert ahead is not None
    slot = first_key_slot(store)
    assert slot is not None
    kek = ahead.kek_for(Secret(PASSPHRASE.encode()), slot)
    assert kek is not None and kek == slot.derive_kek(Secret(PASSPHRASE.encode()))
    assert not any(t.name == "coldvault-key-ahead" for t in threading.enumerate())  # joined: a restore may fork


def test_it_is_taken_only_for_its_own_slot(tmp_path: Path, store: LocalStore, passphrase_in_env: None) -> None:
    ahead = KeyAhead.start(config_for(tmp_path), target=None)
    assert ahead is not None
    slot = first_key_slot(store)
    assert slot is not None
    assert ahead.kek_for(Secret(b"another passphrase"), slot) is None
    assert ahead.kek_for(Secret(PASSPHRASE.encode()), another_slot(slot.repository_id)) is None


def another_slot(repository_id: str) -> keys.KeySlot:
    """A slot for the same passphrase, with a salt of its own."""
    return keys.KeySlot.create(
        keys.new_master_key(), Secret(PASSPHRASE.encode()), repository_id=repository_id, label="", created=""
    )


def test_the_repository_opens_with_the_key_derived_ahead_without_deriving_again(
    tmp_path: Path, store: LocalStore, passphrase_in_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ahead = KeyAhead.start(config_for(tmp_path), target=None)
    assert ahead is not None
    slot = first_key_slot(store)
    assert slot is not None
    ahead.kek_for(Secret(PASSPHRASE.encode()), slot)  # the thread is done

    # A stand-in for Argon2id that fails: the unlock must not need it.
    def no_second_derivation(*_: object) -> bytes:
        raise AssertionError("derived again")

    monkeypatch.setattr(keys, "_derive_kek", no_second_derivation)
    repo = Repository.open(store, passphrase=Secret(PASSPHRASE.encode()), ahead=ahead)
    assert repo.current_slot is not None


def test_a_wrong_passphrase_is_still_wrong(tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDVAULT_PASSPHRASE", "not it")
    ahead = KeyAhead.start(config_for(tmp_path), target=None)
    assert ahead is not None
    with pytest.raises(WrongKey, match="wrong passphrase"):
        Repository.open(store, passphrase=Secret(b"not it"), ahead=ahead)


def test_no_head_start_from_a_cloud_target(tmp_path: Path, passphrase_in_env: None) -> None:
    assert KeyAhead.start(config_for(tmp_path, first="cloud"), target=None) is None
    assert KeyAhead.start(config_for(tmp_path), target="cloud") is None
    assert KeyAhead.start(config_for(tmp_path, first="cloud"), target="disk") is not None


def test_no_head_start_without_a_passphrase_at_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLDVAULT_PASSPHRASE", raising=False)
    assert KeyAhead.start(config_for(tmp_path), target=None) is None  # a prompt would ask for it
    missing = tmp_path / "no-such-file"
    assert KeyAhead.start(config_for(tmp_path, passphrase_file=missing), target=None) is None
    assert KeyAhead.start(config_for(tmp_path), target="no-such-target") is None  # the command says so


def test_the_passphrase_file_is_used(tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLDVAULT_PASSPHRASE", raising=False)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    ahead = KeyAhead.start(config_for(tmp_path, passphrase_file=secret), target=None)
    assert ahead is not None
    slot = first_key_slot(store)
    assert slot is not None
    assert ahead.kek_for(Secret(PASSPHRASE.encode()), slot) is not None


@pytest.mark.parametrize("damage", ["no repository", "no key slots", "corrupt config"])
def test_what_goes_wrong_ahead_is_left_to_the_unlock(tmp_path: Path, passphrase_in_env: None, damage: str) -> None:
    repo_dir = tmp_path / "repo"
    if damage != "no repository":
        Repository.init(LocalStore(repo_dir, name="disk"), Secret(PASSPHRASE.encode()), FormatConfig())
    if damage == "no key slots":
        for slot_file in (repo_dir / "keys").iterdir():
            slot_file.unlink()
    if damage == "corrupt config":
        (repo_dir / "config").write_bytes(b"{")
    ahead = KeyAhead.start(config_for(tmp_path), target=None)
    assert ahead is not None
    assert ahead.kek_for(Secret(PASSPHRASE.encode()), another_slot("00" * 16)) is None
