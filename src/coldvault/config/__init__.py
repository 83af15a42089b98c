"""Configuration: the typed model (coldvault.config.model), its loader (coldvault.config.loader), the
config file as read (coldvault.config.file) and secrets.

Only the light parts are imported here: the model and its loader import pydantic and build the model
(~0.1 s), and the head start on the key (coldvault.key_ahead) runs before them; import those names
from their own modules.
"""

from coldvault.config.file import config_path, read_config_file
from coldvault.config.secret import (
    PASSPHRASE_ENV,
    Secret,
    configured_passphrase,
    read_secret_file,
    write_secret_file,
)

__all__ = [
    "PASSPHRASE_ENV",
    "Secret",
    "config_path",
    "configured_passphrase",
    "read_config_file",
    "read_secret_file",
    "write_secret_file",
]
