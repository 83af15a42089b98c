"""Configuration: the typed model, the TOML loader and secrets."""

from coldvault.config.loader import config_path, load_config, parse_config
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
from coldvault.config.secret import (
    PASSPHRASE_ENV,
    Secret,
    configured_passphrase,
    read_secret_file,
    write_secret_file,
)

__all__ = [
    "PASSPHRASE_ENV",
    "Config",
    "FormatConfig",
    "AzureTarget",
    "CloudTarget",
    "GcsTarget",
    "LocalTarget",
    "LockConfig",
    "S3Target",
    "RepositoryConfig",
    "Secret",
    "Source",
    "Target",
    "config_path",
    "configured_passphrase",
    "load_config",
    "parse_config",
    "read_secret_file",
    "write_secret_file",
]
