"""Load and validate a TOML config file into the typed model, with one-line errors."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from coldvault.config.model import Config
from coldvault.errors import ConfigError, UsageError

CONFIG_ENV = "COLDVAULT_CONFIG"


def config_path(given: str | None) -> Path:
    """The config file: --config, else $COLDVAULT_CONFIG."""
    path = given or os.environ.get(CONFIG_ENV)
    if not path:
        raise UsageError(f"no config file given; pass --config FILE or set {CONFIG_ENV}")
    return Path(path)


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass --config FILE or set {CONFIG_ENV}") from None
    except (PermissionError, IsADirectoryError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror}); check the path and its mode") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None
    return parse_config(text, origin=str(path))


def parse_config(text: str, *, origin: str = "<config>") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}; fix the syntax at that line") from None
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, raw, origin)) from None


def _describe(exc: ValidationError, raw: dict[str, Any], origin: str) -> str:
    """The first validation error as one sentence naming the file, the key and what is expected."""
    # A misspelt key also makes the real key "missing"; the misspelling is the useful report.
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    where = _key_path(first["loc"], raw)
    kind = first["type"]
    if kind == "missing":
        what = "is required but missing"
    elif kind == "extra_forbidden":
        what = "is not a known key; check its spelling against configs/example.toml"
    elif kind == "union_tag_invalid" or kind == "union_tag_not_found":
        what = 'has an unknown or missing \'type\'; expected "local", "s3", "gcs" or "azure"'
    else:
        what = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{origin}: {where} {what}{more}"


def _key_path(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """Render a pydantic location as the TOML reader sees it: targets[1] ("s3-eu").path."""
    parts: list[str] = []
    node: Any = raw
    for step in loc:
        if isinstance(step, int):
            label = f"[{step + 1}]"
            if isinstance(node, list) and step < len(node):
                node = node[step]
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    label = f"[{step + 1}] ({node['name']!r})"
            parts.append(label)
            continue
        if isinstance(node, dict) and step not in node and node.get("type") == step:
            continue  # pydantic inserts the discriminator tag ('local'), which is not a TOML key
        node = node.get(step) if isinstance(node, dict) else None
        parts.append(f".{step}" if parts else step)
    rendered = "".join(parts) or "the top level"
    return f"key {rendered}" if parts else rendered
