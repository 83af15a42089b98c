"""${VAR} and a leading ~ in config values, expanded as the file is validated (and read ahead of that by
coldvault.key_ahead, which cannot wait for the model)."""

from __future__ import annotations

import os
import re

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_vars(value: object) -> object:
    """Expand ${VAR}: ${CREDENTIALS_DIRECTORY} and ${STATE_DIRECTORY} under systemd, an emulator's port."""
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ValueError(f"uses ${{{name}}}, which is not set in the environment")
        return os.environ[name]

    return _VAR.sub(substitute, value)


def expand_path(value: object) -> object:
    """Expand ${VAR} and a leading ~."""
    expanded = expand_vars(value)
    return os.path.expanduser(expanded) if isinstance(expanded, str) else expanded
