"""The config file: where it is, and its TOML as read, before the model validates it (coldvault.config.loader).
Light to import (no pydantic), so that the key can be derived while the model is built (coldvault.key_ahead)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from coldvault.errors import ConfigError, UsageError

CONFIG_ENV = "COLDVAULT_CONFIG"


def config_path(given: str | None) -> Path:
    """The config file: --config, else $COLDVAULT_CONFIG."""
    path = given or os.environ.get(CONFIG_ENV)
    if not path:
        raise UsageError(f"no config file given; pass --config FILE or set {CONFIG_ENV}")
    return Path(path)


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's TOML, not yet validated."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass --config FILE or set {CONFIG_ENV}") from None
    except (PermissionError, IsADirectoryError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror}); check the path and its mode") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None
    return parse_toml(text, origin=str(path))


def parse_toml(text: str, *, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}; fix the syntax at that line") from None
