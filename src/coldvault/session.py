"""What every command needs: the config, the targets' store, the key, the open repository."""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from coldvault.config import Config, Secret, load_config, read_secret_file
from coldvault.errors import ConfigError, UsageError, WrongKey
from coldvault.repo.keys import decode_recovery_key
from coldvault.repo.repository import Repository
from coldvault.storage.cache import CachingStore
from coldvault.storage.factory import check_targets, combine, open_store
from coldvault.storage.protocol import Store

PASSPHRASE_ENV = "COLDVAULT_PASSPHRASE"
NEW_PASSPHRASE_ENV = "COLDVAULT_NEW_PASSPHRASE"
CONFIG_ENV = "COLDVAULT_CONFIG"


@dataclass
class Session:
    config: Config
    config_path: Path
    recovery_key_file: Path | None = None

    @classmethod
    def load(cls, config: str | None, recovery_key_file: str | None = None) -> Session:
        path = config or os.environ.get(CONFIG_ENV)
        if not path:
            raise UsageError(f"no config file given; pass --config FILE or set {CONFIG_ENV}")
        return cls(load_config(Path(path)), Path(path), Path(recovery_key_file) if recovery_key_file else None)

    @property
    def state_dir(self) -> Path:
        """repository.state_dir, else systemd's $STATE_DIRECTORY, else $XDG_STATE_HOME/coldvault."""
        if self.config.repository.state_dir is not None:
            return self.config.repository.state_dir
        if os.environ.get("STATE_DIRECTORY"):
            return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
        xdg = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        return Path(xdg) / "coldvault"

    @property
    def workers(self) -> int:
        return self.config.repository.workers or os.cpu_count() or 2

    @property
    def uploads_in_flight(self) -> int:
        """Uploads to a directory are bounded by the disk; to a cloud, by round trips, so several overlap."""
        return max((t.max_in_flight for t in self.config.targets if t.type != "local"), default=1)

    def target_stores(self, *, writing: bool = False) -> list[Store]:
        """One store per target, in config order; ``writing`` first checks that each bucket exists and
        supports its lock settings."""
        stores = [open_store(target) for target in self.config.targets]
        if writing:
            check_targets(list(self.config.targets), stores)
        return stores

    def combined(self, stores: list[Store], *, cached: bool = True) -> Store:
        """The targets' stores behind one, with the local cache in front unless ``cached`` is False."""
        store = combine(stores)
        return CachingStore(store, self.state_dir / "cache") if cached else store

    def store(self, *, cached: bool = True, writing: bool = False) -> Store:
        return self.combined(self.target_stores(writing=writing), cached=cached)

    def open_repo(self, *, cached: bool = True, writing: bool = False) -> Repository:
        """Unlock and open the repository; ``cached=False`` reads every object from the targets (for check)."""
        store = self.store(cached=cached, writing=writing)
        if self.recovery_key_file is not None:
            return Repository.open(store, recovery_key=self.recovery_key())
        return Repository.open(store, passphrase=self.passphrase())

    def passphrase(self, *, confirm: bool = False) -> Secret:
        """From repository.passphrase_file, else $COLDVAULT_PASSPHRASE, else a prompt on a terminal."""
        configured = self.config.repository.passphrase_file
        if configured is not None:
            return read_secret_file(configured, what="passphrase")
        from_env = os.environ.get(PASSPHRASE_ENV)
        if from_env:
            return Secret(from_env.encode())
        return prompt_secret(
            "repository passphrase", confirm=confirm, hint=f"set repository.passphrase_file or {PASSPHRASE_ENV}"
        )

    def new_passphrase(self, file: str | None) -> Secret:
        """A passphrase for a new key slot: --new-passphrase-file, $COLDVAULT_NEW_PASSPHRASE, or a prompt."""
        if file:
            return read_secret_file(Path(file), what="new passphrase")
        from_env = os.environ.get(NEW_PASSPHRASE_ENV)
        if from_env:
            return Secret(from_env.encode())
        return prompt_secret(
            "new passphrase", confirm=True, hint=f"pass --new-passphrase-file or set {NEW_PASSPHRASE_ENV}"
        )

    def recovery_key(self) -> Secret:
        assert self.recovery_key_file is not None
        text = read_secret_file(self.recovery_key_file, what="recovery key").reveal()
        try:
            return decode_recovery_key(text.decode("ascii"))
        except UnicodeDecodeError:
            raise WrongKey(f"{self.recovery_key_file} does not hold a recovery key (not text)") from None


def prompt_secret(what: str, *, confirm: bool, hint: str) -> Secret:
    if not sys.stdin.isatty():
        raise ConfigError(f"no {what} available and no terminal to ask on; {hint}")
    first = getpass.getpass(f"{what}: ")
    if not first:
        raise ConfigError(f"the {what} must not be empty")
    if confirm and getpass.getpass(f"{what} again: ") != first:
        raise ConfigError(f"the two {what}s differ; nothing was changed")
    return Secret(first.encode())
