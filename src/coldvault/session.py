"""What every command needs: the config, the targets' stores, the journal, the key, the open repository."""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coldvault.config import PASSPHRASE_ENV, Secret, configured_passphrase, read_secret_file
from coldvault.config.model import Config, Target
from coldvault.engine.journal import Journal
from coldvault.engine.replicas import Replicas
from coldvault.engine.reports import ReportLog, create_signing_key, load_signing_key
from coldvault.engine.staging import Staging
from coldvault.errors import ConfigError, TargetError, WrongKey
from coldvault.repo.keys import DerivedAhead, decode_recovery_key
from coldvault.repo.repository import Repository
from coldvault.repo.unlock import read_repository_id
from coldvault.storage.cache import CachingStore
from coldvault.storage.factory import check_target, open_store
from coldvault.storage.protocol import Store

NEW_PASSPHRASE_ENV = "COLDVAULT_NEW_PASSPHRASE"


@dataclass
class Session:
    config: Config
    config_path: Path
    recovery_key_file: Path | None = None
    key_ahead: DerivedAhead | None = None  # see coldvault.key_ahead

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
        """Uploads to a directory are bounded by the disk; to a cloud, by round trips, so several overlap.
        With several targets a pack is done when the slowest has it: a second one in flight keeps the
        workers busy meanwhile."""
        clouds = max((t.max_in_flight for t in self.config.targets if t.type != "local"), default=1)
        return max(clouds, 2 if len(self.config.targets) > 1 else 1)

    def targets(self, *, only: str | None = None) -> list[Target]:
        """The configured targets in config order, or just the one named ``only``."""
        return [self.config.target(only)] if only else list(self.config.targets)

    @property
    def source_names(self) -> frozenset[str]:
        return frozenset(source.name for source in self.config.sources)

    def target_stores(self, *, only: str | None = None) -> list[Store]:
        return [open_store(target) for target in self.targets(only=only)]

    def connect(self, *, writing: bool = False, only: str | None = None) -> Replicas:
        """The targets behind one store.  ``writing`` first checks each target: one that is unreachable
        is marked down (a backup goes on without it, down to repository.min_targets); one whose bucket
        cannot enforce its configured lock stops everything (ConfigError)."""
        targets = self.targets(only=only)
        stores = [open_store(target) for target in targets]
        replicas = Replicas(stores, min_targets=1 if only else self.config.min_targets)
        if writing:
            for target, store in zip(targets, stores, strict=True):
                try:
                    check_target(target, store)
                except TargetError as exc:
                    replicas.mark_down(store, exc)
        replicas.require_one_repository()
        if writing:
            replicas.require_quorum()
        return replicas

    def keep_journal(self, replicas: Replicas) -> None:
        """Give ``replicas`` the repository's journal and staging area in the state directory."""
        repository_id = read_repository_id(replicas)
        replicas.journal = Journal(self.state_dir / "journal" / f"{repository_id}.sqlite")
        replicas.staging = Staging(self.state_dir / "staging" / repository_id, self.config.repository.staging_limit)

    def unlock(self, replicas: Replicas, *, cached: bool = True) -> Repository:
        """Open the repository on ``replicas``; ``cached=False`` reads every object from the targets."""
        store: Store = CachingStore(replicas, self.state_dir / "cache") if cached else replicas
        if self.recovery_key_file is not None:
            return Repository.open(store, recovery_key=self.recovery_key())
        return Repository.open(store, passphrase=self.passphrase(), ahead=self.key_ahead)

    def open_repo(self, *, only: str | None = None) -> Repository:
        """For reading: unlock the repository on every target, or on ``only`` that one alone (no cache)."""
        return self.unlock(self.connect(only=only), cached=only is None)

    @property
    def signing_key_path(self) -> Path:
        return self.config.drills.signing_key_file or self.state_dir / "drill-signing-key.pem"

    def signing_key(self, *, create: bool = False) -> Ed25519PrivateKey:
        """The drill signing key; with ``create``, a new one where none exists yet (the default path only)."""
        path = self.signing_key_path
        if create and self.config.drills.signing_key_file is None and not path.exists():
            return create_signing_key(path)
        return load_signing_key(path)

    def report_log(self) -> ReportLog:
        return ReportLog(self.state_dir / "reports")

    def passphrase(self, *, confirm: bool = False) -> Secret:
        """From repository.passphrase_file, else $COLDVAULT_PASSPHRASE, else a prompt on a terminal."""
        configured = configured_passphrase(self.config.repository.passphrase_file)
        if configured is not None:
            return configured
        return prompt_secret(
            "repository passphrase", confirm=confirm, hint=f"set repository.passphrase_file or {PASSPHRASE_ENV}"
        )

    def new_passphrase(self, file: str | None) -> Secret:
        """A passphrase for a new key slot: --new-passphrase-file, $COLDVAULT_NEW_PASSPHRASE, or a prompt."""
        if file:
            return read_secret_file(Path(file), what="new passphrase", option="--new-passphrase-file")
        from_env = os.environ.get(NEW_PASSPHRASE_ENV)
        if from_env:
            return Secret(from_env.encode())
        return prompt_secret(
            "new passphrase", confirm=True, hint=f"pass --new-passphrase-file or set {NEW_PASSPHRASE_ENV}"
        )

    def recovery_key(self) -> Secret:
        assert self.recovery_key_file is not None
        text = read_secret_file(self.recovery_key_file, what="recovery key", option="--recovery-key-file").reveal()
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
