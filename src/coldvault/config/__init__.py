"""Configuration: the typed model, the TOML loader and secrets."""

from coldvault.config.loader import load_config, parse_config
from coldvault.config.model import Config, FormatConfig, LocalTarget, RepositoryConfig, Source, Target
from coldvault.config.secret import Secret, read_secret_file, write_secret_file

__all__ = [
    "Config",
    "FormatConfig",
    "LocalTarget",
    "RepositoryConfig",
    "Secret",
    "Source",
    "Target",
    "load_config",
    "parse_config",
    "read_secret_file",
    "write_secret_file",
]
