"""Validate a config file's TOML into the typed model, with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from coldvault.config.file import parse_toml, read_config_file
from coldvault.config.model import Config
from coldvault.errors import ConfigError


def load_config(path: Path) -> Config:
    return validate_config(read_config_file(path), origin=str(path))


def parse_config(text: str, *, origin: str = "<config>") -> Config:
    return validate_config(parse_toml(text, origin=origin), origin=origin)


def validate_config(raw: dict[str, Any], *, origin: str) -> Config:
    """The model of a config file's TOML (see coldvault.config.file), or one line saying what is wrong."""
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
