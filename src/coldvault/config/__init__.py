"""Configuration: the typed model, the TOML loader and secrets.

The model and its loader import pydantic and build the model (~0.1 s): they are imported when one of
their names is first asked for, so that what needs only a secret or the file's TOML (the head start
on the key, coldvault.key_ahead) runs before them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from coldvault.config.file import config_path, read_config_file
from coldvault.config.secret import (
    PASSPHRASE_ENV,
    Secret,
    configured_passphrase,
    read_secret_file,
    write_secret_file,
)

if TYPE_CHECKING:
    from coldvault.config.loader import load_config, parse_config, validate_config
    from coldvault.config.model import (
        AzureTarget,
        CloudTarget,
        Config,
        FormatConfig,
        GcsTarget,
        LocalTarget,
        LockConfig,
        RepositoryConfig,
        S3Target,
        Source,
        Target,
    )

_MODULE_OF = {
    **dict.fromkeys(("load_config", "parse_config", "validate_config"), "loader"),
    **dict.fromkeys(
        (
            "AzureTarget",
            "CloudTarget",
            "Config",
            "FormatConfig",
            "GcsTarget",
            "LocalTarget",
            "LockConfig",
            "RepositoryConfig",
            "S3Target",
            "Source",
            "Target",
        ),
        "model",
    ),
}


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # from now on found without this function
    return value


__all__ = [
    "PASSPHRASE_ENV",
    "AzureTarget",
    "CloudTarget",
    "Config",
    "FormatConfig",
    "GcsTarget",
    "LocalTarget",
    "LockConfig",
    "RepositoryConfig",
    "S3Target",
    "Secret",
    "Source",
    "Target",
    "config_path",
    "configured_passphrase",
    "load_config",
    "parse_config",
    "read_config_file",
    "read_secret_file",
    "validate_config",
    "write_secret_file",
]
