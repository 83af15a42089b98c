"""The error tree every layer raises, and the exit code each class maps to.

    ColdvaultError                      exit 1   (base; never raised directly)
    ├── UsageError                      exit 2   bad arguments or a snapshot selector that matches nothing
    ├── ConfigError                     exit 10  config file missing, unreadable or invalid
    ├── WrongKey                        exit 11  wrong passphrase / recovery key, no usable key slot
    ├── RepositoryError                 exit 12  repository missing, not initialised, or already initialised
    ├── IntegrityError                  exit 13  an object failed its hash, AEAD tag or format check
    │   ├── DamagedObject               its bytes do not match its name
    │   └── ForeignObject               intact, but not sealed by this repository as that kind of object
    ├── TargetError                     exit 14  a target is unreachable or refused the operation
    │   ├── NotFound
    │   ├── AlreadyExists
    │   ├── Locked                      retention refused a delete or overwrite
    │   ├── Archived                    the object needs warm-up (rehydration) before it can be read
    │   ├── Transient                   retryable; may carry retry_after seconds
    │   └── PermissionDenied
    ├── SourceError                     exit 15  a backup source cannot be read (command failed, path missing)
    └── DestinationError                exit 16  a restore or a new output file cannot be written (full, read-only)

Exit codes that are not errors: 0 success, 3 a backup committed its snapshot
but skipped files it could not read, or a restore skipped entries it cannot
create (EXIT_PARTIAL), 70 an internal error (a bug), 130 interrupted.

Each class carries its exit code, so the CLI maps an exception to an exit code
without a table of its own.  Messages are one sentence saying what is wrong
and, where the user can act, what to do.  Messages never contain secrets.
"""

from __future__ import annotations


class ColdvaultError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ColdvaultError):
    exit_code = 2


class ConfigError(ColdvaultError):
    exit_code = 10


class WrongKey(ColdvaultError):
    exit_code = 11


class RepositoryError(ColdvaultError):
    exit_code = 12


class IntegrityError(ColdvaultError):
    exit_code = 13


class DamagedObject(IntegrityError):
    """The stored bytes are not what was written under that name: rot, or tampering."""


class ForeignObject(IntegrityError):
    """The bytes match their name, so they are what was written, but this repository's key did not seal
    them as that kind of object: planted by someone with write access, or another repository's."""


class TargetError(ColdvaultError):
    exit_code = 14


class NotFound(TargetError):
    pass


class AlreadyExists(TargetError):
    pass


class Locked(TargetError):
    pass


class Archived(TargetError):
    pass


class Transient(TargetError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermissionDenied(TargetError):
    pass


class SourceError(ColdvaultError):
    exit_code = 15


class DestinationError(ColdvaultError):
    exit_code = 16


EXIT_OK = 0
EXIT_PARTIAL = 3
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

__all__ = [
    "AlreadyExists",
    "Archived",
    "ColdvaultError",
    "ConfigError",
    "DestinationError",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "IntegrityError",
    "Locked",
    "NotFound",
    "PermissionDenied",
    "RepositoryError",
    "SourceError",
    "TargetError",
    "Transient",
    "UsageError",
    "WrongKey",
]
