"""The head start on the key (coldvault.key_ahead): taken only for the slot and passphrase it was derived
for, never an error of its own, and the repository opens the same with it or without it."""

from __future__ import annotations

import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coldvault.config import Secret
from coldvault.config.loader import parse_config
from coldvault.config.model import FormatConfig
from coldvault.errors import WrongKey
from coldvault.key_ahead import KeyAhead
from coldvault.repo import keys
from coldvault.repo.repository import Repository
from coldvault.repo.unlock import first_key_slot
from coldvault.storage.local import LocalStore

PASSPHRASE = "correct horse battery staple"


def config_for(
    root: Path, *, first: str = "local", passphrase_file: Path | str | None = None, path: str = "{root}/repo"
) -> dict[str, Any]:
    """The TOML of a config file as the CLI reads it, before validation; the model accepts it too."""
    local = f'[[targets]]\nname = "disk"\ntype = "local"\npath = "{path.format(root=root)}"\n'
    cloud = '[[targets]]\nname = "cloud"\ntype = "s3"\nbucket = "backups"\nregion = "eu-west-1"\n'
    repository = f'[repository]\npassphrase_file = "{passphrase_file}"\n' if passphrase_file else ""
    targets = local + cloud if first == "local" else cloud + local
    text = repository + targets + '[[sources]]\nname = "files"\npaths = ["/srv"]\n'
    parse_config(text)
    return tomllib.loads(text)


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


def test_paths_are_expanded_as_the_model_expands_them(
    tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLDVAULT_PASSPHRASE", raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "passphrase").write_text(PASSPHRASE + "\n")
    config = config_for(tmp_path, passphrase_file="${CREDENTIALS_DIRECTORY}/passphrase", path="~/repo")
    ahead = KeyAhead.start(config, target=None)
    assert ahead is not None
    slot = first_key_slot(store)
    assert slot is not None
    assert ahead.kek_for(Secret(PASSPHRASE.encode()), slot) is not None
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")  # the model refuses the file: no head start either
    assert KeyAhead.start(config, target=None) is None


KEYS = ["targets", "repository", "name", "type", "path", "passphrase_file", "bucket"]
_TOML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(["local", "disk", "s3"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)


@given(config=st.dictionaries(st.sampled_from(KEYS), _TOML_VALUES, max_size=3), target=st.none() | st.just("disk"))
def test_a_config_the_model_would_refuse_never_fails_the_head_start(config: dict[str, Any], target: str | None) -> None:
    # It runs before the model has said what is wrong, which the model then says in its own words.
    ahead = KeyAhead.start(config, target=target)
    if ahead is not None:
        ahead.kek_for(Secret(b"x"), another_slot("00" * 16))


def test_the_cli_imports_no_pydantic_before_the_key_derivation_starts() -> None:
    # The head start runs while pydantic is imported and the model built: importing it first would
    # put that tenth of a second back in front of the derivation.
    code = "import sys, coldvault.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
