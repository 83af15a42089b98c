"""A value that must never reach a log, a report, an exception or a repr."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from coldvault.errors import ConfigError, DestinationError, UsageError

PASSPHRASE_ENV = "COLDVAULT_PASSPHRASE"


class Secret:
    """Holds secret bytes; prints as ``***`` everywhere and refuses to be pickled."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> object:
        raise TypeError("a Secret cannot be pickled")


def read_secret_file(path: Path, *, what: str, option: str | None = None) -> Secret:
    """Read a secret from a file (a systemd credential, typically), without its trailing newline.
    ``option``: the command-line option that named the file, where the config did not."""
    error = ConfigError if option is None else UsageError
    named_by = "the path in the config" if option is None else f"the path given to {option}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} file {path} does not exist; create it or fix {named_by}") from None
    except PermissionError:
        raise error(f"{what} file {path} is not readable by this user; fix its owner or mode") from None
    except IsADirectoryError:
        raise error(f"{what} file {path} is a directory; fix {named_by} to name the file inside it") from None
    value = data.rstrip(b"\r\n")
    if not value:
        raise error(f"{what} file {path} is empty; write the secret into it")
    return Secret(value)


def configured_passphrase(passphrase_file: Path | None) -> Secret | None:
    """The passphrase from repository.passphrase_file, else $COLDVAULT_PASSPHRASE, else None (ask for it)."""
    if passphrase_file is not None:
        return read_secret_file(passphrase_file, what="passphrase")
    from_env = os.environ.get(PASSPHRASE_ENV)
    return Secret(from_env.encode()) if from_env else None


def write_secret_file(path: Path, data: bytes, *, what: str) -> None:
    """Create a new secret file readable by its owner only (mode 0600); never overwrite one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    except FileExistsError:
        kind = "a directory" if path.is_dir() else "a file"
        raise DestinationError(f"{path} is {kind} already; name a new file for the {what}") from None
    except FileNotFoundError:
        raise DestinationError(f"cannot create {path}: its directory does not exist; create it first") from None
    except OSError as exc:
        raise DestinationError(f"cannot create {path} for the {what}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as exc:
        path.unlink(missing_ok=True)  # never leave half a secret behind
        raise DestinationError(f"cannot write {path}: {exc.strerror}; nothing was kept") from None
