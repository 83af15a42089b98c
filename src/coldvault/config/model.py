"""The typed configuration model.  Validated once, at load; unknown keys are errors."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from coldvault.errors import UsageError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}
_SIZE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def _parse_size(value: object) -> object:
    """Accept 1048576 or "1MiB"; binary units only, so "1M" means 2**20."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f'expected a size such as 1048576, "512KiB" or "32MiB", got {value!r}')
        return int(match.group(1)) * _UNITS[match.group(2).lower()]
    return value


def _expand_path(value: object) -> object:
    """Expand ${VAR} (for ${CREDENTIALS_DIRECTORY} and ${STATE_DIRECTORY}) and a leading ~."""
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ValueError(f"uses ${{{name}}}, which is not set in the environment")
        return os.environ[name]

    return os.path.expanduser(_VAR.sub(substitute, value))


def _split_command(value: object) -> object:
    return shlex.split(value) if isinstance(value, str) else value


Size = Annotated[int, BeforeValidator(_parse_size), Field(gt=0)]
ExpandedPath = Annotated[Path, BeforeValidator(_expand_path)]
Name = Annotated[str, Field(pattern=_NAME)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FormatConfig(_Strict):
    """Parameters fixed when the repository is initialised; later changes are ignored."""

    chunk_min_size: Size = 256 << 10
    chunk_avg_size: Size = 1 << 20
    chunk_max_size: Size = 8 << 20
    pack_size: Size = 32 << 20

    @model_validator(mode="after")
    def _ordered(self) -> FormatConfig:
        if not 64 <= self.chunk_min_size <= self.chunk_avg_size <= self.chunk_max_size:
            raise ValueError("chunk sizes must satisfy 64 <= chunk_min_size <= chunk_avg_size <= chunk_max_size")
        if self.chunk_avg_size < 256 or self.chunk_max_size < 1024:  # FastCDC's lower limits
            raise ValueError("chunk_avg_size must be at least 256 and chunk_max_size at least 1KiB")
        if self.chunk_avg_size > 4 << 20 or self.chunk_min_size > 1 << 20 or self.chunk_max_size > 16 << 20:
            raise ValueError("chunk sizes are limited to min 1MiB, avg 4MiB, max 16MiB")
        if self.pack_size > 1 << 30:
            raise ValueError("pack_size is limited to 1GiB")
        return self


class RepositoryConfig(_Strict):
    passphrase_file: ExpandedPath | None = None
    state_dir: ExpandedPath | None = None
    compression_level: int = Field(default=3, ge=1, le=19)
    workers: int | None = Field(default=None, ge=1, le=64)
    format: FormatConfig = FormatConfig()


class LocalTarget(_Strict):
    name: Name
    type: Literal["local"]
    path: ExpandedPath


Target = Annotated[LocalTarget, Field(discriminator="type")]


class Source(_Strict):
    """Either a set of directory trees (``paths``) or the stdout of a ``command``."""

    name: Name
    paths: list[ExpandedPath] | None = None
    exclude: list[str] = []
    one_file_system: bool = False
    command: Annotated[list[str] | None, BeforeValidator(_split_command)] = None
    filename: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if (self.paths is None) == (self.command is None):
            raise ValueError("a source needs exactly one of 'paths' (directory trees) or 'command' (a dump command)")
        if self.paths is not None:
            if not self.paths:
                raise ValueError("'paths' must name at least one path")
            if self.filename is not None:
                raise ValueError("'filename' applies only to command sources")
        if self.command is not None:
            if not self.command:
                raise ValueError("'command' must not be empty")
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", self.command[0]):
                # "PGPASSWORD=secret pg_dump" is shell syntax; run as a program it would also print the secret
                raise ValueError(
                    "'command' starts with a variable assignment, which is shell syntax; put secrets in a file"
                    ' the command reads (e.g. ~/.pgpass), or wrap it: command = ["sh", "-c", "..."]'
                )
            if self.exclude or self.one_file_system:
                raise ValueError("'exclude' and 'one_file_system' apply only to path sources")
        if self.filename is not None and (
            not self.filename or "/" in self.filename or self.filename in (".", "..") or "\0" in self.filename
        ):
            raise ValueError("'filename' must be a plain file name without '/'")
        return self

    @property
    def is_stream(self) -> bool:
        return self.command is not None

    @property
    def stream_filename(self) -> str:
        return self.filename or f"{self.name}.stream"


class Config(_Strict):
    repository: RepositoryConfig = RepositoryConfig()
    targets: list[Target] = Field(min_length=1)
    sources: list[Source] = []

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for kind, items in (("target", self.targets), ("source", self.sources)):
            names = [item.name for item in items]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind} names must be unique; {duplicates[0]!r} is used more than once")
        return self

    def source(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise UsageError(f"no source named {name!r} in the config (configured: {known})")
